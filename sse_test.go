package switchboard_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard"
	"github.com/switchboardhq/switchboard/internal/testkit"
)

// An event stream is a connection like any other: the same registry,
// rooms and presence as WebSocket clients, in both directions.
func TestSSEStreamMeetsWebSocketClients(t *testing.T) {
	transports(t, func(t *testing.T, start starter) {
		s := start(t, switchboard.Options{})
		sc, _ := openSSE(t, s, "user=alice", nil)
		if sc.welcome.str("user") != "alice" || sc.welcome.str("transport") != "sse" || sc.welcome.str("conn") == "" {
			t.Fatalf("welcome %v", sc.welcome)
		}
		ack := sc.mustAck(map[string]any{"type": "join", "room": "lobby"})
		if users := fmt.Sprint(ack["users"]); users != "[alice]" {
			t.Fatalf("join ack users %s", users)
		}
		ws := dial(t, s, "bob")
		ws.join("lobby")
		if f := sc.expect("join"); f.str("user") != "bob" {
			t.Fatalf("join %v", f)
		}
		// WebSocket -> stream.
		ws.mustAck(map[string]any{"type": "publish", "room": "lobby", "data": map[string]any{"n": 1}})
		if m := sc.expect("message"); m.str("from") != "bob" || fmt.Sprint(m["data"]) != "map[n:1]" {
			t.Fatalf("message on the stream %v", m)
		}
		// Stream -> WebSocket, several frames in one POST, answered in order.
		body := `{"type":"publish","id":"p1","room":"lobby","data":"line\nbreak"}` + "\n" +
			`{"type":"presence","id":"q1","room":"lobby"}` + "\n"
		if st := sc.post(body); st != http.StatusNoContent {
			t.Fatalf("POST: %d", st)
		}
		var got []string
		for len(got) < 4 {
			f := sc.next()
			got = append(got, f.str("type")+":"+f.str("ref")+f.str("from"))
			if f.str("type") == "message" && f["data"] != "line\nbreak" {
				t.Fatalf("data %q", f["data"])
			}
		}
		if strings.Join(got, " ") != "message:alice ack:p1 presence: ack:q1" {
			t.Fatalf("stream got %v", got)
		}
		if m := ws.expect("message"); m.str("from") != "alice" || m["data"] != "line\nbreak" {
			t.Fatalf("message on the WebSocket %v", m)
		}
		// The server's direct sends reach the stream.
		if _, err := s.hub.SendToUser(context.Background(), "alice", json.RawMessage(`{"dm":true}`)); err != nil {
			t.Fatal(err)
		}
		if m := sc.expect("message"); m.str("to") != "alice" {
			t.Fatalf("direct message %v", m)
		}
		if n := s.hub.UserConnCount("alice"); n != 1 {
			t.Fatalf("alice has %d connections", n)
		}
	})
}

// Bad requests get the WebSocket's answers; a session is usable only with
// its secret.
func TestSSERequestsAnswers(t *testing.T) {
	transports(t, func(t *testing.T, start starter) {
		s := start(t, switchboard.Options{Limits: switchboard.Limits{MaxMessageBytes: 256}})
		sc, _ := openSSE(t, s, "user=alice", nil)
		id, _, _ := strings.Cut(sc.session, ".")
		for _, session := range []string{"", id, id + ".", id + ".00000000000000000000000000000000", "nope.x"} {
			if st := sessionRequest(t, http.MethodPost, sc.base, session, `{"type":"ping"}`); st != http.StatusNotFound {
				t.Errorf("POST with session %q: %d, want 404", session, st)
			}
		}
		if st := sessionRequest(t, http.MethodPut, sc.base, sc.session, ""); st != http.StatusMethodNotAllowed {
			t.Errorf("PUT: %d", st)
		}
		sc.send(map[string]any{"type": "nonsense", "id": "x1"})
		if f := sc.expect("error"); f.str("code") != "bad_request" || f.str("ref") != "x1" {
			t.Fatalf("unknown type: %v", f)
		}
		if st := sc.post(`not json`); st != http.StatusNoContent {
			t.Fatalf("POST of garbage: %d", st)
		}
		if f := sc.expect("error"); f.str("code") != "bad_request" {
			t.Fatalf("garbage: %v", f)
		}
		f, _ := sc.request(map[string]any{"type": "publish", "room": "lobby", "data": 1})
		if f.str("code") != "not_joined" {
			t.Fatalf("publish before join: %v", f)
		}
		// Over the frame limit: 413, and the stream ends as a WebSocket would.
		if st := sc.post(`{"type":"publish","room":"lobby","data":"` + strings.Repeat("x", 300) + `"}`); st != http.StatusRequestEntityTooLarge {
			t.Fatalf("POST over the limit: %d, want 413", st)
		}
		if code, reason := sc.expectClose(); code != 1009 || reason != "too_big" {
			t.Fatalf("closed %d %s, want 1009 too_big", code, reason)
		}
		if st := sc.post(`{"type":"ping"}`); st != http.StatusNotFound {
			t.Fatalf("POST after the close: %d, want 404", st)
		}
		waitFor(t, "the connection to be gone", func() bool { return s.hub.Count() == 0 })
	})
}

// Admission is the WebSocket's: the same limits and the same HTTP answers.
func TestSSEHandshakeAnswers(t *testing.T) {
	transports(t, func(t *testing.T, start starter) {
		s := start(t, switchboard.Options{Limits: switchboard.Limits{MaxConnsPerUser: 1, MaxConns: 2}})
		refused := func(query string, hdr http.Header) (int, string) {
			t.Helper()
			c, resp := openSSE(t, s, query, hdr)
			if c != nil {
				t.Fatalf("stream %q was opened", query)
			}
			return resp.StatusCode, strings.TrimSpace(readAll(t, resp))
		}
		if st, body := refused("", nil); st != 401 || body != `{"error":"unauthorized"}` {
			t.Errorf("no identity: %d %s", st, body)
		}
		if st, body := refused("user=a", http.Header{"Origin": {"https://evil.example"}}); st != 403 || body != `{"error":"origin_not_allowed"}` {
			t.Errorf("foreign origin: %d %s", st, body)
		}
		openSSE(t, s, "user=a", nil)
		if st, body := refused("user=a", nil); st != 429 || body != `{"error":"too_many_connections"}` {
			t.Errorf("second connection of a user at max 1: %d %s", st, body)
		}
		dial(t, s, "b") // a WebSocket counts against the same total
		if st, body := refused("user=c", nil); st != 503 || body != `{"error":"server_full"}` {
			t.Errorf("over the total cap: %d %s", st, body)
		}
	})
}

// A stream whose client never answers is found dead within the
// WebSocket's bound; pong POSTs keep it alive.
func TestSSELiveness(t *testing.T) {
	transports(t, func(t *testing.T, start starter) {
		s := start(t, switchboard.Options{PingInterval: 100 * time.Millisecond, PongTimeout: 100 * time.Millisecond})
		watcher := dial(t, s, "watcher")
		watcher.autoPong.Store(true)
		watcher.join("lobby")

		alive, _ := openSSE(t, s, "user=alive&room=lobby", nil)
		silent, _ := openSSE(t, s, "user=silent&room=lobby", nil)
		opened := time.Now()
		// alive answers five pings; silent answers none.
		for pongs := 0; pongs < 5; {
			f := alive.next()
			if f.str("type") == "ping" {
				if st := alive.post(`{"type":"pong"}`); st != http.StatusNoContent {
					t.Fatalf("pong: %d", st)
				}
				pongs++
			}
		}
		code, reason := silent.expectClose()
		if code != 4000 || reason != "ping_timeout" {
			t.Fatalf("silent stream closed %d %s, want 4000 ping_timeout", code, reason)
		}
		if took := time.Since(opened); took < 200*time.Millisecond {
			t.Fatalf("closed after %v, before ping interval + pong timeout", took)
		}
		for {
			f := watcher.next()
			if f.str("type") == "leave" && f.str("user") == "silent" {
				break
			}
		}
		if n := s.hub.UserConnCount("alive"); n != 1 {
			t.Fatalf("alive has %d connections, want 1", n)
		}
	})
}

// Closing from either side: DELETE is the client's close frame, a kick
// ends the stream with 4003, and a client that just goes away is cleaned
// up when its socket closes.
func TestSSEClose(t *testing.T) {
	transports(t, func(t *testing.T, start starter) {
		s := start(t, switchboard.Options{})
		watcher := dial(t, s, "watcher")
		watcher.join("lobby")
		leaveOf := func(user string) {
			t.Helper()
			for {
				f := watcher.next()
				if f.str("type") == "leave" && f.str("user") == user {
					return
				}
			}
		}

		a, _ := openSSE(t, s, "user=a&room=lobby", nil)
		watcher.expect("join")
		if st := sessionRequest(t, http.MethodDelete, a.base, a.session, ""); st != http.StatusNoContent {
			t.Fatalf("DELETE: %d", st)
		}
		if code, reason := a.expectClose(); code != 1000 || reason != "bye" {
			t.Fatalf("DELETE closed %d %s", code, reason)
		}
		leaveOf("a")

		b, _ := openSSE(t, s, "user=b&room=lobby", nil)
		watcher.expect("join")
		if err := s.hub.Disconnect(context.Background(), "b"); err != nil {
			t.Fatal(err)
		}
		if code, reason := b.expectClose(); code != 4003 || reason != "kicked" {
			t.Fatalf("kick closed %d %s", code, reason)
		}
		leaveOf("b")

		c, _ := openSSE(t, s, "user=c&room=lobby", nil)
		watcher.expect("join")
		_ = c.resp.Body.Close() // the client goes away without a word
		leaveOf("c")
		waitFor(t, "only the watcher to be left", func() bool { return s.hub.Count() == 1 })
	})
}

// A stream that joins one history room in its query resumes it from
// Last-Event-ID, which the event ids of its messages carry.
func TestSSEResumesFromLastEventID(t *testing.T) {
	transports(t, func(t *testing.T, start starter) {
		s := start(t, historyOpts(100))
		pub := dial(t, s, "pub")
		pub.join("kept")
		sc, _ := openSSE(t, s, "user=reader&room=kept", nil)
		epoch := sc.expect("ack").str("epoch")
		if epoch == "" || sc.lastID != "0:"+epoch {
			t.Fatalf("join ack's event id %q, want 0:epoch", sc.lastID)
		}
		for i := 1; i <= 3; i++ {
			publishSeen(pub, "kept", i)
			if m := sc.expect("message"); offsetOf(m) != uint64(i) || sc.lastID != fmt.Sprintf("%d:%s", i, epoch) {
				t.Fatalf("message %v with event id %q, want offset %d", m, sc.lastID, i)
			}
		}
		_ = sc.resp.Body.Close()
		waitFor(t, "the reader to be gone", func() bool { return s.hub.UserConnCount("reader") == 0 })
		for i := 4; i <= 6; i++ {
			publishSeen(pub, "kept", i)
		}
		again, _ := openSSE(t, s, "user=reader&room=kept", http.Header{"Last-Event-Id": {sc.lastID}})
		ack := again.expect("ack")
		msgs, _ := ack["messages"].([]any)
		if ack["recovered"] != true || len(msgs) != 3 || again.lastID != "6:"+epoch {
			t.Fatalf("resume ack %v (event id %q), want 3 recovered messages and id 6", ack, again.lastID)
		}
		for i, m := range msgs {
			if data := m.(map[string]any)["data"]; data != float64(4+i) {
				t.Fatalf("recovered message %d has data %v", i, data)
			}
		}
		publishSeen(pub, "kept", 7)
		if m := again.expect("message"); offsetOf(m) != 7 {
			t.Fatalf("live message after the resume %v", m)
		}
		// Frames of other rooms carry no id: their offsets are not this
		// room's.
		again.mustAck(map[string]any{"type": "join", "room": "log:other"})
		pub.join("log:other")
		again.expect("join")
		publishSeen(pub, "log:other", "x")
		if m := again.expect("message"); m.str("room") != "log:other" || again.lastID != "7:"+epoch {
			t.Fatalf("message %v moved the event id to %q", m, again.lastID)
		}
		// A position from another epoch is not resumed from.
		_ = again.resp.Body.Close()
		waitFor(t, "the reader to be gone", func() bool { return s.hub.UserConnCount("reader") == 0 })
		third, _ := openSSE(t, s, "user=reader&room=kept", http.Header{"Last-Event-Id": {"5:elsewhere"}})
		if ack := third.expect("ack"); ack["recovered"] != false {
			t.Fatalf("resume from a foreign epoch %v, want recovered false", ack)
		}
	})
}

// A client that reads nothing fills its queue and is cut off as a slow
// consumer, like a WebSocket peer.
func TestSSESlowConsumer(t *testing.T) {
	transports(t, func(t *testing.T, start starter) {
		s := start(t, switchboard.Options{Limits: switchboard.Limits{QueueBytes: 64 << 10, WriteTimeout: time.Second, Rate: 1e6, Burst: 1e6}})
		nc, err := net.Dial("tcp", s.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		if tc, ok := nc.(*net.TCPConn); ok {
			_ = tc.SetReadBuffer(4096)
		}
		fmt.Fprintf(nc, "GET /sse?user=slow&room=lobby HTTP/1.1\r\nHost: %s\r\n\r\n", s.addr)
		waitFor(t, "the slow reader to join", func() bool { return s.hub.UserConnCount("slow") == 1 })
		pub := dial(t, s, "pub")
		pub.join("lobby")
		big := strings.Repeat("x", 8<<10)
		for i := 0; i < 400 && s.hub.UserConnCount("slow") == 1; i++ {
			if _, err := s.hub.Publish(context.Background(), "lobby", json.RawMessage(`"`+big+`"`)); err != nil {
				t.Fatal(err)
			}
		}
		waitFor(t, "the slow reader to be cut off", func() bool { return s.hub.UserConnCount("slow") == 0 })
		if c := s.hub.Counters(); c.Closes[4001] == 0 {
			t.Fatalf("no slow_consumer close counted: %v", c.Closes)
		}
	})
}

func readAll(t *testing.T, resp *http.Response) string {
	t.Helper()
	var b strings.Builder
	buf := make([]byte, 512)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			return b.String()
		}
	}
}

// Behind a load balancer without stickiness a stream's POSTs may reach any
// node: a node that does not hold the stream forwards them, through the
// broker, to the node that does.
func TestSSERequestsReachAnyNode(t *testing.T) {
	bus := &testkit.Bus{}
	opts := func(id string) switchboard.Options {
		return switchboard.Options{Broker: bus.Node(), NodeID: id, Limits: switchboard.Limits{MaxMessageBytes: 512}}
	}
	a, b := startStd(t, opts("a")), startStd(t, opts("b"))
	viaB := "http://" + b.addr + "/sse"

	sc, _ := openSSE(t, a, "user=alice&room=lobby", nil)
	sc.expect("ack")
	bob := dial(t, b, "bob")
	bob.join("lobby")
	sc.expect("join")

	// Frames POSTed to b are handled by a, in order, answered on the stream.
	body := `{"type":"publish","id":"p1","room":"lobby","data":"via b"}` + "\n" + `{"type":"presence","id":"q1","room":"lobby"}`
	if st := sessionRequest(t, http.MethodPost, viaB, sc.session, body); st != http.StatusAccepted {
		t.Fatalf("POST via the other node: %d, want 202", st)
	}
	// The answers come in order; alice's own copy of her message comes
	// through the broker, before or after them.
	var got []string
	echoed := false
	for len(got) < 3 || !echoed {
		f := sc.next()
		if f.str("type") == "message" && f["data"] == "via b" {
			echoed = true
			continue
		}
		got = append(got, f.str("type")+":"+f.str("ref"))
	}
	if strings.Join(got, " ") != "ack:p1 presence: ack:q1" {
		t.Fatalf("stream got %v", got)
	}
	if m := bob.expect("message"); m["data"] != "via b" || m.str("from") != "alice" {
		t.Fatalf("bob got %v", m)
	}

	// A wrong secret is accepted by b (it cannot tell) and ignored by a.
	conn, rest, _ := strings.Cut(sc.session, ".")
	_, user, _ := strings.Cut(rest, ".")
	forged := conn + ".00000000000000000000000000000000." + user
	if st := sessionRequest(t, http.MethodPost, viaB, forged, `{"type":"leave","room":"lobby"}`); st != http.StatusAccepted {
		t.Fatalf("forged POST via b: %d", st)
	}
	if st := sessionRequest(t, http.MethodDelete, viaB, forged, ""); st != http.StatusAccepted {
		t.Fatalf("forged DELETE via b: %d", st)
	}
	if f, others := sc.request(map[string]any{"type": "presence", "room": "lobby"}); f.str("type") != "ack" || len(others) != 1 || fmt.Sprint(others[0]["users"]) != "[alice bob]" {
		t.Fatalf("after forged requests: %v then %v", others, f)
	}
	// A malformed session is refused by any node.
	for _, bad := range []string{"", "x", conn + "." + "s", conn + ".s.!!"} {
		if st := sessionRequest(t, http.MethodPost, viaB, bad, `{}`); st != http.StatusNotFound {
			t.Errorf("session %q via b: %d, want 404", bad, st)
		}
	}

	// Over the limit via b: 413 there, the stream closes 1009 on a.
	if st := sessionRequest(t, http.MethodPost, viaB, sc.session, strings.Repeat(" ", 600)); st != http.StatusRequestEntityTooLarge {
		t.Fatalf("POST over the limit via b: %d", st)
	}
	if code, reason := sc.expectClose(); code != 1009 || reason != "too_big" {
		t.Fatalf("closed %d %s", code, reason)
	}

	// DELETE via b closes the stream 1000.
	sc2, _ := openSSE(t, a, "user=carol", nil)
	if st := sessionRequest(t, http.MethodDelete, viaB, sc2.session, ""); st != http.StatusAccepted {
		t.Fatalf("DELETE via b: %d", st)
	}
	if code, reason := sc2.expectClose(); code != 1000 || reason != "bye" {
		t.Fatalf("DELETE via b closed %d %s", code, reason)
	}
}

// The per-connection message rate holds on a stream: the frames of a POST
// count one by one, and repeated violations close it 1008.
func TestSSERateLimit(t *testing.T) {
	transports(t, func(t *testing.T, start starter) {
		s := start(t, switchboard.Options{Limits: switchboard.Limits{Rate: 0.001, Burst: 3, MaxRateViolations: 3}})
		sc, _ := openSSE(t, s, "user=a", nil)
		// One POST, five frames: three pass, two are refused.
		body := strings.Repeat(`{"type":"presence","room":"r","id":"x"}`+"\n", 5)
		if st := sc.post(body); st != http.StatusNoContent {
			t.Fatalf("POST: %d", st)
		}
		var codes []string
		for len(codes) < 5 {
			f := sc.next()
			if f.str("type") == "error" {
				codes = append(codes, f.str("code"))
			} else if f.str("type") == "presence" {
				codes = append(codes, "ok")
			}
		}
		if strings.Join(codes, " ") != "ok ok ok rate_limited rate_limited" {
			t.Fatalf("answers %v", codes)
		}
		sc.send(map[string]any{"type": "pong"}) // never limited, not a violation
		sc.send(map[string]any{"type": "ping"}) // the third violation in a row
		if code, reason := sc.expectClose(); code != 1008 || reason != "policy" {
			t.Fatalf("closed %d %s, want 1008 policy", code, reason)
		}
	})
}

// A panic while handling a stream's request closes only that stream, 1011.
func TestSSEPanicClosesOnlyThatStream(t *testing.T) {
	transports(t, func(t *testing.T, start starter) {
		s := start(t, switchboard.Options{OnMessage: func(_ *switchboard.Conn, raw []byte) {
			if strings.Contains(string(raw), "boom") {
				panic("application bug")
			}
		}})
		watcher := dial(t, s, "watcher")
		watcher.join("r")
		sc, _ := openSSE(t, s, "user=alice&room=r", nil)
		watcher.expect("join")
		sc.send(map[string]any{"type": "publish", "room": "r", "data": "boom"})
		if code, reason := sc.expectClose(); code != 1011 || reason != "internal" {
			t.Fatalf("closed %d %s, want 1011 internal", code, reason)
		}
		if l := watcher.expect("leave"); l.str("user") != "alice" {
			t.Fatalf("got %v", l)
		}
		watcher.noFrame()
	})
}
