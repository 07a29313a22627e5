package switchboard_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/coder/websocket"

	"github.com/switchboardhq/switchboard"
)

// handshake dials and returns the HTTP answer of a refused handshake.
func handshake(t *testing.T, s *testServer, query string, hdr http.Header) (int, string, http.Header) {
	t.Helper()
	c, resp, err := dialRaw(s, query, hdr)
	if err == nil {
		_ = c.CloseNow()
		t.Fatalf("handshake %q was accepted", query)
	}
	if resp == nil {
		t.Fatalf("handshake %q: no HTTP answer: %v", query, err)
	}
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(body)), resp.Header
}

func TestHandshakeAnswers(t *testing.T) {
	transports(t, func(t *testing.T, start starter) {
		s := start(t, switchboard.Options{Limits: switchboard.Limits{MaxConnsPerUser: 1, MaxConns: 2}})
		if st, body, _ := handshake(t, s, "", nil); st != 401 || body != `{"error":"unauthorized"}` {
			t.Errorf("no identity: %d %s", st, body)
		}
		evil := http.Header{"Origin": {"https://evil.example"}}
		if st, body, _ := handshake(t, s, "user=a", evil); st != 403 || body != `{"error":"origin_not_allowed"}` {
			t.Errorf("foreign origin: %d %s", st, body)
		}
		dial(t, s, "a")
		if st, body, _ := handshake(t, s, "user=a", nil); st != 429 || body != `{"error":"too_many_connections"}` {
			t.Errorf("second connection of a user at max 1: %d %s", st, body)
		}
		dial(t, s, "b")
		st, body, hdr := handshake(t, s, "user=c", nil)
		if st != 503 || body != `{"error":"server_full"}` || hdr.Get("Retry-After") == "" {
			t.Errorf("over the total cap: %d %s Retry-After=%q", st, body, hdr.Get("Retry-After"))
		}
		// A plain GET is not an upgrade.
		resp, err := http.Get("http://" + s.addr + "/ws?user=z")
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("plain GET: %d", resp.StatusCode)
		}
	})
}

func TestSameOriginAndAllowedOrigins(t *testing.T) {
	s := startStd(t, switchboard.Options{})
	c, _, err := dialRaw(s, "user=a", http.Header{"Origin": {"http://" + s.addr}})
	if err != nil {
		t.Fatalf("same origin refused: %v", err)
	}
	_ = c.CloseNow()

	s2 := startStd(t, switchboard.Options{AllowedOrigins: []string{"*.example.com", "https://app.test"}})
	for origin, ok := range map[string]bool{
		"https://a.example.com": true, "https://example.com": false,
		"https://app.test": true, "http://app.test": false, "https://evil.test": false,
	} {
		c, resp, err := dialRaw(s2, "user=a", http.Header{"Origin": {origin}})
		if ok != (err == nil) {
			t.Errorf("origin %s: accepted=%v (status %v), want %v", origin, err == nil, status(resp), ok)
		}
		if c != nil {
			_ = c.CloseNow()
		}
	}
}

func TestEvictOldest(t *testing.T) {
	transports(t, func(t *testing.T, start starter) {
		s := start(t, switchboard.Options{Limits: switchboard.Limits{MaxConnsPerUser: 2, PerUserPolicy: switchboard.PolicyEvictOldest}})
		watcher := dial(t, s, "w")
		watcher.join("r")
		oldest := dial(t, s, "a")
		oldest.join("r")
		watcher.expect("join")
		dial(t, s, "a").join("r")
		dial(t, s, "a")
		if reason := oldest.expectClose(4002); reason != "replaced" {
			t.Errorf("reason %q, want replaced", reason)
		}
		watcher.noFrame() // alice is still in the room on her second connection
		if n := len(s.hub.UserConns("a")); n != 2 {
			t.Errorf("a holds %d connections, want 2", n)
		}
	})
}

func TestFrameOverLimitCloses1009(t *testing.T) {
	transports(t, func(t *testing.T, start starter) {
		s := start(t, switchboard.Options{Limits: switchboard.Limits{MaxMessageBytes: 1024}})
		watcher := dial(t, s, "w")
		watcher.join("r")
		a := dial(t, s, "a")
		a.join("r")
		watcher.expect("join")
		a.sendRaw(`{"type":"publish","room":"r","data":"` + strings.Repeat("x", 2000) + `"}`)
		if reason := a.expectClose(websocket.StatusMessageTooBig); reason != "too_big" {
			t.Errorf("reason %q, want too_big", reason)
		}
		if l := watcher.expect("leave"); l.str("user") != "a" {
			t.Fatalf("got %v", l)
		}
	})
}

func TestDataOverLimitIsTooLarge(t *testing.T) {
	s := startStd(t, switchboard.Options{Limits: switchboard.Limits{MaxMessageBytes: 4096, MaxDataBytes: 100}})
	a := dial(t, s, "a")
	a.join("r")
	for _, typ := range []map[string]any{
		{"type": "publish", "room": "r", "data": strings.Repeat("x", 200)},
		{"type": "send", "to": "b", "data": strings.Repeat("x", 200)},
	} {
		if e, _ := a.request(typ); e.str("code") != "too_large" {
			t.Errorf("%v: got %v, want too_large", typ["type"], e)
		}
	}
	a.noFrame()
}

func TestTooManyRooms(t *testing.T) {
	s := startStd(t, switchboard.Options{Limits: switchboard.Limits{MaxRooms: 2}})
	a := dial(t, s, "a")
	a.join("r1")
	a.join("r2")
	a.join("r2") // joining again is not another room
	if e, _ := a.request(map[string]any{"type": "join", "room": "r3"}); e.str("code") != "too_many_rooms" {
		t.Fatalf("got %v, want too_many_rooms", e)
	}
	a.mustAck(map[string]any{"type": "leave", "room": "r1"})
	a.join("r3")
}

func TestRateLimit(t *testing.T) {
	transports(t, func(t *testing.T, start starter) {
		// A rate this low refills nothing during the test: exactly Burst
		// frames pass.
		s := start(t, switchboard.Options{Limits: switchboard.Limits{Rate: 0.001, Burst: 3, MaxRateViolations: 4}})
		a := dial(t, s, "a")
		a.join("r")
		a.mustAck(map[string]any{"type": "ping"})
		a.mustAck(map[string]any{"type": "ping"})
		for i := 0; i < 3; i++ {
			if e, _ := a.request(map[string]any{"type": "presence", "room": "r"}); e.str("code") != "rate_limited" {
				t.Fatalf("frame %d over the burst: got %v, want rate_limited", i+1, e)
			}
		}
		// Pongs are never limited and do not count as violations.
		a.sendRaw(`{"type":"pong"}`)
		a.sendRaw(`{"type":"ping"}`) // fourth violation in a row
		if reason := a.expectClose(websocket.StatusPolicyViolation); reason != "policy" {
			t.Errorf("reason %q, want policy", reason)
		}
	})
}

func TestCustomAuthenticatorErrorIs401(t *testing.T) {
	s := startStd(t, switchboard.Options{Authenticate: func(*http.Request) (*switchboard.Identity, error) {
		return nil, errors.New("bad signature")
	}})
	if st, body, _ := handshake(t, s, "user=a&token=x", nil); st != 401 || body != `{"error":"unauthorized"}` {
		t.Fatalf("got %d %s", st, body)
	}
	_ = context.Background()
}
