package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

const keptRoom = "kept"

func historyArgs(broker, cluster string, host int, id string) []string {
	return append(clusterArgs(broker, cluster, host), "--node-id="+id,
		"--history-rooms="+keptRoom, "--history-size=2000")
}

// publishAPI publishes data to room through a node's backend API and
// returns the offset it was given.
func publishAPI(t *testing.T, ctx context.Context, s *server, room string, data any) uint64 {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"room": room, "data": data})
	st, resp := apiCall(t, ctx, "POST", "http://"+s.Addr+"/api/publish", "k", string(body))
	if st != 200 {
		t.Fatalf("publish: %d %v", st, resp)
	}
	off, _ := resp["offset"].(float64)
	return uint64(off)
}

func offsetOfFrame(f frame) uint64 { n, _ := f.Msg["offset"].(float64); return uint64(n) }

// A client away from a three-node cluster (after a clean close, or with its
// connection dropped) while 1,000 messages are published on the other
// nodes comes back on a third node with since: it gets exactly those, in
// order, then live messages with no gap or duplicate.
func TestHistoryAcrossNodes(t *testing.T) {
	for _, broker := range []string{"redis", "nats"} {
		t.Run(broker, func(t *testing.T) {
			needBroker(t, broker)
			ctx := testContext(t, 120*time.Second)
			cluster := fmt.Sprintf("h%x", rand.Uint64())
			a := startServer(t, ctx, historyArgs(broker, cluster, 2, "a")...)
			b := startServer(t, ctx, historyArgs(broker, cluster, 3, "b")...)
			c := startServer(t, ctx, historyArgs(broker, cluster, 4, "c")...)
			for _, away := range []string{"clean close", "dropped connection"} {
				x, err := dialClient(ctx, "ws://"+a.Addr+"/ws?user=x")
				if err != nil {
					t.Fatal(err)
				}
				ack, err := x.request(ctx, map[string]any{"type": "join", "room": keptRoom, "id": "j"})
				if err != nil {
					t.Fatal(err)
				}
				epoch := ack.str("epoch")
				live := publishAPI(t, ctx, b, keptRoom, "live")
				if _, err := x.expect(ctx, "the live message", func(f frame) bool {
					return f.typ() == "message" && offsetOfFrame(f) == live
				}); err != nil {
					t.Fatal(err)
				}
				if away == "clean close" {
					_ = x.conn.Close(1000, "")
					<-x.done
				} else {
					x.close()
				}
				const missed = 1000
				var wg sync.WaitGroup
				for half, n := range []*server{b, c} {
					wg.Go(func() {
						for i := half; i < missed; i += 2 {
							publishAPI(t, ctx, n, keptRoom, i)
						}
					})
				}
				wg.Wait()
				back, err := dialClient(ctx, "ws://"+c.Addr+"/ws?user=x")
				if err != nil {
					t.Fatal(err)
				}
				back.conn.SetReadLimit(16 << 20)
				ack, err = back.request(ctx, map[string]any{"type": "join", "room": keptRoom, "id": "j", "since": live, "epoch": epoch})
				if err != nil {
					t.Fatal(err)
				}
				msgs, _ := ack.Msg["messages"].([]any)
				if ack.Msg["recovered"] != true || len(msgs) != missed {
					t.Fatalf("%s: rejoin recovered %v with %d messages, want %d", away, ack.Msg["recovered"], len(msgs), missed)
				}
				seen := map[float64]bool{}
				for i, m := range msgs {
					mm := m.(map[string]any)
					if off := uint64(mm["offset"].(float64)); off != live+1+uint64(i) {
						t.Fatalf("%s: recovered message %d has offset %d, want %d", away, i, off, live+1+uint64(i))
					}
					seen[mm["data"].(float64)] = true
				}
				if len(seen) != missed {
					t.Fatalf("%s: recovered %d distinct messages, want %d", away, len(seen), missed)
				}
				next := publishAPI(t, ctx, a, keptRoom, "after")
				if next != live+missed+1 {
					t.Fatalf("offset after recovery %d, want %d", next, live+missed+1)
				}
				f, err := back.expect(ctx, "the next live message", func(f frame) bool { return f.typ() == "message" })
				if err != nil {
					t.Fatal(err)
				}
				if offsetOfFrame(f) != next {
					t.Fatalf("%s: first live message after recovery has offset %d, want %d", away, offsetOfFrame(f), next)
				}
				back.close()
			}
		})
	}
}

// The broker loses its data (FLUSHDB) while a client is away: on return it
// is told recovered:false with a new epoch, never given partial data.
func TestHistoryLostByTheBroker(t *testing.T) {
	needBroker(t, "redis")
	ctx := testContext(t, 60*time.Second)
	port := freeLocalPort(t)
	bp := &brokerProcess{kind: "redis", port: port}
	bp.start(t, ctx) // a private server: FLUSHDB must not touch anyone else
	cluster := fmt.Sprintf("h%x", rand.Uint64())
	args := func(host int, id string) []string {
		return append(historyArgs("redis", cluster, host, id), "--redis-url="+bp.url())
	}
	a := startServer(t, ctx, args(2, "a")...)
	b := startServer(t, ctx, args(3, "b")...)
	for i := range 5 {
		publishAPI(t, ctx, b, keptRoom, i)
	}
	st, resp := apiCall(t, ctx, "GET", "http://"+a.Addr+"/api/history?room="+keptRoom, "k", "")
	if st != 200 {
		t.Fatalf("history: %d %v", st, resp)
	}
	epoch, _ := resp["epoch"].(string)
	opts, _ := redis.ParseURL(bp.url())
	rc := redis.NewClient(opts)
	defer rc.Close()
	if err := rc.FlushDB(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	publishAPI(t, ctx, b, keptRoom, "after the flush")
	back := clusterClient(t, ctx, b, "x2", "other")
	ack, err := back.request(ctx, map[string]any{"type": "join", "room": keptRoom, "id": "j2", "since": 5, "epoch": epoch})
	if err != nil {
		t.Fatal(err)
	}
	msgs, _ := ack.Msg["messages"].([]any)
	if ack.Msg["recovered"] != false || len(msgs) != 0 || ack.str("epoch") == epoch || ack.Msg["offset"] != float64(1) {
		t.Fatalf("after FLUSHDB: %s", ack.Raw)
	}
}
