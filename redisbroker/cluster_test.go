package redisbroker

import (
	"context"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboardhq/switchboard"
	"github.com/switchboardhq/switchboard/internal/brokertest"
	"github.com/switchboardhq/switchboard/internal/rediscluster"
)

// The cluster tests run on a Redis Cluster of 3 masters and 3 replicas that
// this process starts (redis-server --cluster-enabled, redis-cli --cluster
// create), or on $REDIS_CLUSTER_URL. The failover test starts its own,
// since it kills a master.
var shared struct {
	once sync.Once
	c    *rediscluster.Cluster
	url  string
	why  string
}

func needCluster(t testing.TB) string {
	t.Helper()
	shared.once.Do(func() {
		if u := os.Getenv("REDIS_CLUSTER_URL"); u != "" {
			shared.url = u
			return
		}
		if shared.why = rediscluster.Available(); shared.why != "" {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		c, err := rediscluster.Start(ctx, 3, 1)
		if err != nil {
			shared.why = "cannot start a Redis Cluster: " + err.Error()
			return
		}
		shared.c, shared.url = c, c.URL()
	})
	if shared.url == "" {
		if os.Getenv("SWITCHBOARD_REQUIRE_CLUSTERS") != "" {
			t.Fatal("no Redis Cluster, and scripts/test.sh requires one: " + shared.why)
		}
		t.Skip("skipping: " + shared.why)
	}
	return shared.url
}

func stopSharedCluster() {
	if shared.c != nil {
		shared.c.Stop()
	}
}

func clusterClient(url string) *redis.ClusterClient {
	o, seeds, err := clientOptions(url)
	if err != nil {
		panic(err)
	}
	return redis.NewClusterClient(clusterOptions(o, seeds))
}

// shardSubscribers is PUBSUB SHARDNUMSUB of a Redis channel, asked of the
// master that owns its slot.
func shardSubscribers(t testing.TB, url, rc string) int {
	t.Helper()
	cc := clusterClient(url)
	defer cc.Close()
	ctx := context.Background()
	m, err := cc.MasterForKey(ctx, rc)
	if err != nil {
		t.Fatalf("master of %s: %v", rc, err)
	}
	n, err := m.PubSubShardNumSub(ctx, rc).Result()
	if err != nil {
		t.Fatalf("PUBSUB SHARDNUMSUB: %v", err)
	}
	return int(n[rc])
}

// clusterName is the Redis channel of a switchboard channel in a cluster
// with the default partitions.
func clusterName(prefix, ch string) string {
	tags := partitionTags(DefaultClusterPartitions)
	return prefix + tags[partitionOf(ch, len(tags))] + ch
}

func clusterSuite(url string) brokertest.Suite {
	return brokertest.Suite{
		Make: func(t *testing.T, ns string) switchboard.Broker { return newBroker(t, url, ns) },
		Subscribers: func(t *testing.T, ns, channel string) int {
			return shardSubscribers(t, url, clusterName(ns, channel))
		},
	}
}

func TestClusterFound(t *testing.T) {
	t.Parallel()
	url := needCluster(t)
	b := newBroker(t, url, uniquePrefix())
	if err := b.Start(context.Background(), func(string, []byte) {}); err != nil {
		t.Fatal(err)
	}
	if !b.Ready() || !b.Cluster() {
		t.Fatalf("ready %v, cluster %v: want both", b.Ready(), b.Cluster())
	}
	if u := needRedis(t); u != "" {
		s := newBroker(t, u, uniquePrefix())
		if err := s.Start(context.Background(), func(string, []byte) {}); err != nil {
			t.Fatal(err)
		}
		if !s.Ready() || s.Cluster() {
			t.Fatalf("standalone: ready %v, cluster %v", s.Ready(), s.Cluster())
		}
	}
}

// Channels go to their partition's shard with SSUBSCRIBE, none with plain
// SUBSCRIBE, and the partitions are spread over every master.
func TestClusterShardedChannels(t *testing.T) {
	t.Parallel()
	url := needCluster(t)
	prefix := uniquePrefix()
	b := newBroker(t, url, prefix)
	if err := b.Start(context.Background(), func(string, []byte) {}); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	chans := []string{"room:a", "room:b", "user:u1", "all", "presence"}
	for _, ch := range chans {
		if err := b.Subscribe(ctx, ch); err != nil {
			t.Fatal(err)
		}
	}
	for _, ch := range chans {
		if n := shardSubscribers(t, url, clusterName(prefix, ch)); n != 1 {
			t.Errorf("SHARDNUMSUB %s = %d, want 1", ch, n)
		}
	}
	cc := clusterClient(url)
	defer cc.Close()
	masters := map[string]bool{}
	for _, tag := range partitionTags(DefaultClusterPartitions) {
		m, err := cc.MasterForKey(ctx, tag)
		if err != nil {
			t.Fatal(err)
		}
		masters[m.Options().Addr] = true
		if n, _ := m.PubSubNumSub(ctx, prefix+tag+"room:a").Result(); n[prefix+tag+"room:a"] != 0 {
			t.Errorf("a plain SUBSCRIBE exists for %s", tag)
		}
	}
	if len(masters) != 3 {
		t.Fatalf("partitions on %d masters, want all 3", len(masters))
	}
	for _, key := range []string{"foo", "{user1000}.following", "a{}b", "a{b}c", "{", "x}{y}", clusterName(prefix, "room:a")} {
		want, err := cc.ClusterKeySlot(ctx, key).Result()
		if err != nil {
			t.Fatal(err)
		}
		if got := keySlot(key); got != int(want) {
			t.Errorf("keySlot(%q) = %d, CLUSTER KEYSLOT says %d", key, got, want)
		}
	}
}

func TestClusterFanOut(t *testing.T) {
	t.Parallel()
	clusterSuite(needCluster(t)).FanOut(t, uniquePrefix())
}

func TestClusterOrder(t *testing.T) {
	t.Parallel()
	clusterSuite(needCluster(t)).Order(t, uniquePrefix(), 5000)
}

func TestClusterBinary(t *testing.T) {
	t.Parallel()
	clusterSuite(needCluster(t)).Binary(t, uniquePrefix())
}

func TestClusterHubs(t *testing.T) {
	t.Parallel()
	clusterSuite(needCluster(t)).HubCluster(t, uniquePrefix())
}

func TestClusterPresence(t *testing.T) {
	clusterSuite(needCluster(t)).Presence(t, uniquePrefix())
}

// TestClusterHistory is the history suite on a cluster: the script keeps
// and publishes in one slot (the reported failure was a publish to a room
// with history answered "internal").
func TestClusterHistory(t *testing.T) {
	url := needCluster(t)
	ns := uniquePrefix()
	clusterSuite(url).History(t, ns, func(t *testing.T) {
		cc := clusterClient(url)
		defer cc.Close()
		ctx := context.Background()
		var mu sync.Mutex
		deleted := 0
		err := cc.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
			keys, err := m.Keys(ctx, ns+"*").Result()
			if err != nil {
				return err
			}
			for _, k := range keys {
				if strings.HasSuffix(k, "history-generation") {
					continue
				}
				if err := m.Del(ctx, k).Err(); err != nil {
					return err
				}
			}
			mu.Lock()
			deleted += len(keys)
			mu.Unlock()
			return nil
		})
		if err != nil || deleted == 0 {
			t.Fatalf("deleted %d history keys under %s (%v)", deleted, ns, err)
		}
	})
}

func TestSlotsOfTags(t *testing.T) {
	// Values from CLUSTER KEYSLOT (TestClusterShardedChannels compares more
	// with a live cluster).
	for key, slot := range map[string]int{"foo": 12182, "bar": 5061} {
		if got := keySlot(key); got != slot {
			t.Errorf("keySlot(%q) = %d, want %d", key, got, slot)
		}
	}
	tags := partitionTags(16)
	for i, tag := range tags {
		lo, hi := i*clusterSlots/16, (i+1)*clusterSlots/16
		if s := keySlot("x" + tag + "room:a"); s < lo || s >= hi {
			t.Errorf("tag %s: slot %d outside [%d, %d)", tag, s, lo, hi)
		}
	}
	if partitionOf("room:lobby", 16) != partitionOf("r:lobby", 16) || partitionOf("user:u", 16) != partitionOf("u:u", 16) {
		t.Fatal("a room's channel and its history are in different partitions")
	}
}

func TestSeedList(t *testing.T) {
	for in, want := range map[string][2]string{
		"redis://h1:7000":                         {"redis://h1:7000", "h1:7000"},
		"redis://:pw@h1:7000,h2:7001/0?x=1":       {"redis://:pw@h1:7000/0?x=1", "h1:7000 h2:7001"},
		"rediss://u:p@a:1, b:2 ,c":                {"rediss://u:p@a:1", "a:1 b:2 c:6379"},
		"redis://h":                               {"redis://h:6379", "h:6379"},
		"redis://user:p@ss@h1:1,h2:2?addr=ignore": {"redis://user:p@ss@h1:1?addr=ignore", "h1:1 h2:2"},
	} {
		first, seeds, err := seedList(in)
		if err != nil || first != want[0] || strings.Join(seeds, " ") != want[1] {
			t.Errorf("seedList(%q) = %q, %q, %v; want %q, %q", in, first, seeds, err, want[0], want[1])
		}
	}
	for _, bad := range []string{"h1:7000", "redis://h1:1,,h2:2"} {
		if _, _, err := seedList(bad); err == nil {
			t.Errorf("seedList(%q) succeeded", bad)
		}
	}
}

// A cluster has only database 0; a URL naming another is refused with a
// message saying so, and the broker does not retry for ever.
func TestClusterRefusesDatabase(t *testing.T) {
	url := needCluster(t)
	o, seeds, err := clientOptions(url + "/3")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, _, err = probe(ctx, o, seeds)
	if !errors.Is(err, errMisconfigured) || !strings.Contains(err.Error(), "database 0") {
		t.Fatalf("probe with /3: %v", err)
	}
}

// TestClusterFailover kills (SIGKILL) the master that holds a room with
// history while three hubs publish to it: the replica takes over, the hubs
// follow without any client reconnecting, and a client coming back is told
// recovered:false with a new epoch (the replica may lack the newest
// writes), never a silently wrong recovery.
func TestClusterFailover(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	c := ownCluster(t, ctx, 1)
	url := c.URL()
	ns := uniquePrefix()
	s := clusterSuite(url)
	plain := s.Make
	s.Make = func(t *testing.T, ns string) switchboard.Broker {
		b := plain(t, ns).(*Broker)
		b.opts.MaxBackoff = 500 * time.Millisecond
		return b
	}
	s.Failover(t, ns, func(t *testing.T) {
		slot := keySlot(clusterName(ns, "room:kept"))
		m, err := c.MasterOf(ctx, slot)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Kill(m); err != nil {
			t.Fatal(err)
		}
		t.Logf("killed master %s of slot %d", m.Addr(), slot)
	}, 30*time.Second)
	if err := c.WaitHealthy(ctx); err != nil {
		t.Fatalf("cluster after the failover: %v", err)
	}
}

func TestClusterUserLimit(t *testing.T) {
	t.Parallel()
	clusterSuite(needCluster(t)).UserLimit(t, uniquePrefix())
}

// TestClusterSlotMove moves the slot of a partition to another master
// while a node is subscribed to a room in it: Redis unsubscribes the
// node's connection by itself, and the node reconnects the partition to
// the slot's new owner and hears the room again.
func TestClusterSlotMove(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	c := ownCluster(t, ctx, 0)
	url := c.URL()
	prefix := uniquePrefix()
	s := clusterSuite(url)
	recv, pub := s.Node(t, prefix), s.Node(t, prefix)
	rb := recv.B.(*Broker)
	rb.opts.MaxBackoff = 300 * time.Millisecond
	if err := recv.B.Subscribe(ctx, "room:moving"); err != nil {
		t.Fatal(err)
	}
	must(t, pub.B.Publish(ctx, "room:moving", []byte("before")))
	recv.C.WaitN(t, "room:moving", 1)

	slot := keySlot(clusterName(prefix, "room:moving"))
	from, err := c.MasterOf(ctx, slot)
	if err != nil {
		t.Fatal(err)
	}
	var to *rediscluster.Node
	for _, m := range c.Masters(ctx) {
		if m != from {
			to = m
			break
		}
	}
	if err := c.MoveSlot(ctx, slot, to); err != nil {
		t.Fatalf("move slot %d: %v", slot, err)
	}
	t.Logf("moved slot %d from %s to %s", slot, from.Addr(), to.Addr())
	brokertest.Eventually(t, "the room heard again after the slot moved", func() bool {
		_ = pub.B.Publish(ctx, "room:moving", []byte("after"))
		for _, p := range recv.C.On("room:moving") {
			if string(p) == "after" {
				return true
			}
		}
		return false
	})
	if n := shardSubscribers(t, url, clusterName(prefix, "room:moving")); n != 1 {
		t.Fatalf("SHARDNUMSUB on the new owner = %d, want 1", n)
	}
	if st := rb.Stats(); st.Reconnects < 1 {
		t.Fatalf("stats %+v: the partition did not reconnect", st)
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// ownCluster starts a cluster of 3 masters with replicas each for one test
// (one that kills or reshapes it), stopped when the test ends.
func ownCluster(t *testing.T, ctx context.Context, replicas int) *rediscluster.Cluster {
	t.Helper()
	if why := rediscluster.Available(); why != "" || os.Getenv("REDIS_CLUSTER_URL") != "" {
		if why != "" && os.Getenv("SWITCHBOARD_REQUIRE_CLUSTERS") != "" {
			t.Fatal("scripts/test.sh requires a Redis Cluster: " + why)
		}
		t.Skip("skipping: needs a cluster of its own: " + why)
	}
	c, err := rediscluster.Start(ctx, 3, replicas)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	return c
}

// keySlot is the cluster slot of key (of its hash tag, if it has one), as
// CLUSTER KEYSLOT computes it.
func keySlot(key string) int {
	if s := strings.IndexByte(key, '{'); s >= 0 {
		if e := strings.IndexByte(key[s+1:], '}'); e > 0 {
			key = key[s+1 : s+1+e]
		}
	}
	return int(crc16(key)) % clusterSlots
}
