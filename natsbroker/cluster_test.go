package natsbroker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/switchboardhq/switchboard"
	"github.com/switchboardhq/switchboard/internal/brokertest"
	"github.com/switchboardhq/switchboard/internal/testkit"
)

// clusterWait bounds the forming of a cluster and each election in it.
const clusterWait = 30 * time.Second

// cluster is an in-process NATS cluster: servers routed to each other, each
// with JetStream files of its own.
type cluster struct {
	t       *testing.T
	servers []*server.Server
}

// runCluster starts n routed servers on free 127.0.0.1 ports and waits
// until they all see each other and JetStream has a meta leader. They are
// shut down when the test ends.
func runCluster(t *testing.T, n int) *cluster {
	t.Helper()
	c := &cluster{t: t}
	stores := t.TempDir() // made first, so removed after the shutdown below
	t.Cleanup(c.shutdown)
	name := "sb-" + strings.TrimSuffix(strings.TrimPrefix(uniquePrefix(), "sbtest."), ".")
	// The route ports are guessed free, and another test's listener may
	// take one before its server binds it; the whole cluster then starts
	// again on new ports.
	const attempts = 3
	for attempt := 1; ; attempt++ {
		servers, err := startCluster(t, name, n, stores)
		if err == nil {
			c.servers = servers
			break
		}
		for _, s := range servers {
			s.Shutdown()
			s.WaitForShutdown()
		}
		if attempt == attempts {
			t.Fatalf("cluster did not start in %d attempts: %v", attempts, err)
		}
		t.Logf("cluster start failed (%v); again on new ports", err)
	}
	testkit.Eventually(t, clusterWait, 20*time.Millisecond, "servers routed to each other", func() bool {
		for _, s := range c.servers {
			if s.NumRoutes() < n-1 {
				return false
			}
		}
		return true
	})
	c.waitMetaLeader(c.servers)
	// Streams with n replicas can be placed only once the meta leader has
	// stats from every server ("no suitable peers for placement" before).
	testkit.Eventually(t, clusterWait, 20*time.Millisecond, "every server placeable", func() bool {
		for _, s := range c.servers {
			if len(s.JetStreamClusterPeers()) == n {
				return true
			}
		}
		return false
	})
	return c
}

// startCluster starts n servers routed to each other on fresh ports and
// directories. On error it returns the servers it started, for shutdown.
func startCluster(t *testing.T, name string, n int, stores string) ([]*server.Server, error) {
	t.Helper()
	routes := make([]string, n)
	ports := make([]int, n)
	for i := range ports {
		ports[i] = freePort(t)
		routes[i] = fmt.Sprintf("nats-route://127.0.0.1:%d", ports[i])
	}
	var servers []*server.Server
	for i := range n {
		dir, err := os.MkdirTemp(stores, "js")
		if err != nil {
			return servers, err
		}
		s, err := server.NewServer(&server.Options{
			ServerName: fmt.Sprintf("n%d", i), Host: "127.0.0.1", Port: -1,
			NoLog: true, NoSigs: true,
			JetStream: true, StoreDir: dir,
			Cluster: server.ClusterOpts{Name: name, Host: "127.0.0.1", Port: ports[i]},
			Routes:  server.RoutesFromStr(strings.Join(routes, ",")),
		})
		if err != nil {
			return servers, fmt.Errorf("server %d: %w", i, err)
		}
		servers = append(servers, s)
		go s.Start()
		if !s.ReadyForConnections(10 * time.Second) {
			return servers, fmt.Errorf("server %d not ready (route port %d taken?)", i, ports[i])
		}
	}
	return servers, nil
}

// waitMetaLeader waits until one of live is the JetStream meta leader and
// every one of them knows it.
func (c *cluster) waitMetaLeader(live []*server.Server) {
	c.t.Helper()
	testkit.Eventually(c.t, clusterWait, 20*time.Millisecond, "a JetStream meta leader", func() bool {
		leaders := 0
		for _, s := range live {
			if s.JetStreamIsLeader() {
				leaders++
			}
			if !s.JetStreamIsCurrent() {
				return false
			}
		}
		return leaders == 1
	})
}

// urls lists every server's client URL, starting with server first: a
// broker given it (and nats.DontRandomize) connects to that one.
func (c *cluster) urls(first int) string {
	var out []string
	for i := range c.servers {
		out = append(out, c.servers[(first+i)%len(c.servers)].ClientURL())
	}
	return strings.Join(out, ",")
}

// index is the position of the server nc is connected to, or -1.
func (c *cluster) index(nc *nats.Conn) int {
	id := nc.ConnectedServerId()
	for i, s := range c.servers {
		if s.ID() == id {
			return i
		}
	}
	return -1
}

// stop shuts server i down and waits until it is gone.
func (c *cluster) stop(i int) {
	c.servers[i].Shutdown()
	c.servers[i].WaitForShutdown()
}

func (c *cluster) shutdown() {
	for _, s := range c.servers {
		s.Shutdown()
		s.WaitForShutdown()
	}
}

// clusterBroker makes a broker on c that connects to server first (the
// list is not shuffled), with quick reconnection attempts.
func clusterBroker(t *testing.T, c *cluster, first int, opts Options) *Broker {
	t.Helper()
	opts.URL = c.urls(first)
	if opts.Logger == nil {
		opts.Logger = quietLogger()
	}
	opts.ReconnectWait, opts.ReconnectJitter = 50*time.Millisecond, 100*time.Millisecond
	opts.NATSOptions = append(opts.NATSOptions, nats.DontRandomize())
	b, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// clusterNodes starts one broker per server of c, broker i connected to
// server i, and checks that it is.
func clusterNodes(t *testing.T, c *cluster, prefix string, logs []*testkit.Buffer) []brokertest.Node {
	t.Helper()
	var nodes []brokertest.Node
	for i := range c.servers {
		var opts Options
		opts.Prefix = prefix
		if i < len(logs) {
			opts.Logger = slog.New(slog.NewTextHandler(logs[i], nil))
		}
		b := clusterBroker(t, c, i, opts)
		col := brokertest.NewCollector()
		if err := b.Start(context.Background(), col.Deliver); err != nil {
			t.Fatal(err)
		}
		if got := c.index(b.nc); got != i {
			t.Fatalf("broker %d connected to server %d", i, got)
		}
		nodes = append(nodes, brokertest.Node{B: b, C: col})
	}
	return nodes
}

// A payload of these tests is "publisher/sequence"; a probe, "probe/publisher".

func payload(from, seq int) []byte { return []byte(strconv.Itoa(from) + "/" + strconv.Itoa(seq)) }

// sequences returns, per publisher, the sequences col got on ch in
// arrival order (probes left out).
func sequences(col *brokertest.Collector, ch string) map[int][]int {
	out := map[int][]int{}
	for _, p := range col.On(ch) {
		a, b, ok := strings.Cut(string(p), "/")
		from, err1 := strconv.Atoi(a)
		seq, err2 := strconv.Atoi(b)
		if ok && err1 == nil && err2 == nil {
			out[from] = append(out[from], seq)
		}
	}
	return out
}

// awaitInterest probes until every node hears every node on every
// channel. A subscription reaches the other servers of a cluster over its
// routes a moment after its own server acknowledged it (Subscribe waits
// for that one only), so publishes made at once on another server may
// find no interest there yet.
func awaitInterest(t *testing.T, nodes []brokertest.Node, channels ...string) {
	t.Helper()
	ctx := context.Background()
	testkit.Eventually(t, brokertest.Wait, 20*time.Millisecond, "every node hears every node", func() bool {
		heard := true
		for i, n := range nodes {
			for _, ch := range channels {
				if err := n.B.Publish(ctx, ch, []byte("probe/"+strconv.Itoa(i))); err != nil {
					t.Fatalf("probe: %v", err)
				}
			}
		}
		for _, n := range nodes {
			for _, ch := range channels {
				got := map[string]bool{}
				for _, p := range n.C.On(ch) {
					got[string(p)] = true
				}
				for i := range nodes {
					heard = heard && got["probe/"+strconv.Itoa(i)]
				}
			}
		}
		return heard
	})
}

// inOrder fails the test if any publisher's sequences arrived out of order
// (at most once allows gaps, never reordering).
func inOrder(t *testing.T, who int, ch string, got map[int][]int) {
	t.Helper()
	for from, seqs := range got {
		for k := 1; k < len(seqs); k++ {
			if seqs[k] <= seqs[k-1] {
				t.Fatalf("node %d on %s: from node %d, %d after %d", who, ch, from, seqs[k], seqs[k-1])
			}
		}
	}
}

// TestClusterFanOut: three brokers on three servers of a cluster; room,
// user and broadcast payloads published on each reach every one, all of
// them and in order per publisher.
func TestClusterFanOut(t *testing.T) {
	c := runCluster(t, 3)
	nodes := clusterNodes(t, c, uniquePrefix(), nil)
	channels := []string{"room:lobby", "user:ada", "all"}
	ctx := context.Background()
	for _, n := range nodes {
		for _, ch := range channels {
			if err := n.B.Subscribe(ctx, ch); err != nil {
				t.Fatal(err)
			}
		}
	}
	awaitInterest(t, nodes, channels...)
	const per = 300
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Go(func() {
			for seq := 1; seq <= per; seq++ {
				for _, ch := range channels {
					if err := n.B.Publish(ctx, ch, payload(i, seq)); err != nil {
						t.Errorf("node %d publish: %v", i, err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	for who, n := range nodes {
		for _, ch := range channels {
			testkit.Eventually(t, brokertest.Wait, 10*time.Millisecond, fmt.Sprintf("node %d has all of %s", who, ch), func() bool {
				got := sequences(n.C, ch)
				for i := range nodes {
					if len(got[i]) < per {
						return false
					}
				}
				return true
			})
			got := sequences(n.C, ch)
			inOrder(t, who, ch, got)
			for i := range nodes {
				if len(got[i]) != per {
					t.Fatalf("node %d on %s: %d payloads from node %d, want %d", who, ch, len(got[i]), i, per)
				}
			}
		}
	}
}

// failoverWait bounds how long a broker takes to move to another server
// of the cluster when its own shuts down. With two servers left, nats.go
// tries the next one at once (ReconnectWait applies only once the whole
// list has failed), so this is far more than it needs.
const failoverWait = 10 * time.Second

// TestClusterFailover: the server broker 0 is connected to shuts down
// under traffic. Broker 0 moves to another server within failoverWait,
// says so in its log, and its subscription works again both ways, without
// being made anew; payloads lost meanwhile are lost, none is reordered.
func TestClusterFailover(t *testing.T) {
	c := runCluster(t, 3)
	var log0 testkit.Buffer
	nodes := clusterNodes(t, c, uniquePrefix(), []*testkit.Buffer{&log0})
	const ch = "room:failover"
	ctx := context.Background()
	for _, n := range nodes {
		if err := n.B.Subscribe(ctx, ch); err != nil {
			t.Fatal(err)
		}
	}
	awaitInterest(t, nodes, ch)
	b0 := nodes[0].B.(*Broker)

	// Nodes 0 and 1 publish throughout, paced; node 0's publishes fail
	// while it has no server.
	var seq [2]atomic.Int64
	var refused atomic.Int64
	done := make(chan struct{})
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Go(func() {
			tick := time.NewTicker(2 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-done:
					return
				case <-tick.C:
				}
				err := nodes[i].B.Publish(ctx, ch, payload(i, int(seq[i].Add(1))))
				if errors.Is(err, switchboard.ErrUnavailable) {
					refused.Add(1)
				} else if err != nil {
					t.Errorf("node %d publish: %v", i, err)
					return
				}
			}
		})
	}
	stopTraffic := sync.OnceFunc(func() { close(done); wg.Wait() })
	defer stopTraffic()
	hears := func(who, from int, after int64) func() bool {
		return func() bool {
			s := sequences(nodes[who].C, ch)[from]
			return len(s) > 0 && int64(s[len(s)-1]) > after
		}
	}
	testkit.Eventually(t, brokertest.Wait, 5*time.Millisecond, "traffic both ways", func() bool {
		return hears(0, 1, 10)() && hears(2, 0, 10)()
	})

	start := time.Now()
	c.stop(0)
	testkit.Eventually(t, failoverWait, 5*time.Millisecond, "broker 0 on another server", func() bool {
		return b0.Stats().Reconnects >= 1 && b0.Ready() && c.index(b0.nc) > 0
	})
	moved := time.Since(start)
	mark0, mark1 := seq[0].Load(), seq[1].Load()
	testkit.Eventually(t, failoverWait, 5*time.Millisecond, "payloads both ways after the move", func() bool {
		return hears(0, 1, mark1)() && hears(1, 0, mark0)() && hears(2, 0, mark0)()
	})
	t.Logf("broker 0 moved to server %d %v after the shutdown, payloads flowed again after %v (%d publishes refused meanwhile)",
		c.index(b0.nc), moved.Round(time.Millisecond), time.Since(start).Round(time.Millisecond), refused.Load())
	stopTraffic()

	for who, n := range nodes {
		inOrder(t, who, ch, sequences(n.C, ch))
	}
	if st := b0.Stats(); st.Subscriptions != 1 {
		t.Fatalf("broker 0 stats after the move: %+v", st)
	}
	logs := log0.String()
	first := strings.Index(logs, `"connected to NATS" broker=nats server=n0`)
	lost, back := strings.Index(logs, "lost the NATS connection"), strings.Index(logs, "reconnected to NATS")
	if first < 0 || lost < first || back < lost || !strings.Contains(logs[back:], "server=n"+strconv.Itoa(c.index(b0.nc))) {
		t.Fatalf("broker 0's log does not follow the move:\n%s", logs)
	}
}
