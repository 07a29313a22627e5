package brokertest

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"runtime"
	"testing"

	"github.com/switchboardhq/switchboard"
)

// Churn runs two hubs of namespace ns and has clients on both join and
// leave rooms cycles times in all, several devices of one user racing each
// other; once every client is gone, the broker holds no subscription for
// any room or user and the goroutine count is back where it started.
func (s Suite) Churn(t *testing.T, ns string, cycles int) {
	before := runtime.NumGoroutine()
	opts := switchboard.Options{
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Limits: switchboard.Limits{Rate: 1e6, Burst: 1e6, HandshakeRate: 1e6, HandshakeBurst: 1e6},
	}
	var srvs []*httptest.Server
	var hubs []*switchboard.Hub
	for range 2 {
		o := opts
		o.Broker = s.Make(t, ns)
		hub, err := switchboard.New(o)
		if err != nil {
			t.Fatal(err)
		}
		hubs = append(hubs, hub)
		srvs = append(srvs, httptest.NewServer(hub.Handler()))
	}
	const clients, rooms = 8, 5
	perClient := max(1, cycles/clients)
	var cs []*client
	for i := range clients {
		// Users 0-3 each have a device on both nodes.
		cs = append(cs, dial(t, srvs[i%2], fmt.Sprintf("u%d", i/2)))
	}
	for i, c := range cs {
		for j := range perClient {
			room := fmt.Sprintf("room-%d", (i+j)%rooms)
			c.send(t, `{"type":"join","room":"`+room+`"}`)
			c.send(t, `{"type":"leave","room":"`+room+`"}`)
		}
		// Stay in one room, so that closing must clean it up.
		c.send(t, `{"type":"join","room":"room-0","id":"last"}`)
	}
	for _, c := range cs {
		c.expect(t, func(f frame) bool { return f.Type == "ack" && f.Ref == "last" })
	}
	if s.Subscribers != nil {
		s.expectSubscribers(t, ns, "room:room-0", 2)
	}
	everyone := []string{"u0", "u1", "u2", "u3"}
	for _, h := range hubs {
		expectUsers(t, "room-0 on "+h.NodeID(), func() ([]string, error) { return h.RoomUsers(context.Background(), "room-0") }, everyone...)
		expectUsers(t, "online on "+h.NodeID(), func() ([]string, error) { return h.OnlineUsers(context.Background()) }, everyone...)
	}
	for _, c := range cs {
		_ = c.conn.CloseNow()
		for range c.frames { // let the reader finish: it may be blocked handing over presence frames
		}
	}
	for i := range clients {
		Eventually(t, "connections gone", func() bool { return hubs[i%2].Count() == 0 })
	}
	for _, h := range hubs {
		// Presence forgets everyone, on both nodes.
		expectUsers(t, "online on "+h.NodeID(), func() ([]string, error) { return h.OnlineUsers(context.Background()) })
		for r := range rooms {
			room := fmt.Sprintf("room-%d", r)
			expectUsers(t, room+" on "+h.NodeID(), func() ([]string, error) { return h.RoomUsers(context.Background(), room) })
		}
	}
	if s.Subscribers != nil {
		for r := range rooms {
			s.expectSubscribers(t, ns, fmt.Sprintf("room:room-%d", r), 0)
		}
		for u := range clients / 2 {
			s.expectSubscribers(t, ns, fmt.Sprintf("user:u%d", u), 0)
		}
	}
	for i := range hubs {
		_ = hubs[i].Close()
		srvs[i].Close()
	}
	Eventually(t, fmt.Sprintf("goroutines back to %d", before), func() bool {
		return runtime.NumGoroutine() <= before
	})
}
