package switchboard_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard"
	"github.com/switchboardhq/switchboard/internal/testkit"
)

// nodeInbox records what OnNodeMessage receives.
type nodeInbox struct {
	mu   sync.Mutex
	got  []string // "node:payload"
	more chan struct{}
}

func newNodeInbox() *nodeInbox { return &nodeInbox{more: make(chan struct{}, 64)} }

func (b *nodeInbox) receive(node string, payload []byte) {
	b.mu.Lock()
	b.got = append(b.got, node+":"+string(payload))
	b.mu.Unlock()
	select {
	case b.more <- struct{}{}:
	default:
	}
}

// waitFor waits until want has been received.
func (b *nodeInbox) waitFor(t *testing.T, want string) {
	t.Helper()
	deadline := time.After(wait)
	for {
		b.mu.Lock()
		for _, g := range b.got {
			if g == want {
				b.mu.Unlock()
				return
			}
		}
		got := append([]string(nil), b.got...)
		b.mu.Unlock()
		select {
		case <-b.more:
		case <-deadline:
			t.Fatalf("never received %q; got %q", want, got)
		}
	}
}

func (b *nodeInbox) all() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.got...)
}

// A node message reaches every node of the cluster, the sender included,
// with the sender's id.
func TestSendToNodesReachesEveryNode(t *testing.T) {
	bus := &testkit.Bus{}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	inboxes := map[string]*nodeInbox{}
	hubs := map[string]*switchboard.Hub{}
	for _, id := range []string{"a", "b", "c"} {
		in := newNodeInbox()
		h, err := switchboard.New(switchboard.Options{Broker: bus.Node(), NodeID: id, Logger: quiet, OnNodeMessage: in.receive})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = h.Close() })
		inboxes[id], hubs[id] = in, h
	}
	ctx := context.Background()
	if err := hubs["a"].SendToNodes(ctx, []byte(`{"n":1}`)); err != nil {
		t.Fatal(err)
	}
	if err := hubs["b"].SendToNodes(ctx, []byte("two")); err != nil {
		t.Fatal(err)
	}
	for id, in := range inboxes {
		in.waitFor(t, `a:{"n":1}`)
		in.waitFor(t, "b:two")
		if got := in.all(); len(got) != 2 {
			t.Errorf("node %s got %q, want exactly the two messages", id, got)
		}
	}
}

// With the in-memory broker the node hears its own messages; a hub
// without OnNodeMessage ignores them, and what no room or user asked for
// reaches no connection.
func TestSendToNodesSingleNode(t *testing.T) {
	in := newNodeInbox()
	s := startStd(t, switchboard.Options{NodeID: "solo", OnNodeMessage: in.receive})
	c := dial(t, s, "u")
	c.join("r")
	if err := s.hub.SendToNodes(context.Background(), []byte("hi")); err != nil {
		t.Fatal(err)
	}
	in.waitFor(t, "solo:hi")
	c.noFrame()

	plain, _ := newHub(t, switchboard.Options{})
	defer plain.Close()
	if err := plain.SendToNodes(context.Background(), []byte("nobody listens")); err != nil {
		t.Fatal(err)
	}
}

func TestSendToNodesRefusals(t *testing.T) {
	h, _ := newHub(t, switchboard.Options{OnNodeMessage: func(string, []byte) { t.Error("delivered") }})
	big := []byte(strings.Repeat("x", switchboard.MaxNodeMessageBytes+1))
	if err := h.SendToNodes(context.Background(), big); err == nil || !strings.Contains(err.Error(), "over") {
		t.Errorf("oversized payload: %v", err)
	}
	_ = h.Close()
	if err := h.SendToNodes(context.Background(), []byte("x")); !errors.Is(err, switchboard.ErrClosed) {
		t.Errorf("closed hub: %v, want ErrClosed", err)
	}
}

// A panicking OnNodeMessage is counted and the node goes on delivering.
func TestOnNodeMessagePanicIsContained(t *testing.T) {
	in := newNodeInbox()
	h, _ := newHub(t, switchboard.Options{OnNodeMessage: func(node string, p []byte) {
		if string(p) == "boom" {
			panic("boom")
		}
		in.receive(node, p)
	}})
	defer h.Close()
	for _, p := range []string{"boom", "after"} {
		if err := h.SendToNodes(context.Background(), []byte(p)); err != nil {
			t.Fatal(err)
		}
	}
	in.waitFor(t, h.NodeID()+":after")
	if n := h.Counters().Panics; n != 1 {
		t.Errorf("panics counted: %d, want 1", n)
	}
}

// TopRooms counts users, not connections, most first with ties by name,
// and returns at most n.
func TestTopRooms(t *testing.T) {
	s := startStd(t, switchboard.Options{})
	join := func(user string, rooms ...string) {
		c := dial(t, s, user)
		for _, r := range rooms {
			c.join(r)
		}
	}
	join("u1", "big", "mid", "small")
	join("u1", "big") // a second connection of u1: still one user
	join("u2", "big", "mid")
	join("u3", "big", "tie")
	join("u4", "mid")
	if got := s.hub.TopRooms(0); got != nil {
		t.Errorf("TopRooms(0) = %v", got)
	}
	want := []switchboard.RoomCount{{Room: "big", Users: 3}, {Room: "mid", Users: 3}, {Room: "small", Users: 1}, {Room: "tie", Users: 1}}
	if got := s.hub.TopRooms(10); !equalRooms(got, want) {
		t.Errorf("TopRooms(10) = %v, want %v", got, want)
	}
	if got := s.hub.TopRooms(2); !equalRooms(got, want[:2]) {
		t.Errorf("TopRooms(2) = %v, want %v", got, want[:2])
	}
	if n, err := s.hub.RoomSize(context.Background(), "big"); err != nil || n != 3 {
		t.Errorf("RoomSize(big) = %d, %v", n, err)
	}
}

func equalRooms(a, b []switchboard.RoomCount) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
