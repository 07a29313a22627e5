package redisbroker

import (
	"context"
	"errors"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/switchboardhq/switchboard"
	"github.com/switchboardhq/switchboard/internal/brokertest"
)

var _ switchboard.Broker = (*Broker)(nil)

// TestClose runs first (not parallel) so that goleak sees only its own
// goroutines.
func TestClose(t *testing.T) {
	url := needRedis(t)
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent()) // only what this test starts
	b, err := New(Options{URL: url, Prefix: uniquePrefix(), Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	brokertest.Lifecycle(t, b, ErrNotStarted, ErrClosed)
	st := b.Stats()
	if st.Published != 100 || st.Delivered != 100 || st.Subscriptions != 1 || st.PublishErrors != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// A broker that never reached Redis closes cleanly too.
func TestCloseUnreachable(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent()) // only what this test starts
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(Options{URL: "redis://127.0.0.1:" + itoa(port), Logger: quietLogger(), StartTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Publish(context.Background(), "all", nil); !errors.Is(err, ErrNotStarted) {
		t.Fatalf("Publish before Start: %v", err)
	}
	if err := b.Start(context.Background(), func(string, []byte) {}); err != nil {
		t.Fatal(err)
	}
	if b.Ready() {
		t.Fatal("ready without a server")
	}
	if err := b.Subscribe(context.Background(), "all"); err != nil {
		t.Fatal(err)
	}
	_ = b.Publish(context.Background(), "all", []byte("lost"))
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestNewRejectsBadURL(t *testing.T) {
	for _, u := range []string{"", "http://x", "127.0.0.1:6379"} {
		if _, err := New(Options{URL: u}); err == nil {
			t.Errorf("New(%q) succeeded", u)
		}
	}
}

func TestFanOut(t *testing.T) {
	t.Parallel()
	suite(needRedis(t)).FanOut(t, uniquePrefix())
}

func TestOrder(t *testing.T) {
	t.Parallel()
	suite(needRedis(t)).Order(t, uniquePrefix(), 10000)
}

func TestBinary(t *testing.T) {
	t.Parallel()
	suite(needRedis(t)).Binary(t, uniquePrefix())
}

func TestHubCluster(t *testing.T) {
	t.Parallel()
	suite(needRedis(t)).HubCluster(t, uniquePrefix())
}

// TestOutage kills the Redis server under traffic and starts it again on
// the same port: the brokers notice, keep accepting publishes, reconnect,
// resubscribe and deliver again without being re-created.
func TestOutage(t *testing.T) {
	t.Parallel()
	needRedis(t)
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	srv, err := startRedisServer(port)
	if err != nil {
		t.Skip("skipping: cannot run a private redis-server: " + err.Error())
	}
	var mu sync.Mutex
	stopSrv := func() {
		mu.Lock()
		defer mu.Unlock()
		if srv != nil {
			_ = srv.Process.Kill()
			_ = srv.Wait()
			srv = nil
		}
	}
	t.Cleanup(stopSrv)
	url := "redis://127.0.0.1:" + itoa(port) + "/0"
	prefix := uniquePrefix()
	s := suite(url)
	a, b := s.Node(t, prefix), s.Node(t, prefix)
	ab, bb := a.B.(*Broker), b.B.(*Broker)
	ab.opts.MaxBackoff, bb.opts.MaxBackoff = 300*time.Millisecond, 300*time.Millisecond
	brokertest.Outage(t, a, b, stopSrv, func() {
		mu.Lock()
		defer mu.Unlock()
		if srv, err = startRedisServer(port); err != nil {
			t.Fatalf("restart redis-server: %v", err)
		}
	})
	for _, n := range []*Broker{ab, bb} {
		if st := n.Stats(); st.Reconnects < 1 || st.Subscriptions != 1 {
			t.Fatalf("stats after outage: %+v", st)
		}
	}
	if got := numsub(t, url, prefix+"room:outage"); got != 2 {
		t.Fatalf("NUMSUB after reconnection = %d, want 2", got)
	}
}

// BenchmarkPublish measures publish throughput of 100-byte payloads from
// one node to another node that receives all of them.
func BenchmarkPublish(b *testing.B) { benchPublish(b, needRedis(b), 1) }

// BenchmarkClusterPublish is BenchmarkPublish on the Redis Cluster
// (SPUBLISH to the room's shard).
func BenchmarkClusterPublish(b *testing.B) { benchPublish(b, needCluster(b), 1) }

// BenchmarkClusterPublishRooms publishes round-robin to 64 rooms, which
// spread over the cluster's shards.
func BenchmarkClusterPublishRooms(b *testing.B) { benchPublish(b, needCluster(b), 64) }

// BenchmarkPublishRooms is the same on a single Redis.
func BenchmarkPublishRooms(b *testing.B) { benchPublish(b, needRedis(b), 64) }

func benchPublish(b *testing.B, url string, rooms int) {
	pub, received := benchPair(b, url, rooms)
	ctx := context.Background()
	payload := make([]byte, 100)
	b.SetBytes(int64(len(payload)))
	b.ResetTimer()
	names := make([]string, rooms)
	for i := range names {
		names[i] = "room:bench" + itoa(i)
	}
	start := time.Now()
	for i := range b.N {
		for {
			err := pub.Publish(ctx, names[i%rooms], payload)
			if err == nil {
				break
			}
			if !errors.Is(err, ErrQueueFull) {
				b.Fatal(err)
			}
			runtime.Gosched() // let the sender drain the queue
		}
	}
	received()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}

// benchPair starts a publishing node and a node subscribed to rooms
// room:bench0, room:bench1...; received waits until the latter has got b.N
// payloads, then stops the timer.
func benchPair(b *testing.B, url string, rooms int) (pub *Broker, received func()) {
	prefix := uniquePrefix()
	var got atomic.Int64
	all := make(chan struct{})
	want := int64(b.N)
	recv := newBroker(b, url, prefix)
	if err := recv.Start(context.Background(), func(string, []byte) {
		if got.Add(1) == want {
			close(all)
		}
	}); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	for i := range rooms {
		if err := recv.Subscribe(ctx, "room:bench"+itoa(i)); err != nil {
			b.Fatal(err)
		}
	}
	pub = newBroker(b, url, prefix)
	if err := pub.Start(ctx, func(string, []byte) {}); err != nil {
		b.Fatal(err)
	}
	return pub, func() {
		select {
		case <-all:
		case <-time.After(time.Minute):
			b.Fatalf("received %d of %d", got.Load(), b.N)
		}
		b.StopTimer()
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// TestChurn: 10,000 join/leave cycles across two nodes leave no
// subscription (PUBSUB NUMSUB) and no goroutine behind.
func TestChurn(t *testing.T) {
	suite(needRedis(t)).Churn(t, uniquePrefix(), 10000)
}

// TestPresence: three nodes share presence; two devices of a user racing
// to join on two nodes are announced once; a node cut off from the broker
// is forgotten within the TTL.
func TestPresence(t *testing.T) {
	suite(needRedis(t)).Presence(t, uniquePrefix())
}

// TestHistory: recovery across three nodes after a clean close and a
// dropped connection, offsets in order with two nodes publishing, and a
// new epoch after the keys are deleted.
func TestHistory(t *testing.T) {
	url := needRedis(t)
	ns := uniquePrefix()
	suite(url).History(t, ns, func(t *testing.T) {
		opts, err := redis.ParseURL(url)
		if err != nil {
			t.Fatal(err)
		}
		c := redis.NewClient(opts)
		defer c.Close()
		ctx := context.Background()
		keys, err := c.Keys(ctx, ns+"*").Result()
		if err != nil || len(keys) == 0 {
			t.Fatalf("no history keys under %s (%v)", ns, err)
		}
		if err := c.Del(ctx, keys...).Err(); err != nil {
			t.Fatal(err)
		}
	})
}

// BenchmarkHistoryAppend measures keeping and publishing 100-byte messages
// of one room's history from one node (each a script round trip), with
// parallel publishers as a node has (one per connection), until another
// node has received them all.
func BenchmarkHistoryAppend(b *testing.B) { benchHistoryAppend(b, needRedis(b)) }

// BenchmarkClusterHistoryAppend is the same on a Redis Cluster.
func BenchmarkClusterHistoryAppend(b *testing.B) { benchHistoryAppend(b, needCluster(b)) }

func benchHistoryAppend(b *testing.B, url string) {
	pub, received := benchPair(b, url, 1)
	ctx := context.Background()
	pub.BoundHistory(1000, time.Minute)
	head, tail := make([]byte, 60), make([]byte, 40)
	b.SetParallelism(8)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, _, err := pub.Append(ctx, "r:bench0", "room:bench0", head, tail); err != nil {
				b.Error(err)
				return
			}
		}
	})
	received()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}

// TestUserLimit: --max-conns-per-user counts a user's connections on
// every node, and evict-oldest closes the oldest wherever it is.
func TestUserLimit(t *testing.T) {
	t.Parallel()
	suite(needRedis(t)).UserLimit(t, uniquePrefix())
}
