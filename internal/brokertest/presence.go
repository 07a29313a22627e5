package brokertest

import (
	"context"
	"fmt"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard"
)

// PresenceTTL is what the presence checks run with: short, so that a
// silent node is dropped within a few seconds.
const PresenceTTL = 1500 * time.Millisecond

// presenceLog records the OnPresence events of every hub of a test.
type presenceLog struct {
	mu     sync.Mutex
	events []string // "node kind user room"
}

func (l *presenceLog) hook(node string) func(switchboard.PresenceEvent) {
	return func(e switchboard.PresenceEvent) {
		l.mu.Lock()
		l.events = append(l.events, strings.TrimSpace(fmt.Sprintf("%s %s %s %s", node, e.Kind, e.User, e.Room)))
		l.mu.Unlock()
	}
}

// count returns how many events of kind for user (and room) were reported
// by any node.
func (l *presenceLog) count(kind, user, room string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	want := strings.TrimSpace(kind + " " + user + " " + room)
	n := 0
	for _, e := range l.events {
		if _, rest, _ := strings.Cut(e, " "); rest == want {
			n++
		}
	}
	return n
}

type presenceNode struct {
	hub *switchboard.Hub
	srv *httptest.Server
	b   switchboard.Broker
}

func (s Suite) presenceNode(t *testing.T, ns, id string, log *presenceLog) presenceNode {
	t.Helper()
	b := s.Make(t, ns)
	hub, srv := startNode(t, switchboard.Options{Broker: b, NodeID: id, PresenceTTL: PresenceTTL, OnPresence: log.hook(id)})
	return presenceNode{hub: hub, srv: srv, b: b}
}

func expectUsers(t *testing.T, what string, got func() ([]string, error), want ...string) {
	t.Helper()
	Eventually(t, fmt.Sprintf("%s = %v", what, want), func() bool {
		users, err := got()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return slices.Equal(users, want)
	})
}

// fence returns the join and leave frames observer receives until every
// earlier presence change made on the given nodes has reached it: a fresh
// user joins the observer's room on each node and leaves again, and since
// a node's changes travel in order and every node announces them as it
// applies them, the fence user's leave comes after all of them.
func fence(t *testing.T, observer *client, room string, nodes ...presenceNode) []frame {
	t.Helper()
	var seen []frame
	for _, n := range nodes {
		user := fmt.Sprintf("fence-%s-%d", n.hub.NodeID(), fenceSeq.Add(1))
		f := dial(t, n.srv, user)
		f.send(t, `{"type":"join","room":"`+room+`","id":"fj"}`)
		f.expect(t, func(fr frame) bool { return fr.Type == "ack" && fr.Ref == "fj" })
		_ = f.conn.CloseNow()
		observer.expect(t, func(fr frame) bool {
			if fr.User == user {
				return fr.Type == "leave"
			}
			if fr.Type == "join" || fr.Type == "leave" {
				seen = append(seen, fr)
			}
			return false
		})
	}
	return seen
}

var fenceSeq atomic.Int64

// Presence runs three hubs of namespace ns and checks that presence is
// cluster-wide: queries on every node, join and leave announced once per
// user per room even when two devices of a user race on two nodes,
// OnPresence reported by one node, and a node cut off from the broker
// forgotten within the TTL while a user's device elsewhere keeps it online.
func (s Suite) Presence(t *testing.T, ns string) {
	ctx := context.Background()
	log := &presenceLog{}
	a := s.presenceNode(t, ns, "a", log)
	b := s.presenceNode(t, ns, "b", log)
	c := s.presenceNode(t, ns, "c", log)
	nodes := []presenceNode{a, b, c}
	Eventually(t, "three nodes see each other", func() bool {
		for _, n := range nodes {
			if len(n.hub.Nodes()) != 3 {
				return false
			}
		}
		return true
	})

	watcher := dial(t, c.srv, "watcher")
	watcher.send(t, `{"type":"join","room":"r","id":"w"}`)
	watcher.expect(t, func(f frame) bool { return f.Type == "ack" && f.Ref == "w" })

	alice := dial(t, a.srv, "alice")
	alice.send(t, `{"type":"join","room":"r","id":"j"}`)
	alice.expect(t, func(f frame) bool { return f.Type == "ack" && f.Ref == "j" })
	watcher.expect(t, func(f frame) bool { return f.Type == "join" && f.Room == "r" && f.User == "alice" })
	for _, n := range nodes {
		expectUsers(t, "room r on "+n.hub.NodeID(), func() ([]string, error) { return n.hub.RoomUsers(ctx, "r") }, "alice", "watcher")
		expectUsers(t, "online on "+n.hub.NodeID(), func() ([]string, error) { return n.hub.OnlineUsers(ctx) }, "alice", "watcher")
	}
	if got := log.count(switchboard.RoomJoin, "alice", "r"); got != 1 {
		t.Fatalf("room.join of alice reported %d times, want 1", got)
	}

	// Two devices of dave join r on a and b at the same moment: the
	// watcher on c hears one join, and one leave once both are gone.
	d1 := dial(t, a.srv, "dave")
	d2 := dial(t, b.srv, "dave")
	var wg sync.WaitGroup
	for _, d := range []*client{d1, d2} {
		wg.Go(func() { d.send(t, `{"type":"join","room":"r","id":"dj"}`) })
	}
	wg.Wait()
	for _, d := range []*client{d1, d2} {
		d.expect(t, func(f frame) bool { return f.Type == "ack" && f.Ref == "dj" })
	}
	joins := countUser(fence(t, watcher, "r", a, b), "join", "dave")
	aliceJoins := countUser(fence(t, alice, "r", a, b), "join", "dave")
	if joins != 1 || aliceJoins != 1 {
		t.Fatalf("dave's join announced %d times on c and %d on a, want once each", joins, aliceJoins)
	}

	// One device leaves: dave stays in the room, nobody hears a leave.
	d1.send(t, `{"type":"leave","room":"r","id":"dl"}`)
	d1.expect(t, func(f frame) bool { return f.Type == "ack" && f.Ref == "dl" })
	expectUsers(t, "room r on a", func() ([]string, error) { return a.hub.RoomUsers(ctx, "r") }, "alice", "dave", "watcher")
	if n := countUser(fence(t, watcher, "r", a, b), "leave", "dave"); n != 0 {
		t.Fatalf("watcher heard dave leave %d times while a device stays", n)
	}

	// Node b goes silent (its broker connection is cut, as when the
	// process is killed): within the TTL the others drop its users. Dave
	// keeps his device on a, so he stays online and in no room; erin, only
	// on b, is gone everywhere and her leave is announced once.
	erin := dial(t, b.srv, "erin")
	erin.send(t, `{"type":"join","room":"r","id":"ej"}`)
	erin.expect(t, func(f frame) bool { return f.Type == "ack" && f.Ref == "ej" })
	watcher.expect(t, func(f frame) bool { return f.Type == "join" && f.User == "erin" })
	cut := time.Now()
	_ = b.b.Close()
	left := map[string]bool{}
	watcher.expect(t, func(f frame) bool {
		if f.Type == "leave" && f.Room == "r" {
			left[f.User] = true
		}
		return left["erin"] && left["dave"]
	})
	t.Logf("silent node dropped after %v (TTL %v)", time.Since(cut).Round(time.Millisecond), PresenceTTL)
	for _, n := range []presenceNode{a, c} {
		expectUsers(t, "room r on "+n.hub.NodeID(), func() ([]string, error) { return n.hub.RoomUsers(ctx, "r") }, "alice", "watcher")
		expectUsers(t, "online on "+n.hub.NodeID(), func() ([]string, error) { return n.hub.OnlineUsers(ctx) }, "alice", "dave", "watcher")
		if got := len(n.hub.Nodes()); got != 2 {
			t.Fatalf("%s lists %d nodes after b went silent, want 2", n.hub.NodeID(), got)
		}
	}
	Eventually(t, "erin's offline reported once", func() bool { return log.count(switchboard.UserOffline, "erin", "") == 1 })
	if got := log.count(switchboard.UserOffline, "dave", ""); got != 0 {
		t.Fatalf("dave reported offline %d times while a device is on a", got)
	}

	// A graceful stop is forgotten at once, without waiting for the TTL.
	_ = a.hub.Close()
	expectUsers(t, "online on c", func() ([]string, error) { return c.hub.OnlineUsers(ctx) }, "watcher")
}

func countUser(frames []frame, typ, user string) int {
	n := 0
	for _, f := range frames {
		if f.Type == typ && f.User == user {
			n++
		}
	}
	return n
}
