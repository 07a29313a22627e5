package natsbroker

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/switchboardhq/switchboard"
	"github.com/switchboardhq/switchboard/internal/brokertest"
)

var _ switchboard.Broker = (*Broker)(nil)

// TestClose runs first (not parallel) so that goleak sees only its own
// goroutines.
func TestClose(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent()) // only what this test starts
	b, err := New(Options{URL: natsURL, Prefix: uniquePrefix(), Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	brokertest.Lifecycle(t, b, ErrNotStarted, ErrClosed)
	if st := b.Stats(); st.Published != 100 || st.Delivered != 100 || st.Subscriptions != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	for _, o := range []Options{{}, {URL: natsURL, Prefix: "a..b."}, {URL: natsURL, Prefix: "a.*."}, {URL: natsURL, Prefix: "a b."}, {URL: natsURL, Prefix: ".a"}} {
		if _, err := New(o); err == nil {
			t.Errorf("New(%+v) succeeded", o)
		}
	}
}

func TestTokenEncoding(t *testing.T) {
	cases := map[string]string{
		"":                  "_",
		"all":               "all",
		"room:a.b":          "room_3Aa_2Eb",
		"user:x@y/z-1_2":    "user_3Ax_40y_2Fz-1_5F2",
		"room:*>":           "room_3A_2A_3E",
		"room:\x00 ü":       "room_3A_00_20_C3_BC",
		"_":                 "_5F",
		"room:日本":           "room_3A_E6_97_A5_E6_9C_AC",
		"room:..\t\r\n\x7f": "room_3A_2E_2E_09_0D_0A_7F",
	}
	for in, want := range cases {
		got := EncodeToken(in)
		if got != want {
			t.Errorf("EncodeToken(%q) = %q, want %q", in, got, want)
		}
		if !validSubject("p." + got) {
			t.Errorf("token %q is not a valid subject token", got)
		}
		if back, ok := DecodeToken(got); !ok || back != in {
			t.Errorf("DecodeToken(%q) = %q, %v", got, back, ok)
		}
	}
	for _, bad := range []string{"", "a_", "a_4", "a_4g", "a_4a", "a.b", "a*"} {
		if _, ok := DecodeToken(bad); ok {
			t.Errorf("DecodeToken(%q) accepted", bad)
		}
	}
}

func FuzzToken(f *testing.F) {
	f.Add("room:a.b")
	f.Add("\x00_")
	f.Fuzz(func(t *testing.T, s string) {
		tok := EncodeToken(s)
		if !validSubject(tok) {
			t.Fatalf("invalid token %q", tok)
		}
		if back, ok := DecodeToken(tok); !ok || back != s {
			t.Fatalf("round trip of %q: %q %v", s, back, ok)
		}
	})
}

func TestFanOut(t *testing.T) {
	t.Parallel()
	suite(natsURL).FanOut(t, uniquePrefix())
}

func TestOrder(t *testing.T) {
	t.Parallel()
	suite(natsURL).Order(t, uniquePrefix(), 10000)
}

func TestBinary(t *testing.T) {
	t.Parallel()
	suite(natsURL).Binary(t, uniquePrefix())
}

func TestHubCluster(t *testing.T) {
	t.Parallel()
	suite(natsURL).HubCluster(t, uniquePrefix())
}

// TestOutage shuts the NATS server down under traffic and starts a new one
// on the same port: nats.go reconnects and re-creates the subscriptions,
// and payloads flow again without re-creating the brokers.
func TestOutage(t *testing.T) {
	t.Parallel()
	port := freePort(t)
	srv, err := runServer(port, "")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	t.Cleanup(func() { mu.Lock(); srv.Shutdown(); mu.Unlock() })
	prefix := uniquePrefix()
	s := suite(srv.ClientURL())
	a, b := s.Node(t, prefix), s.Node(t, prefix)
	brokertest.Outage(t, a, b, func() {
		mu.Lock()
		defer mu.Unlock()
		srv.Shutdown()
		srv.WaitForShutdown()
	}, func() {
		mu.Lock()
		defer mu.Unlock()
		if srv, err = runServer(port, ""); err != nil {
			t.Fatalf("restart nats-server: %v", err)
		}
	})
	for _, n := range []*Broker{a.B.(*Broker), b.B.(*Broker)} {
		if st := n.Stats(); st.Reconnects < 1 || st.Subscriptions != 1 {
			t.Fatalf("stats after outage: %+v", st)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if n := srv.NumSubscriptions(); n < 2 {
		t.Fatalf("new server has %d subscriptions, want the 2 re-created ones", n)
	}
}

// BenchmarkPublish measures publish throughput of 100-byte payloads from
// one node to another node that receives all of them.
func BenchmarkPublish(b *testing.B) {
	prefix := uniquePrefix()
	received := benchReceiver(b, natsURL, prefix)
	ctx := context.Background()
	pub := newBroker(b, natsURL, prefix)
	if err := pub.Start(ctx, func(string, []byte) {}); err != nil {
		b.Fatal(err)
	}
	payload := make([]byte, 100)
	b.SetBytes(int64(len(payload)))
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		if err := pub.Publish(ctx, "room:bench", payload); err != nil {
			b.Fatal(err)
		}
		if i%4096 == 4095 { // pace so the receiver's buffer is not overrun
			_ = pub.Flush(ctx)
		}
	}
	received()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}

// benchReceiver starts a node subscribed to room:bench; received waits
// until it has got b.N payloads, then stops the timer.
func benchReceiver(b *testing.B, url, prefix string) (received func()) {
	var got atomic.Int64
	all := make(chan struct{})
	want := int64(b.N)
	recv := newBroker(b, url, prefix)
	ctx := context.Background()
	if err := recv.Start(ctx, func(string, []byte) {
		if got.Add(1) == want {
			close(all)
		}
	}); err != nil {
		b.Fatal(err)
	}
	if err := recv.Subscribe(ctx, "room:bench"); err != nil {
		b.Fatal(err)
	}
	return func() {
		select {
		case <-all:
		case <-time.After(time.Minute):
			b.Fatalf("received %d of %d (dropped %d)", got.Load(), b.N, recv.Stats().Dropped)
		}
		b.StopTimer()
	}
}

// benchHistoryBroker starts a node keeping size messages per stream (in
// memory or files) whose history stream is deleted when the benchmark ends.
func benchHistoryBroker(b *testing.B, url, prefix string, size int, memory bool) *Broker {
	pub, err := New(Options{URL: url, Prefix: prefix, Logger: quietLogger(), HistoryMemory: memory})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	pub.BoundHistory(size, time.Minute)
	if err := pub.Start(ctx, func(string, []byte) {}); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if nc, err := pub.conn(); err == nil {
			if js, err := jetstream.New(nc); err == nil {
				_ = js.DeleteStream(ctx, pub.HistoryStream())
			}
		}
		_ = pub.Close()
	})
	return pub
}

// BenchmarkHistoryAppend measures keeping and publishing 100-byte messages
// of one room's history from one node (each a JetStream store with an
// expected last sequence, then a core publish), with parallel publishers
// as a node has (one per connection, serialised per stream by Append),
// until another node has received them all; on each server at hand (see
// historyServers), with file and memory storage.
func BenchmarkHistoryAppend(b *testing.B) {
	for server, url := range historyServers(b) {
		for _, storage := range []string{"file", "memory"} {
			b.Run(server+"/"+storage, func(b *testing.B) { benchmarkAppend(b, url, storage == "memory") })
		}
	}
}

func benchmarkAppend(b *testing.B, natsURL string, memory bool) {
	prefix := uniquePrefix()
	received := benchReceiver(b, natsURL, prefix)
	ctx := context.Background()
	pub := benchHistoryBroker(b, natsURL, prefix, 1000, memory)
	head, tail := make([]byte, 60), make([]byte, 40)
	b.SetBytes(100)
	b.SetParallelism(8)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, _, err := pub.Append(ctx, "r:bench", "room:bench", head, tail); err != nil {
				b.Error(err)
				return
			}
		}
	})
	received()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}

// TestChurn: 10,000 join/leave cycles across two nodes leave no
// subscription and no goroutine behind.
func TestChurn(t *testing.T) {
	suite(natsURL).Churn(t, uniquePrefix(), 10000)
}

// TestPresence: three nodes share presence; two devices of a user racing
// to join on two nodes are announced once; a node cut off from the broker
// is forgotten within the TTL.
func TestPresence(t *testing.T) {
	suite(natsURL).Presence(t, uniquePrefix())
}

// TestUserLimit: --max-conns-per-user counts a user's connections on
// every node, and evict-oldest closes the oldest wherever it is.
func TestUserLimit(t *testing.T) {
	t.Parallel()
	suite(natsURL).UserLimit(t, uniquePrefix())
}
