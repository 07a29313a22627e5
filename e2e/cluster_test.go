package e2e

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"testing"
	"time"

	"github.com/coder/websocket"
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

			ca := joined(t, ctx, "ws://"+a.Addr+"/ws?user="+alice, room)
			cb := joined(t, ctx, "ws://"+b.Addr+"/ws?user="+bob, room)

			if _, err := cb.request(ctx, map[string]any{"type": "publish", "room": room, "data": "across", "id": "p1"}); err != nil {
				t.Fatal(err)
			}
			if _, err := ca.expect(ctx, "bob's message on node a", func(f frame) bool {
				return f.typ() == "message" && f.str("from") == bob && f.Msg["data"] == "across"
			}); err != nil {
				t.Fatal(err)
			}
			// One sender's messages arrive in order on both nodes.
			const n = 300
			for i := range n {
				if err := ca.send(ctx, map[string]any{"type": "publish", "room": room, "data": i}); err != nil {
					t.Fatal(err)
				}
			}
			for _, c := range []*wsClient{ca, cb} {
				for want := 0; want < n; want++ {
					f, err := c.expect(ctx, fmt.Sprintf("message %d", want), func(f frame) bool {
						return f.typ() == "message" && f.str("from") == alice
					})
					if err != nil {
						t.Fatal(err)
					}
					if got, _ := f.Msg["data"].(float64); int(got) != want {
						t.Fatalf("got message %v, want %d: order lost across nodes", f.Msg["data"], want)
					}
				}
			}
			if _, err := ca.request(ctx, map[string]any{"type": "send", "to": bob, "data": "direct", "id": "s1"}); err != nil {
				t.Fatal(err)
			}
			if _, err := cb.expect(ctx, "alice's direct message on node b", func(f frame) bool {
				return f.typ() == "message" && f.str("to") == bob && f.Msg["data"] == "direct"
			}); err != nil {
				t.Fatal(err)
			}
			if st, body := apiCall(t, ctx, "POST", "http://"+a.Addr+"/api/disconnect", "k", `{"user":"`+bob+`"}`); st != 200 {
				t.Fatalf("disconnect: %d %v", st, body)
			}
			select {
			case <-cb.done:
			case <-ctx.Done():
				t.Fatal("bob not disconnected")
			}
			var ce websocket.CloseError
			if !errors.As(cb.err, &ce) || ce.Code != 4003 {
				t.Fatalf("bob's connection ended with %v, want 4003", cb.err)
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
