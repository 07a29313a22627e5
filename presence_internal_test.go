package switchboard

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard/internal/testkit"
)

// busHub starts a hub on an in-process multi-node broker, so that its
// Presence is the cluster replica (the replica's own tests are in
// package presence).
func busHub(t *testing.T, b *testkit.Bus, id string, onPresence ...func(PresenceEvent)) *Hub {
	t.Helper()
	opts := Options{
		Broker: b.Node(), NodeID: id, PresenceTTL: 600 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	if len(onPresence) > 0 {
		opts.OnPresence = onPresence[0]
	}
	h, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	return h
}

// eventually polls cond until it holds, failing after a deadline: for
// state that has no event to wait on (replicas, counts, queues).
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testkit.Eventually(t, 10*time.Second, 5*time.Millisecond, what, cond)
}

// OnPresence may call back into the hub: it runs outside the presence
// lock, in order.
func TestOnPresenceMayCallTheHub(t *testing.T) {
	b := &testkit.Bus{}
	seen := make(chan []string, 16)
	var h *Hub
	var ready sync.WaitGroup
	ready.Add(1)
	h = busHub(t, b, "a", func(e PresenceEvent) {
		ready.Wait()
		users, _ := h.OnlineUsers(context.Background())
		seen <- users
	})
	ready.Done()
	if err := h.presence.Connect(context.Background(), "u"); err != nil {
		t.Fatal(err)
	}
	select {
	case users := <-seen:
		if !slices.Equal(users, []string{"u"}) {
			t.Fatalf("OnlineUsers from OnPresence: %v", users)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("OnPresence calling OnlineUsers deadlocked")
	}
}

// Two hubs on one broker: each sees the other in Nodes and ClusterStats,
// and a user online on one is counted once by both.
func TestHubsShareClusterStats(t *testing.T) {
	b := &testkit.Bus{}
	a, o := busHub(t, b, "a"), busHub(t, b, "b")
	eventually(t, "nodes see each other", func() bool { return len(a.Nodes()) == 2 && len(o.Nodes()) == 2 })
	if err := a.presence.Connect(context.Background(), "u"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "b counts a's user", func() bool { st, _ := o.ClusterStats(); return st.Users == 1 })
	if nodes := o.Nodes(); nodes[0].ID != "b" || nodes[1].ID != "a" {
		t.Fatalf("nodes of b: %+v, want itself first", nodes)
	}
}
