package switchboard_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/coder/websocket"

	"github.com/switchboardhq/switchboard"
)

func TestWelcomeAndSubprotocol(t *testing.T) {
	transports(t, func(t *testing.T, start starter) {
		s := start(t, switchboard.Options{})
		ctx := context.Background()
		c, resp, err := websocket.Dial(ctx, s.wsURL("user=alice"), &websocket.DialOptions{Subprotocols: []string{"other", "switchboard.v1"}})
		if err != nil {
			t.Fatal(err)
		}
		if got := resp.Header.Get("Sec-WebSocket-Protocol"); got != "switchboard.v1" {
			t.Errorf("subprotocol %q, want switchboard.v1", got)
		}
		cl := newClient(t, c)
		w := cl.expect("welcome")
		if w.str("user") != "alice" || w.str("conn") == "" {
			t.Errorf("welcome %v: want user alice and a conn id", w)
		}
		if w["ping_interval"] != 25.0 || w["pong_timeout"] != 10.0 || w["max_message_bytes"] != 65536.0 {
			t.Errorf("welcome %v: want the default intervals and limit", w)
		}

		// No subprotocol asked: accepted, none offered back.
		c2, resp2, err := websocket.Dial(ctx, s.wsURL("user=bob"), nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := resp2.Header.Get("Sec-WebSocket-Protocol"); got != "" {
			t.Errorf("subprotocol %q offered to a client that asked for none", got)
		}
		newClient(t, c2).expect("welcome")
	})
}

func TestPublishReachesRoomAcrossUsersAndDevices(t *testing.T) {
	transports(t, func(t *testing.T, start starter) {
		s := start(t, switchboard.Options{})
		aliceLaptop := dial(t, s, "alice")
		alicePhone := dial(t, s, "alice")
		bob := dial(t, s, "bob")
		carol := dial(t, s, "carol") // not in the room

		ack := aliceLaptop.join("chat")
		if got := ack["users"]; len(got.([]any)) != 1 || got.([]any)[0] != "alice" {
			t.Fatalf("join ack users %v, want [alice]", got)
		}
		// A second device of a present user joins silently.
		alicePhone.join("chat")
		ack = bob.join("chat")
		if users := ack["users"].([]any); len(users) != 2 || users[0] != "alice" || users[1] != "bob" {
			t.Fatalf("join ack users %v, want [alice bob] sorted", users)
		}
		for _, c := range []*client{aliceLaptop, alicePhone} {
			j := c.expect("join")
			if j.str("user") != "bob" || j.str("room") != "chat" {
				t.Fatalf("got %v, want bob's join", j)
			}
		}

		big := `{"n":12345678901234567890,"s":"hé \"quoted\""}`
		// The sender's own copy may arrive before or after its ack.
		ack, early := bob.request(map[string]any{"type": "publish", "room": "chat", "data": json.RawMessage(big)})
		if ack.str("type") != "ack" {
			t.Fatalf("publish: got %v", ack)
		}
		for _, f := range early {
			bob.frames <- f
		}
		for _, c := range []*client{aliceLaptop, alicePhone, bob} {
			m := c.expect("message")
			if m.str("room") != "chat" || m.str("from") != "bob" || m.str("id") == "" || m["ts"] == nil {
				t.Fatalf("message %v: want room chat from bob with id and ts", m)
			}
			raw, _ := json.Marshal(m["data"])
			if !strings.Contains(string(raw), "hé") {
				t.Fatalf("data changed: %s", raw)
			}
		}
		carol.noFrame()
	})
}

func TestDataIsCarriedByteExact(t *testing.T) {
	s := startStd(t, switchboard.Options{})
	a := dial(t, s, "a")
	a.join("r")
	c, _, err := dialRaw(s, "user=b", nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	_, _, _ = c.Read(ctx) // welcome
	if err := c.Write(ctx, websocket.MessageText, []byte(`{"type":"join","room":"r","id":"1"}`)); err != nil {
		t.Fatal(err)
	}
	_, _, _ = c.Read(ctx) // ack
	a.expect("join")
	data := `{"big":12345678901234567890,"f":1.50,"nested":[1,{"x":null}]}`
	if err := c.Write(ctx, websocket.MessageText, []byte(`{"type":"publish","room":"r","data":`+data+`}`)); err != nil {
		t.Fatal(err)
	}
	_, got, err := c.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(got), `"data":`+data+`,`) {
		t.Fatalf("message %s does not carry data verbatim", got)
	}
	_ = c.CloseNow()
}

func TestEchoFalseSkipsOnlyTheSender(t *testing.T) {
	transports(t, func(t *testing.T, start starter) {
		s := start(t, switchboard.Options{})
		laptop := dial(t, s, "alice")
		phone := dial(t, s, "alice")
		laptop.mustAck(map[string]any{"type": "join", "room": "r", "echo": false})
		phone.join("r")
		laptop.mustAck(map[string]any{"type": "publish", "room": "r", "data": "hi"})
		if m := phone.expect("message"); m["data"] != "hi" {
			t.Fatalf("phone got %v", m)
		}
		laptop.noFrame()
	})
}

func TestLeaveAnnouncedByLastConnectionOnly(t *testing.T) {
	transports(t, func(t *testing.T, start starter) {
		s := start(t, switchboard.Options{})
		watcher := dial(t, s, "watcher")
		watcher.join("r")
		a1, a2 := dial(t, s, "alice"), dial(t, s, "alice")
		a1.join("r")
		watcher.expect("join")
		a2.join("r")
		a1.mustAck(map[string]any{"type": "leave", "room": "r"})
		watcher.noFrame() // alice is still there on her other device
		_ = a2.conn.Close(websocket.StatusNormalClosure, "bye")
		l := watcher.expect("leave")
		if l.str("user") != "alice" || l.str("room") != "r" {
			t.Fatalf("got %v, want alice's leave", l)
		}
		// Leaving twice is an error, the connection stays usable.
		e, _ := a1.request(map[string]any{"type": "leave", "room": "r"})
		if e.str("code") != "not_joined" {
			t.Fatalf("got %v, want not_joined", e)
		}
		a1.noFrame()
	})
}

func TestSendReachesEveryConnectionOfTheUser(t *testing.T) {
	transports(t, func(t *testing.T, start starter) {
		s := start(t, switchboard.Options{})
		b1, b2 := dial(t, s, "bob"), dial(t, s, "bob")
		a := dial(t, s, "alice")
		a.mustAck(map[string]any{"type": "send", "to": "bob", "data": map[string]any{"k": 1}})
		for _, c := range []*client{b1, b2} {
			m := c.expect("message")
			if m.str("to") != "bob" || m.str("from") != "alice" {
				t.Fatalf("got %v, want a direct message from alice", m)
			}
		}
		a.noFrame()
	})
}

func TestPresenceAndPing(t *testing.T) {
	transports(t, func(t *testing.T, start starter) {
		s := start(t, switchboard.Options{})
		b, a := dial(t, s, "bob"), dial(t, s, "alice")
		b.join("r")
		a.join("r")
		b.expect("join")
		a.send(map[string]any{"type": "presence", "room": "r"})
		p := a.expect("presence")
		if users := p["users"].([]any); len(users) != 2 || users[0] != "alice" || users[1] != "bob" {
			t.Fatalf("presence %v, want [alice bob]", p)
		}
		a.send(map[string]any{"type": "presence", "room": "empty"})
		if users := a.expect("presence")["users"].([]any); len(users) != 0 {
			t.Fatalf("empty room has users %v", users)
		}
		a.send(map[string]any{"type": "ping"})
		a.expect("pong")
		// With an id, the pong is followed by an ack.
		ack, others := a.request(map[string]any{"type": "ping"})
		if ack.str("type") != "ack" || len(others) != 1 || others[0].str("type") != "pong" {
			t.Fatalf("ping with id: got %v after %v", ack, others)
		}
	})
}

func TestJoinSinceWithoutHistoryIsNotRecovered(t *testing.T) {
	s := startStd(t, switchboard.Options{})
	a := dial(t, s, "a")
	ack := a.mustAck(map[string]any{"type": "join", "room": "r", "since": 5, "epoch": "x"})
	if ack["recovered"] != false {
		t.Fatalf("ack %v: want recovered false", ack)
	}
	if msgs, ok := ack["messages"].([]any); !ok || len(msgs) != 0 {
		t.Fatalf("ack %v: want an empty messages list", ack)
	}
}

func TestErrorsKeepTheConnectionOpen(t *testing.T) {
	transports(t, func(t *testing.T, start starter) {
		s := start(t, switchboard.Options{})
		a := dial(t, s, "alice")
		cases := []struct {
			send, code, ref string
		}{
			{`not json`, "bad_request", ""},
			{`[1,2]`, "bad_request", ""},
			{`{"type":"dance","id":"x1"}`, "bad_request", "x1"},
			{`{"id":"x2"}`, "bad_request", "x2"},
			{`{"type":"join","id":"x3"}`, "bad_request", "x3"},
			{`{"type":"join","room":"bad room","id":"x4"}`, "bad_request", "x4"},
			{`{"type":"publish","room":"r","id":"x5"}`, "bad_request", "x5"},
			{`{"type":"send","data":1,"id":"x6"}`, "bad_request", "x6"},
			{`{"type":"publish","room":"r","data":1,"id":"x7"}`, "not_joined", "x7"},
			{`{"type":"join","room":"user:bob","id":"x8"}`, "forbidden", "x8"},
			{`{"type":"leave","room":"r","id":"x9"}`, "not_joined", "x9"},
		}
		for _, tc := range cases {
			a.sendRaw(tc.send)
			e := a.expect("error")
			if e.str("code") != tc.code || e.str("ref") != tc.ref || e.str("message") == "" {
				t.Errorf("%s: got %v, want code %s ref %q", tc.send, e, tc.code, tc.ref)
			}
		}
		// The own private room is allowed.
		a.join("user:alice")
		a.noFrame()
	})
}

func TestRoomsClaimLimitsJoins(t *testing.T) {
	s := startStd(t, switchboard.Options{Authenticate: func(r *http.Request) (*switchboard.Identity, error) {
		return &switchboard.Identity{User: r.URL.Query().Get("user"), Rooms: []string{"chat:*", "news"}}, nil
	}})
	a := dial(t, s, "a")
	a.join("chat:1")
	a.join("news")
	for _, room := range []string{"newsroom", "other", "chat"} {
		if e, _ := a.request(map[string]any{"type": "join", "room": room}); e.str("code") != "forbidden" {
			t.Errorf("join %s: got %v, want forbidden", room, e)
		}
	}
	if e, _ := a.request(map[string]any{"type": "presence", "room": "other"}); e.str("code") != "forbidden" {
		t.Errorf("presence of a forbidden room: got %v", e)
	}
}

func TestReadOnlyRooms(t *testing.T) {
	s := startStd(t, switchboard.Options{ReadOnlyRooms: []string{"news", "alerts:*"}})
	a := dial(t, s, "a")
	for _, room := range []string{"news", "alerts:fire"} {
		a.join(room)
		if e, _ := a.request(map[string]any{"type": "publish", "room": room, "data": 1}); e.str("code") != "forbidden" {
			t.Fatalf("client publish to %s: got %v, want forbidden", room, e)
		}
	}
	a.join("newsroom")                                                          // not matched: exact names are exact
	a.mustAck(map[string]any{"type": "publish", "room": "newsroom", "data": 1}) // its echo comes before the ack
	if _, err := s.hub.Publish(context.Background(), "news", json.RawMessage(`"from the server"`)); err != nil {
		t.Fatal(err)
	}
	if m := a.expect("message"); m["data"] != "from the server" {
		t.Fatalf("got %v", m)
	}
}
