package natsbroker

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboardhq/switchboard"
	"github.com/switchboardhq/switchboard/history"
	"github.com/switchboardhq/switchboard/internal/brokertest"
	"github.com/switchboardhq/switchboard/internal/testkit"
)

// streamInfo reads the history stream's state through a connection of its
// own to server first of c.
func streamInfo(t *testing.T, c *cluster, first int, b *Broker) *jetstream.StreamInfo {
	t.Helper()
	var info *jetstream.StreamInfo
	jsAdmin(t, c.servers[first].ClientURL(), func(ctx context.Context, js jetstream.JetStream) error {
		s, err := js.Stream(ctx, b.HistoryStream())
		if err != nil {
			return err
		}
		info = s.CachedInfo()
		return nil
	})
	return info
}

// startKeeping starts a cluster broker connected to server first that
// keeps history with the given replicas.
func startKeeping(t *testing.T, c *cluster, first int, prefix string, replicas int) *Broker {
	t.Helper()
	b := clusterBroker(t, c, first, Options{Prefix: prefix, HistoryReplicas: replicas})
	b.BoundHistory(100, time.Minute)
	if err := b.Start(context.Background(), func(string, []byte) {}); err != nil {
		t.Fatal(err)
	}
	return b
}

// TestClusterHistoryReplicated: a stream kept on one server is given three
// replicas by a broker asking for them; messages appended on it survive
// the shutdown of the stream's leader, and are read from a broker on a
// surviving server, which appends the next offset once a new leader is
// elected. Asking for more replicas than servers says what to do.
func TestClusterHistoryReplicated(t *testing.T) {
	c := runCluster(t, 3)
	prefix := uniquePrefix()
	const stream, n = "r:kept", 20

	// A node of an older configuration made the stream with one replica.
	old := startKeeping(t, c, 2, prefix, 1)
	_, epoch, _ := appendOne(t, old, stream, "m")
	if r := streamInfo(t, c, 0, old).Config.Replicas; r != 1 {
		t.Fatalf("stream made with %d replicas, want 1", r)
	}
	_ = old.Close()

	a := startKeeping(t, c, 0, prefix, 3)
	info := streamInfo(t, c, 0, a)
	if info.Config.Replicas != 3 || info.Cluster == nil || info.Cluster.Leader == "" || len(info.Cluster.Replicas) != 2 {
		t.Fatalf("after Start with 3 replicas: %d replicas, cluster %+v", info.Config.Replicas, info.Cluster)
	}
	for i := 2; i <= n; i++ {
		off, ep, _ := appendOne(t, a, stream, "m")
		if off != uint64(i) || ep != epoch {
			t.Fatalf("append %d: offset %d epoch %q, want epoch %q", i, off, ep, epoch)
		}
	}
	var leader string
	testkit.Eventually(t, clusterWait, 20*time.Millisecond, "every replica current", func() bool {
		cl := streamInfo(t, c, 0, a).Cluster
		current := 0
		for _, p := range cl.Replicas {
			if p.Current {
				current++
			}
		}
		leader = cl.Leader
		return leader != "" && current == 2
	})

	// Shut the stream's leader down, and read from a server left. A new
	// node's Start may wait for a new JetStream meta leader (it makes
	// sure of the stream); reads and appends need only the stream's own.
	var down int
	if _, err := fmt.Sscanf(leader, "n%d", &down); err != nil {
		t.Fatalf("leader %q: %v", leader, err)
	}
	reader := (down + 1) % 3
	start := time.Now()
	c.stop(down)
	r := startKeeping(t, c, reader, prefix, 3)
	var page history.Page
	testkit.Eventually(t, clusterWait, 50*time.Millisecond, "history read after the leader's loss", func() bool {
		var err error
		page, err = r.Read(context.Background(), stream, 0, 100)
		return err == nil
	})
	if page.Epoch != epoch || page.First != 1 || page.Offset != n {
		t.Fatalf("after the loss of %s: page first %d offset %d epoch %q, want 1..%d of %q", leader, page.First, page.Offset, page.Epoch, n, epoch)
	}
	expectOffsets(t, "after the leader's loss", page, 1, n)
	for i, p := range page.Payloads {
		if want := expectedPayload("m", uint64(i+1), epoch); string(p) != string(want) {
			t.Fatalf("payload %d: %q, want %q", i+1, p, want)
		}
	}
	var off uint64
	testkit.Eventually(t, clusterWait, 50*time.Millisecond, "an append after the leader's loss", func() bool {
		var err error
		off, _, err = r.Append(context.Background(), stream, "room:"+stream, []byte("m@"), []byte("!"))
		return err == nil
	})
	if off != n+1 {
		t.Fatalf("append after the loss: offset %d, want %d", off, n+1)
	}
	t.Logf("server %s (the stream leader) down: history readable and appendable again after %v", leader, time.Since(start).Round(time.Millisecond))

	// Five replicas cannot be placed on the two servers left.
	five := clusterBroker(t, c, reader, Options{Prefix: prefix, HistoryReplicas: 5})
	five.BoundHistory(100, time.Minute)
	if err := five.Start(context.Background(), func(string, []byte) {}); err != nil {
		t.Fatal(err)
	}
	_, _, err := five.Append(context.Background(), stream, "room:"+stream, nil, nil)
	if err == nil || !strings.Contains(err.Error(), "cannot place 5 history replicas") {
		t.Fatalf("append with 5 replicas on 2 servers: %v", err)
	}
}

// TestHistoryReplicasNeedCluster: more than one replica on a server that
// is not clustered fails at once, saying what to do.
func TestHistoryReplicasNeedCluster(t *testing.T) {
	t.Parallel()
	s, err := runServer(-1, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	b, err := New(Options{URL: s.ClientURL(), Prefix: uniquePrefix(), Logger: quietLogger(), HistoryReplicas: 3})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	b.BoundHistory(10, time.Minute)
	if err := b.Start(context.Background(), func(string, []byte) {}); err != nil {
		t.Fatal(err)
	}
	_, _, err = b.Append(context.Background(), "s", "room:s", nil, nil)
	if err == nil || !strings.Contains(err.Error(), "3 history replicas need a clustered JetStream") {
		t.Fatalf("append: %v", err)
	}
	if _, err := New(Options{URL: s.ClientURL(), HistoryReplicas: 6}); err == nil {
		t.Fatal("New accepted 6 replicas")
	}
}

// TestURLList: a list of servers, each with its own credentials, is
// accepted; a bad one is refused without showing any of them.
func TestURLList(t *testing.T) {
	for _, u := range []string{"nats://a:pa@n1:4222, nats://b:pb@n2:4222", "n1:4222,tls://n2:4222,", "wss://t0ken@n1:443"} {
		if _, err := New(Options{URL: u}); err != nil {
			t.Errorf("New(%q): %v", u, err)
		}
	}
	for _, u := range []string{"nats://a:s3cret@n1:4222,nats://a:s3cret@n%zz:4222", "nats://a:s3cret@n1:4222,redis://a:s3cret@n2", " , ", "nats://a:s3cret@"} {
		_, err := New(Options{URL: u})
		if err == nil || strings.Contains(err.Error(), "s3cret") {
			t.Errorf("New(%q): %v", u, err)
		}
	}
}

// TestClusterHubFailover: three hubs, each on its own server of a NATS
// cluster, with history replicated three times; the server of hub a is
// shut down mid-traffic. The hubs follow without any client reconnecting,
// presence converges, and a client coming back is given exactly what it
// missed or told recovered:false with a new epoch.
func TestClusterHubFailover(t *testing.T) {
	c := runCluster(t, 3)
	next := 0
	s := brokertest.Suite{Make: func(t *testing.T, ns string) switchboard.Broker {
		b := clusterBroker(t, c, next%3, Options{Prefix: ns, HistoryReplicas: 3})
		next++
		return b
	}}
	s.Failover(t, uniquePrefix(), func(t *testing.T) { c.stop(0) }, 30*time.Second)
}
