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

	"github.com/switchboardhq/switchboard/client"
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
				cut := newCutter()
				x := dialGo(t, ctx, "ws://"+a.Addr+"/ws?user=x", &client.Options{NoReconnect: true, HTTPClient: cut.client()})
				if _, err := x.Join(ctx, keptRoom); err != nil {
					t.Fatal(err)
				}
				live := publishAPI(t, ctx, b, keptRoom, "live")
				if _, err := x.waitMsg(ctx, "the live message", func(m client.Message) bool { return m.Offset == live }); err != nil {
					t.Fatal(err)
				}
				// Where the application would save its place.
				since, epoch, ok := x.Position(keptRoom)
				if !ok || since != live {
					t.Fatalf("position %d %q %v, want offset %d", since, epoch, ok, live)
				}
				if away == "clean close" {
					_ = x.Close()
				} else {
					cut.cut()
					if err := x.waitStopped(ctx); closeCode(err) != 1006 {
						t.Fatalf("the dropped connection ended with %v, want 1006", err)
					}
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
				back := dialGo(t, ctx, "ws://"+c.Addr+"/ws?user=x", nil)
				res, err := back.Join(ctx, keptRoom, client.Since(since, epoch))
				if err != nil {
					t.Fatal(err)
				}
				if !res.Recovered || res.Offset != live+missed || res.Epoch != epoch {
					t.Fatalf("%s: rejoin %+v, want recovered up to offset %d", away, res, live+missed)
				}
				msgs, err := back.waitMsgs(ctx, "the recovered messages", missed, func(m client.Message) bool { return m.Room == keptRoom })
				if err != nil {
					t.Fatal(err)
				}
				seen := map[int]bool{}
				for i, m := range msgs {
					if m.Offset != live+1+uint64(i) || !m.Recovered {
						t.Fatalf("%s: recovered message %d has offset %d (recovered %v), want %d", away, i, m.Offset, m.Recovered, live+1+uint64(i))
					}
					n, _ := dataInt(m)
					seen[n] = true
				}
				if len(seen) != missed {
					t.Fatalf("%s: recovered %d distinct messages, want %d", away, len(seen), missed)
				}
				next := publishAPI(t, ctx, a, keptRoom, "after")
				if next != live+missed+1 {
					t.Fatalf("offset after recovery %d, want %d", next, live+missed+1)
				}
				all, err := back.waitMsgs(ctx, "the next live message", missed+1, func(m client.Message) bool { return m.Room == keptRoom })
				if err != nil {
					t.Fatal(err)
				}
				if m := all[missed]; m.Offset != next || m.Recovered {
					t.Fatalf("%s: first live message after recovery: %+v, want offset %d", away, m, next)
				}
				_ = back.Close()
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
	back := dialGo(t, ctx, "ws://"+b.Addr+"/ws?user=x2", nil)
	res, err := back.Join(ctx, keptRoom, client.Since(5, epoch))
	if err != nil {
		t.Fatal(err)
	}
	if res.Recovered || res.Epoch == epoch || res.Offset != 1 {
		t.Fatalf("after FLUSHDB: %+v, want not recovered, a new epoch, offset 1", res)
	}
	if msgs := back.messages(); len(msgs) != 0 {
		t.Fatalf("after FLUSHDB the client was given %d messages: %+v", len(msgs), msgs)
	}
}
