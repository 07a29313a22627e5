package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard/client"
)

// Two real nodes share a broker: a publish on one node reaches a member on
// the other, a direct send reaches a user connected elsewhere, and the
// backend API of one node disconnects a user held by the other. One
// sender's numbered messages arrive in order on both nodes.
func TestTwoNodesShareABroker(t *testing.T) {
	for _, tc := range []struct{ broker, addr string }{
		{"redis", "127.0.0.1:6379"},
		{"nats", "127.0.0.1:4222"},
	} {
		t.Run(tc.broker, func(t *testing.T) {
			if c, err := net.DialTimeout("tcp", tc.addr, time.Second); err != nil {
				t.Fatalf("%s is not reachable at %s (scripts/test.sh starts it): %v", tc.broker, tc.addr, err)
			} else {
				_ = c.Close()
			}
			ctx := testContext(t, 60*time.Second)
			// Names unique to this run: the broker may be shared.
			sfx := fmt.Sprintf("%x", rand.Uint64())
			room, alice, bob := "r-"+sfx, "alice-"+sfx, "bob-"+sfx
			args := []string{"--addr=127.0.0.1:0", "--broker=" + tc.broker, "--cluster-name=c" + sfx, "--api-key=k", "--rate=1000", "--burst=1000"}
			a := startServer(t, ctx, append(args, "--node-id=a-"+sfx)...)
			b := startServer(t, ctx, append(args, "--node-id=b-"+sfx)...)

			ca := joinedGo(t, ctx, a, alice, room)
			cb := joinedGo(t, ctx, b, bob, room)

			if err := cb.Publish(ctx, room, "across"); err != nil {
				t.Fatal(err)
			}
			if _, err := ca.waitMsg(ctx, "bob's message on node a", func(m client.Message) bool {
				return m.Room == room && m.From == bob && dataIs(m, "across")
			}); err != nil {
				t.Fatal(err)
			}
			// One sender's messages arrive in order on both nodes.
			const n = 300
			for i := range n {
				if err := ca.Publish(ctx, room, i); err != nil {
					t.Fatal(err)
				}
			}
			for _, c := range []*goClient{ca, cb} {
				got, err := c.waitMsgs(ctx, fmt.Sprintf("alice's %d messages", n), n, func(m client.Message) bool {
					return m.From == alice
				})
				if err != nil {
					t.Fatal(err)
				}
				for want, m := range got {
					if k, _ := dataInt(m); k != want {
						t.Fatalf("got message %s, want %d: order lost across nodes", m.Data, want)
					}
				}
			}
			if err := ca.Send(ctx, bob, "direct"); err != nil {
				t.Fatal(err)
			}
			if _, err := cb.waitMsg(ctx, "alice's direct message on node b", func(m client.Message) bool {
				return m.To == bob && m.From == alice && dataIs(m, "direct")
			}); err != nil {
				t.Fatal(err)
			}
			if st, body := apiCall(t, ctx, "POST", "http://"+a.Addr+"/api/disconnect", "k", `{"user":"`+bob+`"}`); st != 200 {
				t.Fatalf("disconnect: %d %v", st, body)
			}
			if err := cb.waitStopped(ctx); closeCode(err) != 4003 {
				t.Fatalf("bob's client stopped with %v, want 4003", err)
			}
		})
	}
}

func joined(t *testing.T, ctx context.Context, url, room string) *wsClient {
	t.Helper()
	c, err := dialClient(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.close)
	if _, err := c.expect(ctx, "welcome", func(f frame) bool { return f.typ() == "welcome" }); err != nil {
		t.Fatal(err)
	}
	if _, err := c.request(ctx, map[string]any{"type": "join", "room": room, "id": "j"}); err != nil {
		t.Fatal(err)
	}
	return c
}

var _ = context.Background
