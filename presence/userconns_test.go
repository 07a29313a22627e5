package presence

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard/internal/testkit"
)

// Connection counts travel as deltas to the nodes that are up, and in the
// snapshot to a node that starts later; a user's single connection costs
// no extra message; an eviction request reaches only the node it names.
func TestUserConns(t *testing.T) {
	bus := &testkit.Bus{}
	ctx := context.Background()
	var mu sync.Mutex
	var evicted []string
	a, _ := nodeWith(t, bus, Config{Node: "a", TTL: 600 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Evict: func(user string, openedBy time.Time) {
			mu.Lock()
			evicted = append(evicted, user+"@"+openedBy.UTC().Format(time.RFC3339))
			mu.Unlock()
		}})
	b, _ := node(t, bus, "b")
	opened := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

	must(t, a.Connect(ctx, "solo"))
	must(t, a.Connect(ctx, "multi"))
	must(t, a.SetUserConns(ctx, "solo", 1, opened)) // one: nothing sent
	must(t, a.SetUserConns(ctx, "multi", 3, opened))
	eventually(t, "b counts a's connections", func() bool {
		n, node, at := b.UserConnsElsewhere("multi")
		solo, _, _ := b.UserConnsElsewhere("solo")
		return n == 3 && node == "a" && at.Equal(opened) && solo == 1
	})
	if n, _, _ := a.UserConnsElsewhere("multi"); n != 0 {
		t.Fatalf("a counts its own connections as elsewhere: %d", n)
	}

	c, _ := node(t, bus, "c") // learns from a's snapshot
	eventually(t, "a late node counts a's connections", func() bool {
		n, node, at := c.UserConnsElsewhere("multi")
		return n == 3 && node == "a" && at.Equal(opened)
	})

	must(t, a.SetUserConns(ctx, "multi", 1, opened.Add(time.Hour))) // back to one: sent
	eventually(t, "b sees the count fall", func() bool {
		n, _, at := b.UserConnsElsewhere("multi")
		return n == 1 && at.Equal(opened.Add(time.Hour))
	})
	must(t, a.Disconnect(ctx, "multi"))
	eventually(t, "b forgets the user", func() bool {
		n, node, _ := b.UserConnsElsewhere("multi")
		return n == 0 && node == ""
	})

	must(t, b.EvictOldest(ctx, "a", "solo", opened))
	must(t, b.EvictOldest(ctx, "c", "solo", opened)) // not a's business
	eventually(t, "a is asked to evict", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(evicted) == 1 && evicted[0] == "solo@2026-01-02T03:04:05Z"
	})
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
