package brokertest

import (
	"context"
	"encoding/binary"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard"
)

// Outage runs traffic from node a to node b, stops the broker server with
// stop, and checks what the brokers promise: both say not ready, a publish
// meanwhile fails with switchboard.ErrUnavailable (it is not silently
// queued for the void), and once restart has brought the server back both
// are ready again and payloads flow in publish order without either node
// being made anew. The caller checks its broker's own counters afterwards.
func Outage(t *testing.T, a, b Node, stop, restart func()) {
	t.Helper()
	const ch = "room:outage"
	ctx := context.Background()
	for _, n := range []Node{a, b} {
		if err := n.B.Subscribe(ctx, ch); err != nil {
			t.Fatal(err)
		}
	}
	ra, rb := a.B.(ReadyBroker), b.B.(ReadyBroker)
	var seq atomic.Uint32
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { // traffic from node a throughout, paced
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			_ = a.B.Publish(ctx, ch, binary.BigEndian.AppendUint32(nil, seq.Add(1)))
		}
	})
	defer func() { close(done); wg.Wait() }()

	b.C.WaitN(t, ch, 10)
	stop()
	Eventually(t, "both brokers not ready", func() bool { return !ra.Ready() && !rb.Ready() })
	if err := a.B.Publish(ctx, ch, []byte{0, 0, 0, 0}); !errors.Is(err, switchboard.ErrUnavailable) {
		t.Fatalf("Publish during the outage: %v, want an error wrapping ErrUnavailable", err)
	}
	restart()
	Eventually(t, "both brokers ready again", func() bool { return ra.Ready() && rb.Ready() })
	b.C.WaitN(t, ch, len(b.C.On(ch))+20)
	a.C.WaitN(t, ch, len(a.C.On(ch))+20) // the publishing node hears itself again
	// At most once, but never reordered.
	var last uint32
	for _, p := range b.C.On(ch) {
		v := binary.BigEndian.Uint32(p)
		if v <= last {
			t.Fatalf("payload %d after %d", v, last)
		}
		last = v
	}
}
