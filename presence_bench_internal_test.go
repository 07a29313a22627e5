package switchboard

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"testing"
	"time"
)

// nullBroker drops every publish: it isolates the replica's own cost.
type nullBroker struct{}

func (nullBroker) Start(context.Context, func(string, []byte)) error { return nil }
func (nullBroker) Publish(context.Context, string, []byte) error     { return nil }
func (nullBroker) Subscribe(context.Context, string) error           { return nil }
func (nullBroker) Unsubscribe(context.Context, string) error         { return nil }
func (nullBroker) Close() error                                      { return nil }

func benchPresenceHub(b *testing.B) *Hub {
	h, err := New(Options{Broker: nullBroker{}, NodeID: "bench", PresenceTTL: time.Hour,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = h.Close() })
	return h
}

// BenchmarkClusterPresenceJoinLeave: this node's join and leave of one
// user in a room of a 3-node cluster (encoded and handed to the broker).
func BenchmarkClusterPresenceJoinLeave(b *testing.B) {
	h := benchPresenceHub(b)
	cp := h.cluster
	for _, n := range []string{"x", "y"} {
		cp.Receive(fmt.Appendf(nil, `{"t":"h","n":%q,"st":1,"q":0}`, n))
	}
	ctx := context.Background()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		u := "user-" + fmt.Sprint(i&1023)
		_ = cp.Join(ctx, "room", u)
		_ = cp.Leave(ctx, "room", u)
	}
}

// BenchmarkClusterPresenceMemory reports the replica's heap per room
// membership learned from another node (user online plus in one room).
func BenchmarkClusterPresenceMemory(b *testing.B) {
	const members = 100_000
	for b.Loop() {
		b.StopTimer()
		h := benchPresenceHub(b)
		msgs := make([][]byte, 0, 2*members)
		for i := range members {
			msgs = append(msgs,
				fmt.Appendf(nil, `{"t":"c","n":"x","st":1,"q":%d,"u":"user-%07d"}`, 2*i+1, i),
				fmt.Appendf(nil, `{"t":"j","n":"x","st":1,"q":%d,"r":"room-%d","u":"user-%07d"}`, 2*i+2, i%100, i))
		}
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		b.StartTimer()
		for _, m := range msgs {
			h.cluster.Receive(m)
		}
		b.StopTimer()
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/members, "B/member")
		runtime.KeepAlive(msgs)
		_ = h.Close()
		b.StartTimer()
	}
}
