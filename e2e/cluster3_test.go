package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/switchboardhq/switchboard/internal/rediscluster"
)

// presenceTTL is what the cluster tests run with: a killed node's users
// must be gone within 4/3 of it.
const presenceTTL = 3 * time.Second

// clusterArgs are the flags of one node of a test cluster on broker, with
// a cluster name of its own so that parallel runs never meet.
func clusterArgs(broker, cluster string, host int) []string {
	return []string{
		fmt.Sprintf("--addr=127.0.0.%d:0", host), "--broker=" + broker, "--cluster-name=" + cluster,
		"--presence-ttl=" + presenceTTL.String(), "--api-key=k", "--rate=1000", "--burst=1000",
	}
}

// startRedisCluster starts a Redis Cluster of 3 masters and 3 replicas
// for the test, stopped when it ends.
func startRedisCluster(t *testing.T, ctx context.Context) *rediscluster.Cluster {
	t.Helper()
	if why := rediscluster.Available(); why != "" {
		t.Fatalf("cannot start a Redis Cluster (scripts/test.sh installs redis-server): %s", why)
	}
	c, err := rediscluster.Start(ctx, 3, 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	return c
}

func needBroker(t *testing.T, broker string) {
	t.Helper()
	addr := map[string]string{"redis": "127.0.0.1:6379", "nats": "127.0.0.1:4222"}[broker]
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatalf("%s is not reachable at %s (scripts/test.sh starts it): %v", broker, addr, err)
	}
	_ = c.Close()
}

// clusterClient dials user on node s and joins room.
func clusterClient(t *testing.T, ctx context.Context, s *server, user, room string) *wsClient {
	t.Helper()
	return joined(t, ctx, "ws://"+s.Addr+"/ws?user="+user, room)
}

// presenceFence returns the join and leave frames c receives until every
// presence change made earlier on the given nodes has reached it: a fresh
// user joins room on each node and disconnects, and c waits for its leave.
// A node's changes travel in order, and each node announces what it
// applies in that order, so everything earlier arrives first.
func presenceFence(t *testing.T, ctx context.Context, c *wsClient, room string, nodes ...*server) []frame {
	t.Helper()
	var seen []frame
	for _, n := range nodes {
		user := fmt.Sprintf("fence-%x", rand.Uint32())
		f := clusterClient(t, ctx, n, user, room)
		f.close()
		if _, err := c.expect(ctx, "the fence user's leave", func(fr frame) bool {
			if fr.str("user") == user {
				return fr.typ() == "leave"
			}
			if fr.typ() == "join" || fr.typ() == "leave" {
				seen = append(seen, fr)
			}
			return false
		}); err != nil {
			t.Fatal(err)
		}
	}
	return seen
}

func countFrames(frames []frame, typ, user string) int {
	n := 0
	for _, f := range frames {
		if f.typ() == typ && f.str("user") == user {
			n++
		}
	}
	return n
}

// apiUsers returns the users a node's backend API lists at path.
func apiUsers(t *testing.T, ctx context.Context, s *server, path string) []string {
	t.Helper()
	st, body := apiCall(t, ctx, "GET", "http://"+s.Addr+path, "k", "")
	if st != 200 {
		t.Fatalf("GET %s: %d %v", path, st, body)
	}
	var users []string
	list, _ := body["users"].([]any)
	for _, u := range list {
		users = append(users, u.(string))
	}
	return users
}

// waitAPIUsers waits until every node's API lists exactly want at path.
func waitAPIUsers(t *testing.T, ctx context.Context, path string, want []string, nodes ...*server) {
	t.Helper()
	for _, n := range nodes {
		var got []string
		tick := time.NewTicker(20 * time.Millisecond)
		for got = apiUsers(t, ctx, n, path); !slices.Equal(got, want); got = apiUsers(t, ctx, n, path) {
			select {
			case <-ctx.Done():
				t.Fatalf("%s on %s lists %v, want %v", path, n.Addr, got, want)
			case <-tick.C:
			}
		}
		tick.Stop()
	}
}

func statsNodes(t *testing.T, ctx context.Context, s *server) (int, map[string]any) {
	t.Helper()
	st, body := apiCall(t, ctx, "GET", "http://"+s.Addr+"/api/stats", "k", "")
	if st != 200 {
		t.Fatalf("stats: %d %v", st, body)
	}
	nodes, _ := body["nodes"].([]any)
	return len(nodes), body
}

// Three real nodes on each broker: room publishes and direct sends cross
// nodes in order, presence is the cluster's on every node, two devices of
// one user racing to join on two nodes are announced once, the API of one
// node disconnects a user on another, a node killed with SIGKILL is
// forgotten within the TTL (a user with a device elsewhere stays), and a
// restarted node rejoins.
func TestThreeNodeCluster(t *testing.T) {
	for _, kind := range []string{"redis", "nats", "redis-cluster"} {
		t.Run(kind, func(t *testing.T) {
			ctx := testContext(t, 120*time.Second)
			broker, extra := kind, []string(nil)
			if kind == "redis-cluster" {
				// A Redis Cluster of 3 masters and 3 replicas, one member's
				// address given: the nodes find the rest.
				broker, extra = "redis", []string{"--redis-url=" + startRedisCluster(t, ctx).URL()}
			} else {
				needBroker(t, broker)
			}
			cluster := fmt.Sprintf("c%x", rand.Uint64())
			const room = "lobby"
			nodeArgs := func(host int, id string) []string {
				return append(append(clusterArgs(broker, cluster, host), "--node-id="+id), extra...)
			}
			a := startServer(t, ctx, nodeArgs(2, "a")...)
			b := startServer(t, ctx, nodeArgs(3, "b")...)
			c := startServer(t, ctx, nodeArgs(4, "c")...)
			waitNodes := func(want int, nodes ...*server) {
				t.Helper()
				for _, n := range nodes {
					for got, _ := statsNodes(t, ctx, n); got != want; got, _ = statsNodes(t, ctx, n) {
						select {
						case <-ctx.Done():
							t.Fatalf("%s lists %d nodes, want %d", n.Addr, got, want)
						case <-time.After(20 * time.Millisecond):
						}
					}
				}
			}
			waitNodes(3, a, b, c)

			watcher := clusterClient(t, ctx, c, "watcher", room)
			// Two devices of alice race to join on a and b.
			var alice1, alice2 *wsClient
			var wg sync.WaitGroup
			wg.Go(func() { alice1 = clusterClient(t, ctx, a, "alice", room) })
			wg.Go(func() { alice2 = clusterClient(t, ctx, b, "alice", room) })
			wg.Wait()
			if alice1 == nil || alice2 == nil {
				t.FailNow()
			}
			if n := countFrames(presenceFence(t, ctx, watcher, room, a, b), "join", "alice"); n != 1 {
				t.Fatalf("the watcher heard alice join %d times, want once", n)
			}
			erin := clusterClient(t, ctx, b, "erin", room) // only on b
			bob := clusterClient(t, ctx, c, "bob", room)
			everyone := []string{"alice", "bob", "erin", "watcher"}
			waitAPIUsers(t, ctx, "/api/presence?room="+room, everyone, a, b, c)
			waitAPIUsers(t, ctx, "/api/users", everyone, a, b, c)
			// Other nodes' connection counts come with their heartbeats.
			for _, body := statsNodes(t, ctx, a); body["connections"] != float64(5) || body["users"] != float64(4); _, body = statsNodes(t, ctx, a) {
				select {
				case <-ctx.Done():
					t.Fatalf("cluster stats on a: %v, want 5 connections of 4 users", body)
				case <-time.After(50 * time.Millisecond):
				}
			}

			// One sender's numbered messages reach every node in order.
			const n = 200
			for i := range n {
				if err := bob.send(ctx, map[string]any{"type": "publish", "room": room, "data": i}); err != nil {
					t.Fatal(err)
				}
			}
			for _, r := range []*wsClient{alice1, alice2, erin, watcher} {
				for want := range n {
					f, err := r.expect(ctx, fmt.Sprintf("bob's message %d", want), func(f frame) bool {
						return f.typ() == "message" && f.str("from") == "bob"
					})
					if err != nil {
						t.Fatal(err)
					}
					if got, _ := f.Msg["data"].(float64); int(got) != want {
						t.Fatalf("got bob's message %v, want %d", f.Msg["data"], want)
					}
				}
			}
			// A direct send reaches both of alice's devices, on two nodes.
			if _, err := watcher.request(ctx, map[string]any{"type": "send", "to": "alice", "data": "dm", "id": "s"}); err != nil {
				t.Fatal(err)
			}
			for _, d := range []*wsClient{alice1, alice2} {
				if _, err := d.expect(ctx, "the direct message", func(f frame) bool {
					return f.typ() == "message" && f.str("to") == "alice" && f.Msg["data"] == "dm"
				}); err != nil {
					t.Fatal(err)
				}
			}
			// a's API disconnects bob, who is on c.
			if st, body := apiCall(t, ctx, "POST", "http://"+a.Addr+"/api/disconnect", "k", `{"user":"bob"}`); st != 200 {
				t.Fatalf("disconnect: %d %v", st, body)
			}
			<-bob.done
			if code := websocket.CloseStatus(bob.err); code != 4003 {
				t.Fatalf("bob's connection ended with %v, want 4003", bob.err)
			}
			waitAPIUsers(t, ctx, "/api/users", []string{"alice", "erin", "watcher"}, a, b, c)

			// b is killed: erin (only there) leaves within the TTL, alice
			// (also on a) stays, and nobody is a ghost.
			killed := time.Now()
			if err := b.cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			if _, err := watcher.expect(ctx, "erin's leave", func(f frame) bool {
				return f.typ() == "leave" && f.str("user") == "erin"
			}); err != nil {
				t.Fatal(err)
			}
			t.Logf("killed node's users gone after %v (TTL %v)", time.Since(killed).Round(time.Millisecond), presenceTTL)
			waitAPIUsers(t, ctx, "/api/presence?room="+room, []string{"alice", "watcher"}, a, c)
			waitAPIUsers(t, ctx, "/api/users", []string{"alice", "watcher"}, a, c)
			waitNodes(2, a, c)
			if n := countFrames(presenceFence(t, ctx, watcher, room, a), "leave", "alice"); n != 0 {
				t.Fatalf("alice's leave announced %d times while her device on a stays", n)
			}

			// b comes back (a new process, same name) and erin with it.
			b2 := startServer(t, ctx, nodeArgs(3, "b")...)
			waitNodes(3, a, b2, c)
			clusterClient(t, ctx, b2, "erin", room)
			if _, err := watcher.expect(ctx, "erin's join via the restarted node", func(f frame) bool {
				return f.typ() == "join" && f.str("user") == "erin"
			}); err != nil {
				t.Fatal(err)
			}
			waitAPIUsers(t, ctx, "/api/presence?room="+room, []string{"alice", "erin", "watcher"}, a, b2, c)
		})
	}
}
