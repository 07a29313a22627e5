package brokertest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/switchboardhq/switchboard"
)

// KeptMessages is how many messages the history checks publish while a
// client is away.
const KeptMessages = 1000

func historyNode(t *testing.T, b switchboard.Broker, id string) (*switchboard.Hub, *httptest.Server) {
	t.Helper()
	return startNode(t, switchboard.Options{
		Broker: b, NodeID: id,
		History: switchboard.HistoryOptions{Rooms: []string{"kept"}, Size: 4 * KeptMessages},
		Limits:  switchboard.Limits{Rate: 1e6, Burst: 1e6, QueueBytes: 64 << 20},
	})
}

func (c *client) joinKept(t *testing.T, id string, since *uint64, epoch string) frame {
	t.Helper()
	req := map[string]any{"type": "join", "room": "kept", "id": id}
	if since != nil {
		req["since"], req["epoch"] = *since, epoch
	}
	b, _ := json.Marshal(req)
	c.send(t, string(b))
	return c.expect(t, func(f frame) bool { return f.Type == "ack" && f.Ref == id })
}

// nextOffsets reads n messages of room kept and checks that their offsets
// run from first on, one by one.
func (c *client) nextOffsets(t *testing.T, first uint64, n int) {
	t.Helper()
	for want := first; want < first+uint64(n); want++ {
		f := c.expect(t, func(f frame) bool { return f.Type == "message" && f.Room == "kept" })
		if f.Offset == nil || *f.Offset != want {
			t.Fatalf("message offset %v, want %d: a gap or a duplicate", f.Offset, want)
		}
	}
}

// History runs three hubs of namespace ns with history for room "kept" and
// checks recovery across nodes: a client that was away while KeptMessages
// messages were published from the other nodes comes back on a third node
// with since and gets exactly those, in order, then live ones with no gap
// or duplicate; two nodes publishing at once still give every member the
// offsets in order; and when the broker loses the stream (flush), a client
// coming back is told recovered:false with a new epoch. flush deletes the
// namespace's kept data on the broker server.
func (s Suite) History(t *testing.T, ns string, flush func(t *testing.T)) {
	ctx := context.Background()
	hubA, srvA := historyNode(t, s.Make(t, ns), "a")
	hubB, srvB := historyNode(t, s.Make(t, ns), "b")
	_, srvC := historyNode(t, s.Make(t, ns), "c")

	for _, away := range []string{"clean close", "dropped connection"} {
		t.Run(away, func(t *testing.T) {
			x := dial(t, srvA, "x")
			ack := x.joinKept(t, "j1", nil, "")
			if ack.Offset == nil || len(ack.Epoch) != 16 {
				t.Fatalf("join ack without offset and epoch: %+v", ack)
			}
			start, epoch := *ack.Offset, ack.Epoch
			if _, err := hubB.Publish(ctx, "kept", json.RawMessage(`"live"`)); err != nil {
				t.Fatal(err)
			}
			x.nextOffsets(t, start+1, 1)
			last := start + 1
			if away == "clean close" {
				x.send(t, `{"type":"leave","room":"kept","id":"bye"}`)
				x.expect(t, func(f frame) bool { return f.Type == "ack" && f.Ref == "bye" })
				_ = x.conn.Close(1000, "")
			} else {
				_ = x.conn.CloseNow()
			}
			for i := range KeptMessages {
				hub := hubA
				if i%2 == 1 {
					hub = hubB
				}
				p, err := hub.Publish(ctx, "kept", json.RawMessage(fmt.Sprint(i)))
				if err != nil {
					t.Fatal(err)
				}
				if p.Epoch != epoch {
					t.Fatalf("epoch changed to %q under a publisher", p.Epoch)
				}
			}
			back := dial(t, srvC, "x")
			ack = back.joinKept(t, "j2", &last, epoch)
			if ack.Recovered == nil || !*ack.Recovered || len(ack.Messages) != KeptMessages {
				t.Fatalf("rejoin on another node: recovered %v with %d messages, want %d", ack.Recovered, len(ack.Messages), KeptMessages)
			}
			for i, raw := range ack.Messages {
				var m frame
				if err := json.Unmarshal(raw, &m); err != nil || m.Offset == nil || *m.Offset != last+1+uint64(i) || string(m.Data) != fmt.Sprint(i) {
					t.Fatalf("recovered message %d: %s", i, raw)
				}
			}
			if *ack.Offset != last+KeptMessages {
				t.Fatalf("ack offset %d, want %d", *ack.Offset, last+KeptMessages)
			}
			if _, err := hubA.Publish(ctx, "kept", json.RawMessage(`"after"`)); err != nil {
				t.Fatal(err)
			}
			back.nextOffsets(t, last+KeptMessages+1, 1)
			_ = back.conn.CloseNow()
		})
	}

	t.Run("two nodes publishing at once", func(t *testing.T) {
		w := dial(t, srvC, "watcher")
		ack := w.joinKept(t, "jw", nil, "")
		const each = 300
		var wg sync.WaitGroup
		for _, hub := range []*switchboard.Hub{hubA, hubB} {
			wg.Go(func() {
				for range each {
					if _, err := hub.Publish(ctx, "kept", json.RawMessage(`1`)); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		w.nextOffsets(t, *ack.Offset+1, 2*each)
		_ = w.conn.CloseNow()
	})

	t.Run("broker lost the stream", func(t *testing.T) {
		y := dial(t, srvA, "y")
		ack := y.joinKept(t, "jy", nil, "")
		_ = y.conn.CloseNow()
		last, epoch := *ack.Offset, ack.Epoch
		flush(t)
		for range 3 {
			if _, err := hubB.Publish(ctx, "kept", json.RawMessage(`1`)); err != nil {
				t.Fatal(err)
			}
		}
		back := dial(t, srvB, "y")
		ack = back.joinKept(t, "jy2", &last, epoch)
		if ack.Recovered == nil || *ack.Recovered || len(ack.Messages) != 0 || ack.Epoch == epoch || *ack.Offset != 3 {
			t.Fatalf("after the stream was lost: recovered %v, %d messages, epoch %q (was %q), offset %v",
				ack.Recovered, len(ack.Messages), ack.Epoch, epoch, *ack.Offset)
		}
	})
}
