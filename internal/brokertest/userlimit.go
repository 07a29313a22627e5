package brokertest

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/switchboardhq/switchboard"
)

// UserLimit runs three hubs of namespace ns with a limit of three
// connections per user and checks that it holds across the nodes: a user
// with one connection on each node is refused a fourth on any node (429
// too_many_connections); with evict-oldest a fourth is admitted and the
// user's oldest connection, on another node, is closed with 4002.
func (s Suite) UserLimit(t *testing.T, ns string) {
	for _, policy := range []switchboard.PerUserPolicy{switchboard.PolicyReject, switchboard.PolicyEvictOldest} {
		t.Run(string(policy), func(t *testing.T) {
			ns := ns + string(policy)[:1] + ":"
			limits := switchboard.Limits{MaxConnsPerUser: 3, PerUserPolicy: policy}
			var hubs []*switchboard.Hub
			var srvs []*httptest.Server
			for _, id := range []string{"a", "b", "c"} {
				hub, srv := startNode(t, switchboard.Options{Broker: s.Make(t, ns), NodeID: id, Limits: limits})
				hubs, srvs = append(hubs, hub), append(srvs, srv)
			}
			var conns []*client
			for i, srv := range srvs {
				conns = append(conns, dial(t, srv, "u"))
				// Each node learns of the connections before the next opens,
				// so the order of "oldest" is the order of dialing.
				for _, h := range hubs {
					Eventually(t, "every node counts the user's connections", func() bool {
						return h.UserConnCount("u") == i+1
					})
				}
			}
			for i, srv := range srvs {
				if policy == switchboard.PolicyReject {
					status, body := dialStatus(t, srv, "u")
					if status != http.StatusTooManyRequests || !strings.Contains(body, "too_many_connections") {
						t.Fatalf("a fourth connection on node %d: %d %s, want 429 too_many_connections", i, status, body)
					}
				}
			}
			if policy == switchboard.PolicyReject {
				return
			}
			// A fourth on node c: the oldest, on node a, is replaced.
			conns = append(conns, dial(t, srvs[2], "u"))
			select {
			case err := <-conns[0].done:
				if code := websocket.CloseStatus(err); code != switchboard.CloseReplaced {
					t.Fatalf("the oldest connection ended with %v (code %d), want %d", err, code, switchboard.CloseReplaced)
				}
			case <-time.After(Wait):
				t.Fatal("the oldest connection, on another node, was not replaced")
			}
			for i, c := range conns[1:] {
				if err := firstErr(c.done); err != nil {
					t.Fatalf("connection %d closed too: %v", i+1, err)
				}
			}
			for _, h := range hubs {
				Eventually(t, "every node counts three connections again", func() bool {
					return h.UserConnCount("u") == 3
				})
			}
		})
	}
}

// dialStatus tries a WebSocket handshake for user and returns the HTTP
// status and body of a refusal (101 and "" when it was accepted).
func dialStatus(t *testing.T, srv *httptest.Server, user string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Wait)
	defer cancel()
	conn, resp, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http")+"/ws?user="+user, nil)
	if err == nil {
		_ = conn.CloseNow()
		return http.StatusSwitchingProtocols, ""
	}
	if resp == nil {
		t.Fatalf("dial %s: %v", user, err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 512)
	n, _ := resp.Body.Read(buf)
	b.Write(buf[:n])
	return resp.StatusCode, b.String()
}
