package server

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/switchboardhq/switchboard"
	"github.com/switchboardhq/switchboard/internal/testkit"
)

// eventStream reads a text/event-stream response in the background.
type eventStream struct {
	resp   *http.Response
	events chan adminSnapshot
	ended  chan struct{}
}

func openStream(t *testing.T, ctx context.Context, base string, c *http.Cookie) *eventStream {
	t.Helper()
	return openStreamWith(t, ctx, noKeepAliveClient, base, c)
}

func openStreamWith(t *testing.T, ctx context.Context, client *http.Client, base string, c *http.Cookie) *eventStream {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, "GET", base+"/admin/stream", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.AddCookie(c)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		b, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		t.Fatalf("stream: %d %q %s", resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}
	es := &eventStream{resp: resp, events: make(chan adminSnapshot, 64), ended: make(chan struct{})}
	go es.read(t)
	t.Cleanup(es.close)
	return es
}

var noKeepAliveClient = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}

func (es *eventStream) read(t *testing.T) {
	defer close(es.ended)
	sc := bufio.NewScanner(es.resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	event := ""
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "event: "):
			event = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: ") && event == "snapshot":
			var s adminSnapshot
			if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &s); err != nil {
				t.Errorf("event data %q: %v", line, err)
				return
			}
			select {
			case es.events <- s:
			default: // the test reads only what it waits for
				<-es.events
				es.events <- s
			}
		}
	}
}

func (es *eventStream) close() { _ = es.resp.Body.Close(); <-es.ended }

// waitFor reads snapshots until cond holds for one.
func (es *eventStream) waitFor(t *testing.T, what string, cond func(adminSnapshot) bool) adminSnapshot {
	t.Helper()
	deadline := time.After(15 * time.Second)
	var last adminSnapshot
	for {
		select {
		case s := <-es.events:
			if cond(s) {
				return s
			}
			last = s
		case <-es.ended:
			t.Fatalf("stream ended waiting for %s", what)
		case <-deadline:
			b, _ := json.Marshal(last)
			t.Fatalf("no snapshot with %s; last %s", what, b)
		}
	}
}

// streamScenario drives a dashboard stream on base with real traffic: the
// numbers follow connections, messages and rooms.
func streamScenario(t *testing.T, ctx context.Context, srv *Server, base string) {
	c := loginCookie(t, srv.Handler(), "adm")
	es := openStream(t, ctx, base, c)
	first := es.waitFor(t, "the first snapshot", func(s adminSnapshot) bool { return len(s.Nodes) == 1 })
	if first.Node != "test-node" || first.Nodes[0].Node != "test-node" {
		t.Fatalf("first snapshot: %+v", first)
	}
	alice := dialWS(t, ctx, base, "alice")
	alice.join(ctx, "lobby")
	bob := dialWS(t, ctx, base, "bob")
	bob.join(ctx, "lobby")
	dialWS(t, ctx, base, "bob").join(ctx, "side")
	es.waitFor(t, "3 connections, 2 users, 2 rooms, lobby on top", func(s adminSnapshot) bool {
		return s.Cluster.Connections == 3 && s.Cluster.Users == 2 && s.Cluster.Rooms == 2 &&
			len(s.Top) == 2 && s.Top[0].Room == "lobby" && s.Top[0].Users == 2 && s.Top[1].Room == "side"
	})
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { // about 10 publishes a second, for the rates
		defer close(done)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				if err := alice.c.Write(ctx, websocket.MessageText, []byte(`{"type":"publish","room":"lobby","data":1}`)); err != nil {
					return
				}
			}
		}
	}()
	s := es.waitFor(t, "messages in and out per second", func(s adminSnapshot) bool {
		return s.Cluster.In >= 3 && s.Cluster.Out >= 3 && s.Nodes[0].In == s.Cluster.In
	})
	close(stop)
	<-done
	if s.Cluster.Totals.In == 0 || s.Cluster.Totals.Out < s.Cluster.Totals.In {
		t.Errorf("totals: %+v", s.Cluster.Totals)
	}
	es.waitFor(t, "no messages once publishing stopped", func(s adminSnapshot) bool { return s.Cluster.In == 0 })
	_ = bob.c.Close(websocket.StatusNormalClosure, "")
	es.waitFor(t, "bob's first connection gone", func(s adminSnapshot) bool { return s.Cluster.Connections == 2 })

	if n := srv.admin.streams.count(); n != 1 {
		t.Errorf("open streams: %d", n)
	}
	es.close()
	testkit.Eventually(t, 10*time.Second, 10*time.Millisecond, "the stream closed on the server", func() bool {
		return srv.admin.streams.count() == 0
	})
}

// On net/http the stream is flushed through the response writer.
func TestAdminStreamOnNetHTTP(t *testing.T) {
	srv, _ := testServer(t, "--admin", "--admin-key=adm")
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	t.Cleanup(srv.closeAdmin) // before hs.Close, which waits for open streams
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	streamScenario(t, ctx, srv, hs.URL)
}

// Over HTTP/2 (net/http with TLS), where a socket cannot be taken over,
// events are flushed one by one too.
func TestAdminStreamOverHTTP2(t *testing.T) {
	srv, _ := testServer(t, "--admin", "--admin-key=adm")
	hs := httptest.NewUnstartedServer(srv.Handler())
	hs.EnableHTTP2 = true
	hs.StartTLS()
	t.Cleanup(hs.Close)
	t.Cleanup(srv.closeAdmin)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	es := openStreamWith(t, ctx, hs.Client(), hs.URL, loginCookie(t, srv.Handler(), "adm"))
	if es.resp.ProtoMajor != 2 {
		t.Fatalf("served over %s, want HTTP/2", es.resp.Proto)
	}
	t0 := es.waitFor(t, "a snapshot", func(adminSnapshot) bool { return true }).TS
	es.waitFor(t, "the next second's snapshot", func(s adminSnapshot) bool { return s.TS >= t0+900 })
	es.close()
	testkit.Eventually(t, 10*time.Second, 10*time.Millisecond, "the stream closed on the server", func() bool {
		return srv.admin.streams.count() == 0
	})
}

// On nbio's engine the stream writes to the taken-over socket; shutting
// the node down ends it.
func TestAdminStreamOnNBIO(t *testing.T) {
	skipUnderRace(t)
	// A short keep-alive time: the stream must outlive it.
	srv, addr, stopRun, done := runInProcess(t, "--addr=127.0.0.1:0", "--node-id=test-node", "--admin", "--admin-key=adm", "--handshake-timeout=1s")
	defer stopRun()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	base := "http://" + addr.String()
	streamScenario(t, ctx, srv, base)

	// A second dashboard stays open (past the engine's keep-alive time)
	// until the node shuts down.
	es := openStream(t, ctx, base, loginCookie(t, srv.Handler(), "adm"))
	t0 := es.waitFor(t, "a snapshot", func(adminSnapshot) bool { return true }).TS
	es.waitFor(t, "a snapshot 3 s later", func(s adminSnapshot) bool { return s.TS >= t0+3000 })
	stopRun()
	select {
	case <-es.ended:
	case <-time.After(15 * time.Second):
		t.Fatal("the stream outlived the node")
	}
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
}

// The stream refuses dashboards past maxAdminStreams with a JSON 503.
func TestAdminStreamLimit(t *testing.T) {
	srv, _ := testServer(t, "--admin", "--admin-key=adm")
	var held []*stream
	for range maxAdminStreams {
		st, ok := srv.admin.streams.add()
		if !ok {
			t.Fatal("refused below the limit")
		}
		held = append(held, st)
	}
	wantError(t, call(t, srv.Handler(), "GET", "/admin/stream", "adm", ""), http.StatusServiceUnavailable, errUnavailableAdmin)
	for _, st := range held {
		srv.admin.streams.remove(st)
	}
}

// Look-up finds a connected user with its rooms; disconnect closes every
// connection of the user with 4003, as POST /api/disconnect does.
func TestAdminUserLookupAndDisconnect(t *testing.T) {
	srv, _ := testServer(t, "--admin", "--admin-key=adm")
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	h := srv.Handler()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a1 := dialWS(t, ctx, hs.URL, "alice")
	a1.join(ctx, "lobby")
	a2 := dialWS(t, ctx, hs.URL, "alice")
	other := dialWS(t, ctx, hs.URL, "carol")

	rec := call(t, h, "GET", "/admin/api/user?id=alice", "adm", "")
	var u adminUser
	if err := json.Unmarshal(rec.Body.Bytes(), &u); rec.Code != 200 || err != nil {
		t.Fatalf("look-up: %d %s", rec.Code, rec.Body)
	}
	if !u.Online || u.Connections != 2 || len(u.Here) != 2 || u.Node != "test-node" || u.User != "alice" {
		t.Fatalf("look-up: %+v", u)
	}
	rooms := map[string]bool{}
	for _, c := range u.Here {
		rooms[strings.Join(c.Rooms, ",")] = true
		if c.ID == "" || c.ConnectedAt.IsZero() || c.RemoteAddr == "" {
			t.Errorf("connection: %+v", c)
		}
	}
	if !rooms["lobby"] || !rooms[""] {
		t.Errorf("rooms of alice's connections: %v", rooms)
	}
	rec = call(t, h, "GET", "/admin/api/user?id=nobody", "adm", "")
	if err := json.Unmarshal(rec.Body.Bytes(), &u); rec.Code != 200 || err != nil || u.Online || u.Connections != 0 || len(u.Here) != 0 {
		t.Errorf("unknown user: %d %s", rec.Code, rec.Body)
	}
	wantError(t, call(t, h, "GET", "/admin/api/user", "adm", ""), http.StatusBadRequest, errBadRequest)

	wantError(t, call(t, h, "POST", "/admin/api/disconnect", "adm", `{"user":""}`), http.StatusBadRequest, errBadRequest)
	wantError(t, call(t, h, "POST", "/admin/api/disconnect", "adm", `{"who":"alice"}`), http.StatusBadRequest, errBadRequest)
	req := httptest.NewRequest("POST", "/admin/api/disconnect", strings.NewReader(`{"user":"alice"}`))
	req.Header.Set("Authorization", "Bearer adm")
	req.Header.Set("Content-Type", "text/plain") // what a cross-site form can send
	rr := httptest.NewRecorder()
	h.ServeHTTP(rr, req)
	wantError(t, rr, http.StatusUnsupportedMediaType, errMediaType)

	rec = withCookie(h, "POST", "/admin/api/disconnect", loginCookie(t, h, "adm"), `{"user":"alice"}`)
	if rec.Code != 200 || decode(t, rec)["user"] != "alice" {
		t.Fatalf("disconnect: %d %s", rec.Code, rec.Body)
	}
	for _, c := range []*wsConn{a1, a2} {
		_, _, err := c.c.Read(ctx)
		for err == nil {
			_, _, err = c.c.Read(ctx)
		}
		if websocket.CloseStatus(err) != 4003 {
			t.Errorf("alice's connection ended with %v, want 4003", err)
		}
	}
	if err := other.c.Write(ctx, websocket.MessageText, []byte(`{"type":"ping","id":"p"}`)); err != nil {
		t.Fatal(err)
	}
	other.next(ctx, "pong")
}

// Two nodes on one Redis: each node's dashboard shows both, with the
// other node's connections and rates, and the top rooms count a user
// present on both nodes once.
func TestAdminShowsEveryNodeOverRedis(t *testing.T) {
	if c, err := net.DialTimeout("tcp", "127.0.0.1:6379", time.Second); err != nil {
		t.Skipf("Redis is not reachable at 127.0.0.1:6379 (scripts/test.sh starts it): %v", err)
	} else {
		_ = c.Close()
	}
	sfx := fmt.Sprintf("%x", rand.Uint64())
	node := func(id string) (*Server, string) {
		srv, _ := testServer(t, "--admin", "--admin-key=adm", "--broker=redis", "--cluster-name=adm"+sfx, "--node-id="+id,
			"--presence-ttl=3s")
		hs := httptest.NewServer(srv.Handler())
		t.Cleanup(hs.Close)
		t.Cleanup(srv.closeAdmin)
		return srv, hs.URL
	}
	a, aURL := node("node-a")
	b, bURL := node("node-b")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	es := openStream(t, ctx, aURL, loginCookie(t, a.Handler(), "adm"))
	dialWS(t, ctx, aURL, "ann").join(ctx, "shared")
	dialWS(t, ctx, bURL, "ann").join(ctx, "shared")
	dialWS(t, ctx, bURL, "ben").join(ctx, "shared")
	dialWS(t, ctx, bURL, "ben").join(ctx, "b-only")
	s := es.waitFor(t, "both nodes with their connections", func(s adminSnapshot) bool {
		return len(s.Nodes) == 2 && s.Nodes[0].Node == "node-a" && s.Nodes[0].Connections == 1 &&
			s.Nodes[1].Node == "node-b" && s.Nodes[1].Connections == 3 && s.Cluster.Connections == 4 &&
			s.Cluster.Users == 2 && len(s.Top) == 2 && s.Top[0] == (roomCount("shared", 2)) && s.Top[1] == roomCount("b-only", 1)
	})
	if s.Node != "node-a" {
		t.Errorf("served by %q", s.Node)
	}
	// Node b's own dashboard agrees, with itself first.
	testkit.Eventually(t, 15*time.Second, 50*time.Millisecond, "node b's snapshot of both nodes", func() bool {
		var bs adminSnapshot
		rec := call(t, b.Handler(), "GET", "/admin/api/snapshot", "adm", "")
		return rec.Code == 200 && json.Unmarshal(rec.Body.Bytes(), &bs) == nil && bs.Node == "node-b" &&
			len(bs.Nodes) == 2 && bs.Nodes[0].Node == "node-b" && bs.Nodes[1].Node == "node-a" && bs.Cluster.Connections == 4
	})
}

func roomCount(room string, users int) switchboard.RoomCount {
	return switchboard.RoomCount{Room: room, Users: users}
}
