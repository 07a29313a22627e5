package e2e

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard/client"
)

// brokerProcess is a private Redis or NATS server for one test, so that
// killing it disturbs nobody else.
type brokerProcess struct {
	kind string
	port int
	cmd  *exec.Cmd
}

func freeLocalPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func (b *brokerProcess) url() string {
	if b.kind == "redis" {
		return fmt.Sprintf("redis://127.0.0.1:%d/0", b.port)
	}
	return fmt.Sprintf("nats://127.0.0.1:%d", b.port)
}

// start runs the server and waits until its port accepts connections.
func (b *brokerProcess) start(t *testing.T, ctx context.Context) {
	t.Helper()
	port := strconv.Itoa(b.port)
	if b.kind == "redis" {
		b.cmd = exec.Command("redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no")
	} else {
		b.cmd = exec.Command("nats-server", "-a", "127.0.0.1", "-p", port)
	}
	setProcessGroup(b.cmd)
	if err := b.cmd.Start(); err != nil {
		t.Fatalf("start %s-server (is it installed? scripts/test.sh installs it): %v", b.kind, err)
	}
	cmd := b.cmd
	t.Cleanup(func() { killProcessGroup(cmd); _ = cmd.Wait() })
	for {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+port, 200*time.Millisecond)
		if err == nil {
			_ = c.Close()
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s-server did not listen on %s: %v", b.kind, port, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (b *brokerProcess) kill() {
	killProcessGroup(b.cmd)
	_ = b.cmd.Wait()
}

// waitReady waits until /readyz answers want.
func waitReady(t *testing.T, ctx context.Context, s *server, want int) {
	t.Helper()
	client := &http.Client{Timeout: time.Second}
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+s.Addr+"/readyz", nil)
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == want {
				return
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("/readyz on %s never answered %d", s.Addr, want)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// The broker server dies in the middle of traffic and comes back on the
// same address: both nodes say not ready meanwhile, keep their clients,
// reconnect and resubscribe by themselves, and messages cross again (in
// order, without a client reconnecting); presence is intact.
func TestBrokerRestart(t *testing.T) {
	for _, kind := range []string{"redis", "nats"} {
		t.Run(kind, func(t *testing.T) {
			ctx := testContext(t, 90*time.Second)
			bp := &brokerProcess{kind: kind, port: freeLocalPort(t)}
			bp.start(t, ctx)
			cluster := fmt.Sprintf("c%x", rand.Uint64())
			args := func(host int, id string) []string {
				return append(clusterArgs(kind, cluster, host), "--node-id="+id, "--"+kind+"-url="+bp.url())
			}
			a := startServer(t, ctx, args(2, "a")...)
			b := startServer(t, ctx, args(3, "b")...)
			const room = "ops"
			alice := joinedGo(t, ctx, a, "alice", room)
			bob := joinedGo(t, ctx, b, "bob", room)
			conns := []string{alice.Welcome().Conn, bob.Welcome().Conn}
			waitAPIUsers(t, ctx, "/api/presence?room="+room, []string{"alice", "bob"}, a, b)

			// alice publishes numbered messages throughout; during the
			// outage her node refuses them with an error frame.
			stop := make(chan struct{})
			var wg sync.WaitGroup
			wg.Go(func() {
				pace := time.NewTicker(5 * time.Millisecond)
				defer pace.Stop()
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					case <-pace.C:
					}
					var refused *client.Error
					if err := alice.Publish(ctx, room, i); err != nil && !errors.As(err, &refused) {
						return
					}
				}
			})
			defer func() { close(stop); wg.Wait() }()
			fromAlice := func(desc string, atLeast int) int {
				t.Helper()
				m, err := bob.waitMsg(ctx, desc, func(m client.Message) bool {
					n, ok := dataInt(m)
					return m.From == "alice" && ok && n >= atLeast
				})
				if err != nil {
					t.Fatal(err)
				}
				n, _ := dataInt(m)
				return n
			}
			fromAlice("traffic before the outage", 20)

			bp.kill()
			waitReady(t, ctx, a, http.StatusServiceUnavailable)
			waitReady(t, ctx, b, http.StatusServiceUnavailable)
			// A backend is told its publish did not go out, and may retry.
			if st, body := apiCall(t, ctx, "POST", "http://"+b.Addr+"/api/publish", "k", `{"room":"ops","data":"during"}`); st != http.StatusServiceUnavailable || body["error"] != "broker_unavailable" {
				t.Fatalf("publish during the outage: %d %v, want 503 broker_unavailable", st, body)
			}
			bp.start(t, ctx)
			waitReady(t, ctx, a, http.StatusOK)
			waitReady(t, ctx, b, http.StatusOK)
			before := -1
			for _, m := range bob.messages() {
				if n, ok := dataInt(m); ok && m.From == "alice" {
					before = max(before, n)
				}
			}
			fromAlice("traffic after the broker returned", before+50)
			last := -1
			for _, m := range bob.messages() {
				if n, ok := dataInt(m); ok && m.From == "alice" {
					if n <= last {
						t.Fatalf("message %d after %d: order lost", n, last)
					}
					last = n
				}
			}
			for i, c := range []*goClient{alice, bob} {
				for _, sc := range c.stateChanges() {
					if sc.State == client.StateReconnecting {
						t.Fatalf("a client lost its connection during the outage: %v", sc.Err)
					}
				}
				if c.Welcome().Conn != conns[i] {
					t.Fatalf("a client is on a new connection after the outage")
				}
			}
			// Presence held through the outage (the new server knows
			// nothing; the nodes' replicas do) and a new change crosses.
			waitAPIUsers(t, ctx, "/api/presence?room="+room, []string{"alice", "bob"}, a, b)
			joinedGo(t, ctx, b, "carol", room)
			if _, err := alice.waitEvent(ctx, "carol's join across the restarted broker", func(e client.Event) bool {
				return e.Type == client.EventJoin && e.Room == room && e.User == "carol"
			}); err != nil {
				t.Fatal(err)
			}
		})
	}
}
