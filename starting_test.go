package switchboard_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/switchboardhq/switchboard"
)

// A connection can be reached (a kick, a direct message) while its
// handshake is still completing: OnConnect runs exactly then. The message
// is delivered after the welcome, and the kick is carried out once the
// connection is set up, through the ordinary close path.
func TestConnectionReachedWhileStarting(t *testing.T) {
	transports(t, func(t *testing.T, start starter) {
		var hub *switchboard.Hub
		s := start(t, switchboard.Options{OnConnect: func(c *switchboard.Conn) {
			ctx := context.Background()
			_, _ = hub.SendToUser(ctx, c.User(), json.RawMessage(`"early"`))
			if c.User() == "kickme" {
				_ = hub.Disconnect(ctx, c.User())
			}
		}})
		hub = s.hub
		a := dial(t, s, "alice") // dial reads the welcome first
		if m := a.expect("message"); m["data"] != "early" {
			t.Fatalf("got %v", m)
		}
		c, _, err := dialRaw(s, "user=kickme", nil)
		if err != nil {
			t.Fatal(err)
		}
		k := newClient(t, c)
		k.expect("welcome")
		k.expect("message")
		k.expectClose(4003)
		waitFor(t, "kicked connection gone", func() bool { return len(s.hub.UserConns("kickme")) == 0 })
		if s.hub.Count() != 1 {
			t.Fatalf("count %d, want 1", s.hub.Count())
		}
	})
}

// The users in a big room's join ack plus the diffs that follow always add
// up to the registry, also when the room crosses the batching threshold
// back and forth (changes announced one by one invalidate the snapshot).
func TestBigRoomSnapshotAcrossThreshold(t *testing.T) {
	s := startStd(t, switchboard.Options{PresenceBatchSize: 2, PresenceBatchInterval: 300 * time.Millisecond})
	conns := map[string]*client{}
	for _, u := range []string{"a", "b", "c"} {
		conns[u] = dial(t, s, u)
		conns[u].join("x")
	}
	for _, u := range []string{"b", "a"} {
		conns[u].mustAck(map[string]any{"type": "leave", "room": "x"})
	}
	conns["d"] = dial(t, s, "d")
	conns["d"].join("x")
	e := dial(t, s, "e")
	ack := e.join("x")
	users := map[string]bool{}
	for _, u := range ack["users"].([]any) {
		users[u.(string)] = true
	}
	// Apply what e hears until e itself appears (its join is in a diff).
	for !users["e"] {
		f := e.next()
		switch f.str("type") {
		case "join":
			users[f.str("user")] = true
		case "leave":
			delete(users, f.str("user"))
		case "presence_diff":
			for _, u := range f["joins"].([]any) {
				users[u.(string)] = true
			}
			for _, u := range f["leaves"].([]any) {
				delete(users, u.(string))
			}
		}
	}
	got, _ := s.hub.RoomUsers(context.Background(), "x")
	if fmt.Sprint(sortedSet(users)) != fmt.Sprint(got) {
		t.Fatalf("snapshot plus diffs gives %v, registry has %v", sortedSet(users), got)
	}
}

func sortedSet(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

var _ = websocket.StatusNormalClosure
