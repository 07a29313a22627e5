package switchboard

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/switchboardhq/switchboard/internal/transport"
)

// discardTransport accepts every write at once, so benchmarks measure the
// hub's own work: encoding, routing, queueing and flushing.
type discardTransport struct {
	bytes atomic.Int64
	mu    sync.Mutex
	ready []transport.Conn
}

// ScheduleFlush runs under c.mu, so the flush waits for drain.
func (t *discardTransport) ScheduleFlush(c transport.Conn) {
	t.mu.Lock()
	t.ready = append(t.ready, c)
	t.mu.Unlock()
}

// drain flushes every connection that has something queued, like the
// writer pool would.
func (t *discardTransport) drain() {
	t.mu.Lock()
	ready := t.ready
	t.ready = t.ready[:0]
	t.mu.Unlock()
	for _, c := range ready {
		c.Flush()
	}
}

func (t *discardTransport) Write(c transport.Conn, frames [][]byte) error {
	n := 0
	for _, f := range frames {
		n += len(f)
	}
	t.bytes.Add(int64(n))
	c.Wrote(n)
	return nil
}
func (t *discardTransport) ShutWhenDrained(transport.Conn) {}
func (t *discardTransport) Close() error                   { return nil }

func benchHub(tb testing.TB) *Hub {
	h, err := New(Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), PresenceBatchSize: 1 << 30})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = h.Close() })
	return h
}

// addFakeConns registers n connections in room through the same paths a
// real join takes, on a transport that discards.
// registerFake opens c on transport t and puts it in the registry and in
// room, as the accept path and a join would.
func registerFake(tb testing.TB, h *Hub, c *Conn, room string, t transport.Transport) {
	tb.Helper()
	c.t = t
	c.state.Store(stateOpen)
	if _, _, ok := h.reg.addUserConn(c, 8, false); !ok {
		tb.Fatal("addUserConn")
	}
	h.reg.addConn(c)
	c.addRoom(room, 64)
	h.interest(roomChannelPfx+room, 1)
	if _, _, ok := h.reg.joinRoom(c, room, true); !ok {
		tb.Fatal("joinRoom")
	}
}

func addFakeConns(tb testing.TB, h *Hub, room string, n int, t transport.Transport) {
	for i := 0; i < n; i++ {
		r := httptest.NewRequest("GET", "/ws", nil)
		c := h.newConn(r, &Identity{User: "u" + strconv.Itoa(i)})
		registerFake(tb, h, c, room, t)
	}
}

// BenchmarkBroadcast publishes to a room of N members. allocs/op must not
// grow with N: the frame is encoded once and queues reuse their arrays.
func BenchmarkBroadcast(b *testing.B) {
	for _, n := range []int{10, 1000, 10000} {
		b.Run(fmt.Sprintf("members=%d", n), func(b *testing.B) {
			h := benchHub(b)
			tr := &discardTransport{}
			addFakeConns(b, h, "room", n, tr)
			data := json.RawMessage(`{"text":"hello, room","n":42}`)
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := h.Publish(ctx, "room", data); err != nil {
					b.Fatal(err)
				}
				tr.drain()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/delivery")
		})
	}
}

func TestBroadcastAllocationsDoNotGrowWithRecipients(t *testing.T) {
	data := json.RawMessage(`{"text":"hello"}`)
	allocs := func(n int) float64 {
		h := benchHub(t)
		tr := &discardTransport{}
		addFakeConns(t, h, "room", n, tr)
		ctx := context.Background()
		publish := func() {
			_, _ = h.Publish(ctx, "room", data)
			tr.drain()
		}
		publish() // warm the queues' arrays
		return testing.AllocsPerRun(50, publish)
	}
	small, large := allocs(10), allocs(2000)
	if large > small+1 {
		t.Fatalf("allocations per broadcast grow with recipients: %v for 10, %v for 2000", small, large)
	}
}

// BenchmarkRegistryChurn joins and leaves rooms from all cores at once, with
// one shard (a single lock per index) and with the default shard count.
func BenchmarkRegistryChurn(b *testing.B) {
	for _, shards := range []int{1, shardCount} {
		b.Run(fmt.Sprintf("shards=%d", shards), func(b *testing.B) {
			h := benchHub(b)
			reg := newRegistry(shards)
			var seq atomic.Int64
			b.RunParallel(func(pb *testing.PB) {
				i := seq.Add(1)
				c := h.newConn(httptest.NewRequest("GET", "/ws", nil), &Identity{User: "u" + strconv.FormatInt(i, 10)})
				rooms := make([]string, 16)
				for j := range rooms {
					rooms[j] = fmt.Sprintf("room-%d-%d", i, j)
				}
				j := 0
				for pb.Next() {
					room := rooms[j%len(rooms)]
					j++
					reg.addConn(c)
					reg.joinRoom(c, room, true)
					reg.leaveRoom(c, room)
					reg.removeConn(c)
				}
			})
		})
	}
}
