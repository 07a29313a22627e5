package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// natsCluster is three nats-server processes (Debian's) joined by routes,
// with JetStream, for one test.
type natsCluster struct {
	ports []int
	cmds  []*exec.Cmd
}

func startNATSCluster(t *testing.T, ctx context.Context) *natsCluster {
	t.Helper()
	if _, err := exec.LookPath("nats-server"); err != nil {
		t.Fatalf("nats-server not found (scripts/test.sh installs it): %v", err)
	}
	c := &natsCluster{}
	var routes []string
	routePorts := make([]int, 3)
	for i := range 3 {
		c.ports = append(c.ports, freeLocalPort(t))
		routePorts[i] = freeLocalPort(t)
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", routePorts[i]))
	}
	for i := range 3 {
		cmd := exec.Command("nats-server", "-a", "127.0.0.1", "-p", strconv.Itoa(c.ports[i]),
			"-n", fmt.Sprintf("n%d", i), "-js", "-sd", t.TempDir(),
			"--cluster_name", "sbtest", "--cluster", fmt.Sprintf("nats://127.0.0.1:%d", routePorts[i]),
			"--routes", strings.Join(routes, ","))
		setProcessGroup(cmd)
		if err := cmd.Start(); err != nil {
			t.Fatalf("start nats-server: %v", err)
		}
		t.Cleanup(func() { killProcessGroup(cmd); _ = cmd.Wait() })
		c.cmds = append(c.cmds, cmd)
	}
	for _, p := range c.ports {
		for {
			conn, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(p), 200*time.Millisecond)
			if err == nil {
				_ = conn.Close()
				break
			}
			select {
			case <-ctx.Done():
				t.Fatalf("nats-server did not listen on %d: %v", p, err)
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	return c
}

// urls lists every server, server first first.
func (c *natsCluster) urls(first int) string {
	var out []string
	for i := range c.ports {
		out = append(out, fmt.Sprintf("nats://127.0.0.1:%d", c.ports[(first+i)%len(c.ports)]))
	}
	return strings.Join(out, ",")
}

// TestNATSClusterServerKilled runs three nodes, each started on its own
// server of a three-server NATS cluster, and kills (SIGKILL) the server of
// node a: its clients stay connected, node a moves to another server,
// messages published on b reach a's client again, and presence converges.
// In a room with history on JetStream (3 replicas) publishes resume once
// the stream has elected a new leader, which NATS bounds by its election
// timeout (4-9 s) after noticing the loss.
func TestNATSClusterServerKilled(t *testing.T) {
	for _, tc := range []struct {
		name  string
		extra []string
		bound time.Duration
	}{
		{"pub/sub", nil, 10 * time.Second},
		{"history on 3 replicas", []string{"--history-rooms=lobby", "--history-replicas=3"}, 30 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) { natsServerKilled(t, tc.extra, tc.bound) })
	}
}

func natsServerKilled(t *testing.T, extra []string, bound time.Duration) {
	ctx := testContext(t, 120*time.Second)
	nc := startNATSCluster(t, ctx)
	cluster := fmt.Sprintf("c%x", rand.Uint64())
	const room = "lobby"
	var nodes []*server
	for i, id := range []string{"a", "b", "c"} {
		args := append(clusterArgs("nats", cluster, 2+i), "--node-id="+id, "--nats-url="+nc.urls(i))
		nodes = append(nodes, startServer(t, ctx, append(args, extra...)...))
	}
	a, b, c := nodes[0], nodes[1], nodes[2]
	alice := clusterClient(t, ctx, a, "alice", room)
	bob := clusterClient(t, ctx, b, "bob", room)
	clusterClient(t, ctx, c, "carol", room)
	waitAPIUsers(t, ctx, "/api/presence?room="+room, []string{"alice", "bob", "carol"}, a, b, c)

	killed := time.Now()
	killProcessGroup(nc.cmds[0])
	_ = nc.cmds[0].Wait()

	// bob publishes until alice, on the node whose server died, hears one.
	for k := 0; ; k++ {
		if time.Since(killed) > bound {
			t.Fatalf("alice heard nothing published after her node's NATS server was killed, within %v", bound)
		}
		_ = bob.send(ctx, map[string]any{"type": "publish", "room": room, "data": k})
		wait, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		_, err := alice.expect(wait, "a message after the kill", func(f frame) bool {
			return f.typ() == "message" && f.str("from") == "bob"
		})
		cancel()
		if err == nil {
			break
		}
		select {
		case <-alice.done:
			t.Fatalf("alice lost her connection: %v", alice.err)
		default:
		}
	}
	t.Logf("messages flow again %v after the kill", time.Since(killed).Round(time.Millisecond))
	waitAPIUsers(t, ctx, "/api/presence?room="+room, []string{"alice", "bob", "carol"}, a, b, c)
	t.Logf("presence converged %v after the kill", time.Since(killed).Round(time.Millisecond))
}
