package switchboard_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/switchboardhq/switchboard"
)

func TestPanicInCallbackClosesOnlyThatConnection(t *testing.T) {
	transports(t, func(t *testing.T, start starter) {
		s := start(t, switchboard.Options{
			OnMessage: func(c *switchboard.Conn, raw []byte) {
				if strings.Contains(string(raw), "boom") {
					panic("application bug")
				}
			},
			OnConnect: func(c *switchboard.Conn) {
				if c.User() == "cursed" {
					panic("connect bug")
				}
			},
		})
		watcher := dial(t, s, "watcher")
		watcher.join("r")
		a := dial(t, s, "alice")
		a.join("r")
		watcher.expect("join")
		a.send(map[string]any{"type": "publish", "room": "r", "data": "boom"})
		if reason := a.expectClose(websocket.StatusInternalError); reason != "internal" {
			t.Errorf("reason %q", reason)
		}
		if l := watcher.expect("leave"); l.str("user") != "alice" {
			t.Fatalf("got %v", l)
		}
		c, _, err := dialRaw(s, "user=cursed", nil)
		if err != nil {
			t.Fatal(err)
		}
		newClient(t, c).expectClose(websocket.StatusInternalError)
		waitFor(t, "only the watcher left", func() bool { return s.hub.Count() == 1 })
		if !strings.Contains(s.logs.String(), `"panics_total":2`) {
			t.Errorf("panics not counted in the log")
		}
		watcher.noFrame()
	})
}

func TestCallbacksSeeTheLifeCycle(t *testing.T) {
	var mu sync.Mutex
	var events []string
	disconnected := make(chan struct{})
	s := startStd(t, switchboard.Options{
		OnConnect: func(c *switchboard.Conn) {
			mu.Lock()
			events = append(events, "connect "+c.User()+" "+c.UserAgent())
			mu.Unlock()
		},
		OnMessage: func(c *switchboard.Conn, raw []byte) {
			mu.Lock()
			events = append(events, fmt.Sprintf("message %s %v", c.User(), c.Rooms()))
			mu.Unlock()
		},
		OnDisconnect: func(c *switchboard.Conn, code int, reason string) {
			mu.Lock()
			events = append(events, fmt.Sprintf("disconnect %s %d", c.User(), code))
			mu.Unlock()
			close(disconnected)
		},
	})
	c, _, err := dialRaw(s, "user=alice", http.Header{"User-Agent": {"tester/1"}})
	if err != nil {
		t.Fatal(err)
	}
	a := newClient(t, c)
	a.expect("welcome")
	a.join("r")
	a.mustAck(map[string]any{"type": "publish", "room": "r", "data": 1})
	_ = c.Close(websocket.StatusNormalClosure, "bye")
	select {
	case <-disconnected:
	case <-time.After(wait):
		t.Fatal("OnDisconnect not called")
	}
	mu.Lock()
	defer mu.Unlock()
	want := "[connect alice tester/1 message alice [] message alice [r] disconnect alice 1000]"
	if got := fmt.Sprint(events); got != want {
		t.Fatalf("events %s\nwant %s", got, want)
	}
}

func TestShutdownDrains(t *testing.T) {
	transports(t, func(t *testing.T, start starter) {
		s := start(t, switchboard.Options{})
		a, b := dial(t, s, "a"), dial(t, s, "b")
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		done := make(chan error, 1)
		go func() { done <- s.hub.Shutdown(ctx) }()
		for _, c := range []*client{a, b} {
			if reason := c.expectClose(websocket.StatusGoingAway); reason != "shutting_down" {
				t.Errorf("reason %q", reason)
			}
		}
		if err := <-done; err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
		st, body, hdr := handshake(t, s, "user=late", nil)
		if st != 503 || body != `{"error":"shutting_down"}` || hdr.Get("Retry-After") == "" {
			t.Fatalf("after shutdown: %d %s", st, body)
		}
	})
}

func TestPeerCloseIsAnsweredAndCleanedUp(t *testing.T) {
	transports(t, func(t *testing.T, start starter) {
		s := start(t, switchboard.Options{})
		watcher := dial(t, s, "w")
		watcher.join("r")
		a := dial(t, s, "a")
		a.join("r")
		watcher.expect("join")
		// Close performs the full handshake: it returns nil only when the
		// server answered with its own close frame.
		if err := a.conn.Close(websocket.StatusNormalClosure, "bye"); err != nil {
			t.Fatalf("close handshake: %v", err)
		}
		watcher.expect("leave")
		waitFor(t, "a removed", func() bool { return s.hub.Count() == 1 })
	})
}

func TestBigRoomsBatchPresence(t *testing.T) {
	s := startStd(t, switchboard.Options{PresenceBatchSize: 3, PresenceBatchInterval: 50 * time.Millisecond})
	watcher := dial(t, s, "watcher")
	watcher.join("big")
	for _, u := range []string{"u1", "u2"} {
		dial(t, s, u).join("big")
		if j := watcher.expect("join"); j.str("user") != u {
			t.Fatalf("got %v", j)
		}
	}
	// Past 3 members, changes arrive batched and sorted.
	u4 := dial(t, s, "u4")
	u4.join("big")
	dial(t, s, "u3").join("big")
	flicker := dial(t, s, "flicker")
	flicker.join("big")
	flicker.mustAck(map[string]any{"type": "leave", "room": "big"})
	d := watcher.expect("presence_diff")
	// A user who joined and left within the interval comes as its last
	// change, a leave: harmless, and it corrects any snapshot taken while
	// the user was in.
	if fmt.Sprint(d["joins"], d["leaves"]) != "[u3 u4] [flicker]" {
		t.Fatalf("diff %v: want joins [u3 u4], leaves [flicker]", d)
	}
	_ = u4.conn.Close(websocket.StatusNormalClosure, "")
	d = watcher.expect("presence_diff")
	if fmt.Sprint(d["joins"], d["leaves"]) != "[] [u4]" {
		t.Fatalf("diff %v: want u4 leaving", d)
	}
	// A joiner of a big room gets the users as of the last diff; the next
	// diff (which announces the joiner) brings everyone up to date.
	late := dial(t, s, "late")
	ack := late.join("big")
	if got := fmt.Sprint(ack["users"]); got != "[u1 u2 u3 watcher]" {
		t.Fatalf("late joiner's snapshot %s", got)
	}
	d = watcher.expect("presence_diff")
	if fmt.Sprint(d["joins"], d["leaves"]) != "[late] []" {
		t.Fatalf("diff %v: want late joining", d)
	}
}

// Logs carry counts and ids, never tokens, query strings or payloads.
func TestLogsNeverContainSecretsOrPayloads(t *testing.T) {
	const token, marker = "tok-SECRET-4f9a", "PAYLOAD-MARKER-77c1"
	s := startStd(t, switchboard.Options{Authenticate: func(r *http.Request) (*switchboard.Identity, error) {
		if switchboard.BearerToken(r) != token {
			return nil, fmt.Errorf("token rejected")
		}
		return &switchboard.Identity{User: r.URL.Query().Get("user")}, nil
	}})
	c, _, err := dialRaw(s, "user=alice&token="+token, nil)
	if err != nil {
		t.Fatal(err)
	}
	a := newClient(t, c)
	a.expect("welcome")
	a.join("r")
	a.mustAck(map[string]any{"type": "publish", "room": "r", "data": marker})
	a.mustAck(map[string]any{"type": "send", "to": "bob", "data": marker})
	a.sendRaw(`{"type":"nope","data":"` + marker + `"}`)
	a.expect("error")
	handshake(t, s, "user=mallory&token=wrong-"+token, nil)
	_, _, _ = dialRaw(s, "user=x", http.Header{"Authorization": {"Bearer " + token + "x"}})
	_ = c.Close(websocket.StatusNormalClosure, "")
	waitFor(t, "close logged", func() bool { return strings.Contains(s.logs.String(), "connection closed") })
	logs := s.logs.String()
	for _, secret := range []string{token, marker} {
		if strings.Contains(logs, secret) {
			t.Errorf("log output contains %q:\n%s", secret, logs)
		}
	}
	for _, want := range []string{`"user_id":"alice"`, `"online_count"`, `"conn_id"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("log output lacks %s", want)
		}
	}
}
