package switchboard_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/switchboardhq/switchboard"
)

// sequence publishes numbered messages to a room while hostile things
// happen elsewhere, and checks that listeners got every number in order.
type sequence struct {
	t         *testing.T
	listeners []*client
	stop      chan struct{}
	done      chan int // number of messages published
	progress  atomic.Int64
}

func startSequence(t *testing.T, s *testServer, room string) *sequence {
	t.Helper()
	q := &sequence{t: t, stop: make(chan struct{}), done: make(chan int, 1)}
	for i := 0; i < 2; i++ {
		c := dial(t, s, fmt.Sprintf("listener%d", i))
		c.join(room)
		q.listeners = append(q.listeners, c)
	}
	q.listeners[0].expect("join")
	go func() {
		n := 0
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-q.stop:
				q.done <- n
				return
			case <-tick.C:
				data, _ := json.Marshal(map[string]int{"seq": n})
				if _, err := s.hub.Publish(context.Background(), room, data); err != nil {
					q.done <- n
					return
				}
				n++
				q.progress.Store(int64(n))
			}
		}
	}()
	return q
}

// check stops publishing and verifies that every listener received
// 0..n-1 with no gap, ignoring presence frames.
func (q *sequence) check() {
	q.t.Helper()
	// Enough numbers to span what happened before check was called.
	waitFor(q.t, "20 messages published", func() bool { return q.progress.Load() >= 20 })
	close(q.stop)
	n := <-q.done
	if n == 0 {
		q.t.Fatal("nothing was published")
	}
	for _, c := range q.listeners {
		for want := 0; want < n; {
			f := c.next()
			if f.str("type") != "message" {
				continue
			}
			got := int(f["data"].(map[string]any)["seq"].(float64))
			if got != want {
				q.t.Fatalf("%s: got seq %d, want %d (of %d)", c.welcome.str("user"), got, want, n)
			}
			want++
		}
	}
	q.t.Logf("listeners received all %d numbered messages", n)
}

// baseline records goroutines so a test can check they come back down.
func goroutinesSettle(t *testing.T, before int) {
	t.Helper()
	waitFor(t, fmt.Sprintf("goroutines back to %d", before), func() bool {
		return runtime.NumGoroutine() <= before
	})
}

func TestBinaryFrameCloses1003(t *testing.T) {
	transports(t, func(t *testing.T, start starter) {
		s := start(t, switchboard.Options{})
		a := dial(t, s, "a")
		if err := a.conn.Write(context.Background(), websocket.MessageBinary, []byte{1, 2}); err != nil {
			t.Fatal(err)
		}
		if reason := a.expectClose(websocket.StatusUnsupportedData); reason != "binary_unsupported" {
			t.Errorf("reason %q", reason)
		}
	})
}

func TestMalformedFramesClose(t *testing.T) {
	transports(t, func(t *testing.T, start starter) {
		s := start(t, switchboard.Options{Limits: switchboard.Limits{MaxMessageBytes: 1000}})
		q := startSequence(t, s, "seq")
		cases := []struct {
			name  string
			write func(r *rawClient) error
			code  int
		}{
			{"invalid UTF-8 in a text frame", func(r *rawClient) error {
				return r.writeFrame(0x81, []byte{'{', 0xff, 0xfe, '}'})
			}, 1007},
			{"fragments adding up past the limit", func(r *rawClient) error {
				for i := 0; i < 3; i++ { // 3 x 400 bytes, no fragment alone too big
					op := byte(0x00)
					if i == 0 {
						op = 0x01
					}
					if err := r.writeFrame(op, []byte(strings.Repeat("x", 400))); err != nil {
						return err
					}
				}
				return nil
			}, 1009},
			{"unmasked client frame", func(r *rawClient) error {
				_, err := r.nc.Write([]byte{0x81, 0x02, '{', '}'})
				return err
			}, 1002},
			{"reserved opcode", func(r *rawClient) error { return r.writeFrame(0x83, []byte("x")) }, 1002},
		}
		for _, tc := range cases {
			r := dialRawTCP(t, s, "user=hostile")
			if err := tc.write(r); err != nil {
				t.Fatal(err)
			}
			if code, _ := r.readUntilClose(); code != tc.code {
				t.Errorf("%s: close %d, want %d", tc.name, code, tc.code)
			}
		}
		q.check()
	})
}

func TestRequestsOverLimitsAreRefused(t *testing.T) {
	s := startStd(t, switchboard.Options{})
	a := dial(t, s, "a")
	a.join("r")
	deep := strings.Repeat("[", 40) + strings.Repeat("]", 40)
	ok := strings.Repeat("[", 32) + `"[[[\"]]"` + strings.Repeat("]", 32) // brackets in strings do not count
	for _, tc := range []struct{ frame, code string }{
		{`{"type":"publish","room":"r","id":"d1","data":` + deep + `}`, "bad_request"},
		{`{"type":"send","to":"b","id":"d2","data":{"a":` + deep + `}}`, "bad_request"},
		{`{"type":"publish","room":"r","id":"ok","data":` + ok + `}`, ""},
		{`{"type":"join","room":"` + strings.Repeat("r", 129) + `","id":"d3"}`, "bad_request"},
		{`{"type":"ping","id":"` + strings.Repeat("i", 200) + `"}`, "bad_request"},
		{`{"type":"join","room":"a b","id":"d4"}`, "bad_request"},
		{`{"type":"join","room":7,"id":"d5"}`, "bad_request"},
	} {
		a.sendRaw(tc.frame)
		f := a.next()
		for f.str("type") == "message" {
			f = a.next()
		}
		if tc.code == "" {
			if f.str("type") != "ack" {
				t.Errorf("%.60s: got %v, want ack", tc.frame, f)
			}
			continue
		}
		if f.str("type") != "error" || f.str("code") != tc.code {
			t.Errorf("%.60s: got %v, want error %s", tc.frame, f, tc.code)
		}
	}
	a.noFrame()
}

func TestBadHandshakes(t *testing.T) {
	s := startStd(t, switchboard.Options{})
	for _, tc := range []struct {
		name    string
		headers map[string]string
		status  int
	}{
		{"bad key", map[string]string{"Sec-WebSocket-Key": "short", "Sec-WebSocket-Version": "13"}, 400},
		{"old version", map[string]string{"Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version": "8"}, 426},
		{"no upgrade", map[string]string{"Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version": "13", "Upgrade": ""}, 400},
	} {
		req, _ := http.NewRequest("GET", "http://"+s.addr+"/ws?user=a", nil)
		req.Header.Set("Connection", "Upgrade")
		req.Header.Set("Upgrade", "websocket")
		for k, v := range tc.headers {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Errorf("%s: %d, want %d", tc.name, resp.StatusCode, tc.status)
		}
		if tc.status == 426 && resp.Header.Get("Sec-WebSocket-Version") != "13" {
			t.Errorf("426 without Sec-WebSocket-Version: 13")
		}
	}
	if s.hub.Count() != 0 {
		t.Fatalf("a refused handshake left %d connections", s.hub.Count())
	}
}

// One client sending as fast as it can is answered rate_limited, then cut
// with 1008; everyone else keeps receiving every message.
func TestFrameFloodIsContained(t *testing.T) {
	transports(t, func(t *testing.T, start starter) {
		s := start(t, switchboard.Options{})
		q := startSequence(t, s, "seq")
		before := runtime.NumGoroutine()
		flooder := dialRawTCP(t, s, "user=flooder")
		frame := []byte(`{"type":"publish","room":"seq","data":"spam"}`)
		sent := 0
		for ; sent < 10000; sent++ {
			if err := flooder.writeFrame(0x81, frame); err != nil {
				break // the server closed the socket: the flood is over
			}
		}
		code, frames := flooder.readUntilClose()
		if code != 1008 {
			t.Fatalf("flooder closed with %d, want 1008", code)
		}
		t.Logf("flooder sent %d frames, read %d answers before 1008", sent, frames)
		q.check()
		goroutinesSettle(t, before)
	})
}

// Connect/disconnect cycles from one address are answered 429 once the
// per-IP burst is spent (the rate is set too low to refill during the
// test), before authentication; the hub's state and goroutines come back
// to where they were.
func TestHandshakeFloodFromOneAddress(t *testing.T) {
	transports(t, func(t *testing.T, start starter) {
		s := start(t, switchboard.Options{Limits: switchboard.Limits{HandshakeRate: 0.001, HandshakeBurst: 20}})
		q := startSequence(t, s, "seq") // uses 2 handshakes of the burst
		before := runtime.NumGoroutine()
		accepted, refused := 0, 0
		for i := 0; i < 1000; i++ {
			c, resp, err := dialRaw(s, "user=storm", nil)
			if err == nil {
				accepted++
				_ = c.CloseNow()
				continue
			}
			if resp == nil || resp.StatusCode != 429 {
				t.Fatalf("cycle %d: %v (%v), want 429", i, err, status(resp))
			}
			refused++
		}
		if accepted > 20 || refused < 980 {
			t.Fatalf("accepted %d, refused %d of 1000 cycles", accepted, refused)
		}
		st, body, _ := handshake(t, s, "user=storm", nil)
		if st != 429 || body != `{"error":"too_many_handshakes"}` {
			t.Fatalf("got %d %s", st, body)
		}
		q.check()
		waitFor(t, "storm connections gone", func() bool { return len(s.hub.UserConns("storm")) == 0 })
		goroutinesSettle(t, before)
	})
}

// WebSocket-level pings are answered with pongs, so they count against the
// message rate like any other frame.
func TestControlPingFloodIsRateLimited(t *testing.T) {
	s := startStd(t, switchboard.Options{Limits: switchboard.Limits{Rate: 0.001, Burst: 2, MaxRateViolations: 3}})
	r := dialRawTCP(t, s, "user=pinger")
	for i := 0; i < 10; i++ {
		if err := r.writeFrame(0x89, []byte("p")); err != nil {
			break
		}
	}
	pongs, errors := 0, 0
	_ = r.nc.SetReadDeadline(time.Now().Add(wait))
	for {
		op, p, err := r.readFrame()
		if err != nil {
			t.Fatalf("no close after %d pongs and %d errors: %v", pongs, errors, err)
		}
		switch {
		case op == 0xA:
			pongs++
		case op == 0x1 && strings.Contains(string(p), "rate_limited"):
			errors++
		case op == 0x8:
			if code := int(p[0])<<8 | int(p[1]); code != 1008 || pongs != 2 || errors != 2 {
				t.Fatalf("close %d after %d pongs and %d rate_limited errors; want 1008 after 2 and 2", code, pongs, errors)
			}
			return
		}
	}
}
