package switchboard

import (
	"context"
	"fmt"
	"github.com/switchboardhq/switchboard/internal/testkit"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// bus is an in-process stand-in for a broker server, for unit tests of the
// presence protocol only (the real brokers run the same checks in
// internal/brokertest). Each node gets its payloads in publish order on
// its own goroutine, as from a real broker connection.
type bus struct {
	mu    sync.Mutex
	nodes []*busNode
	// drop, if set, loses a payload on its way to one node.
	drop func(to *busNode, channel string, payload []byte) bool
}

// pause holds every delivery until the returned function is called, so a
// test can make two nodes' changes race.
func (b *bus) pause() (resume func()) {
	b.mu.Lock()
	gate := make(chan struct{})
	for _, n := range b.nodes {
		n.gate.Store(&gate)
	}
	b.mu.Unlock()
	return func() { close(gate) }
}

type busNode struct {
	gate  atomic.Pointer[chan struct{}]
	bus   *bus
	in    chan [2][]byte
	done  chan struct{}
	once  sync.Once
	subs  sync.Map
	start sync.Once
}

func (b *bus) node() *busNode {
	n := &busNode{bus: b, in: make(chan [2][]byte, 1<<14), done: make(chan struct{})}
	b.mu.Lock()
	b.nodes = append(b.nodes, n)
	b.mu.Unlock()
	return n
}

func (n *busNode) Start(_ context.Context, deliver func(string, []byte)) error {
	go func() {
		for {
			select {
			case m := <-n.in:
				if g := n.gate.Load(); g != nil {
					select {
					case <-*g:
					case <-n.done:
						return
					}
				}
				deliver(string(m[0]), m[1])
			case <-n.done:
				return
			}
		}
	}()
	return nil
}

func (n *busNode) Publish(_ context.Context, channel string, payload []byte) error {
	select {
	case <-n.done:
		return fmt.Errorf("bus node closed")
	default:
	}
	n.bus.mu.Lock()
	defer n.bus.mu.Unlock()
	for _, to := range n.bus.nodes {
		if _, ok := to.subs.Load(channel); !ok {
			continue
		}
		if n.bus.drop != nil && n.bus.drop(to, channel, payload) {
			continue
		}
		select {
		case to.in <- [2][]byte{[]byte(channel), slices.Clone(payload)}:
		case <-to.done:
		}
	}
	return nil
}

func (n *busNode) Subscribe(_ context.Context, channel string) error {
	n.subs.Store(channel, true)
	return nil
}

func (n *busNode) Unsubscribe(_ context.Context, channel string) error {
	n.subs.Delete(channel)
	return nil
}

func (n *busNode) Close() error {
	n.once.Do(func() { close(n.done) })
	return nil
}

func busHub(t *testing.T, b *bus, id string, onPresence ...func(PresenceEvent)) *Hub {
	t.Helper()
	opts := Options{
		Broker: b.node(), NodeID: id, PresenceTTL: 600 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	if len(onPresence) > 0 {
		opts.OnPresence = onPresence[0]
	}
	h, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	return h
}

// eventually polls cond until it holds, failing after a deadline: for
// state that has no event to wait on (replicas, counts, queues).
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testkit.Eventually(t, 10*time.Second, 5*time.Millisecond, what, cond)
}

func roomUsersAre(h *Hub, room string, want int) func() bool {
	return func() bool {
		users, _ := h.RoomUsers(context.Background(), room)
		n, _ := h.presence.RoomSize(context.Background(), room)
		return len(users) == want && n == want
	}
}

// A node that starts late learns a share bigger than one snapshot message
// (several parts), and the counts agree with the lists.
func TestPresenceSnapshotInParts(t *testing.T) {
	b := &bus{}
	a := busHub(t, b, "a")
	ctx := context.Background()
	const users = 2*snapshotPartBytes/(6*len("u00000")+4) + 17
	for i := range users {
		u := fmt.Sprintf("u%d", i)
		if err := a.presence.Connect(ctx, u); err != nil {
			t.Fatal(err)
		}
		if err := a.presence.Join(ctx, "big", u); err != nil {
			t.Fatal(err)
		}
	}
	late := busHub(t, b, "late")
	eventually(t, "the late node has every user", roomUsersAre(late, "big", users))
	online, _ := late.OnlineUsers(ctx)
	if len(online) != users {
		t.Fatalf("late node sees %d users online, want %d", len(online), users)
	}
	st, nodes := late.ClusterStats()
	if st.Users != users || st.Rooms != 1 || len(nodes) != 2 {
		t.Fatalf("cluster stats %+v with %d nodes, want %d users, 1 room, 2 nodes", st, len(nodes), users)
	}
}

// Deltas lost on the way (a broker hiccup) are noticed at the next
// heartbeat and repaired with a snapshot.
func TestPresenceRepairsAGap(t *testing.T) {
	b := &bus{}
	a := busHub(t, b, "a")
	other := busHub(t, b, "b")
	eventually(t, "nodes see each other", func() bool { return len(other.Nodes()) == 2 })
	var lost sync.Mutex
	dropping := true
	b.mu.Lock()
	b.drop = func(to *busNode, channel string, payload []byte) bool {
		lost.Lock()
		defer lost.Unlock()
		// Lose a's deltas to b, but let heartbeats through.
		return dropping && channel == channelPresence && to != a.broker && strings.Contains(string(payload), `"t":"j"`)
	}
	b.mu.Unlock()
	ctx := context.Background()
	for i := range 5 {
		if err := a.presence.Join(ctx, "r", fmt.Sprintf("u%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	lost.Lock()
	dropping = false
	lost.Unlock()
	eventually(t, "b repairs its copy of a's share", roomUsersAre(other, "r", 5))
}

// While this node does not hear itself, silence proves nothing: nobody is
// dropped. Once it hears itself again, a node silent past the TTL is.
func TestPresenceExpiryNeedsAWorkingBroker(t *testing.T) {
	b := &bus{}
	a := busHub(t, b, "a")
	other := busHub(t, b, "b")
	eventually(t, "nodes see each other", func() bool { return len(a.Nodes()) == 2 })
	if err := other.presence.Join(context.Background(), "r", "bob"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a sees bob", roomUsersAre(a, "r", 1))
	cp := a.cluster
	later := time.Now().Add(10 * cp.ttl)
	cp.expire(later) // a's own heartbeat is as old as b's: no verdict
	if users, _ := a.RoomUsers(context.Background(), "r"); len(users) != 1 {
		t.Fatalf("b's users dropped while the broker was silent for everyone: %v", users)
	}
	// The broker returns: this node hears itself first, and b gets a full
	// TTL to be heard too.
	cp.mu.Lock()
	long := time.Now().Add(-10 * cp.ttl)
	cp.selfHeard = long
	for _, p := range cp.peers {
		p.heard = long
	}
	cp.mu.Unlock()
	cp.receive([]byte(`{"t":"h","n":"a","st":1,"q":0}`))
	cp.expire(time.Now())
	if users, _ := a.RoomUsers(context.Background(), "r"); len(users) != 1 {
		t.Fatalf("b's users dropped right after the broker returned: %v", users)
	}
	cp.mu.Lock()
	cp.selfHeard = later
	cp.mu.Unlock()
	cp.expire(later)
	if users, _ := a.RoomUsers(context.Background(), "r"); len(users) != 0 || len(a.Nodes()) != 1 {
		t.Fatalf("after b's silence with a working broker: users %v, nodes %v", users, a.Nodes())
	}
}

// A node restarted under the same name starts its numbering again; its
// earlier share is dropped and its new deltas apply.
func TestPresenceNodeRestartedUnderTheSameName(t *testing.T) {
	h := busHub(t, &bus{}, "me")
	cp := h.cluster
	cp.receive([]byte(`{"t":"j","n":"x","st":1,"q":1,"r":"r","u":"old"}`))
	cp.receive([]byte(`{"t":"j","n":"x","st":1,"q":2,"r":"r","u":"both"}`))
	cp.receive([]byte(`{"t":"j","n":"x","st":2,"q":1,"r":"r","u":"both"}`))
	cp.receive([]byte(`{"t":"j","n":"x","st":1,"q":3,"r":"r","u":"late"}`)) // from the earlier run
	users, _ := h.RoomUsers(context.Background(), "r")
	if !slices.Equal(users, []string{"both"}) {
		t.Fatalf("room after the restart: %v, want [both]", users)
	}
}

// eventLog collects OnPresence events of several hubs.
type eventLog struct {
	mu     sync.Mutex
	events []string
}

func (l *eventLog) hook(node string) func(PresenceEvent) {
	return func(e PresenceEvent) {
		l.mu.Lock()
		l.events = append(l.events, node+" "+e.Kind+" "+e.User+" "+e.Room)
		l.mu.Unlock()
	}
}

func (l *eventLog) count(kind, user string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, e := range l.events {
		if strings.Contains(e, " "+kind+" "+user+" ") {
			n++
		}
	}
	return n
}

// Two devices of a user on two nodes go at the same moment (as with
// Hub.Disconnect): each node saw the other still holding the user, yet the
// user's offline and leave are reported (at least once, at most by both).
func TestPresenceRacingRemovalsAreReported(t *testing.T) {
	b := &bus{}
	log := &eventLog{}
	a := busHub(t, b, "a", log.hook("a"))
	o := busHub(t, b, "b", log.hook("b"))
	eventually(t, "nodes see each other", func() bool { return len(a.Nodes()) == 2 && len(o.Nodes()) == 2 })
	ctx := context.Background()
	for _, h := range []*Hub{a, o} {
		if err := h.presence.Connect(ctx, "u"); err != nil {
			t.Fatal(err)
		}
		if err := h.presence.Join(ctx, "r", "u"); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "both hold u", func() bool {
		ua, _ := a.RoomUsers(ctx, "r")
		ub, _ := o.RoomUsers(ctx, "r")
		return len(ua) == 1 && len(ub) == 1
	})
	resume := b.pause()
	for _, h := range []*Hub{a, o} {
		_ = h.presence.Leave(ctx, "r", "u")
		_ = h.presence.Disconnect(ctx, "u")
	}
	resume()
	eventually(t, "u offline reported", func() bool {
		return log.count(UserOffline, "u") >= 1 && log.count(RoomLeave, "u") >= 1
	})
	if n := log.count(UserOffline, "u"); n > 2 {
		t.Fatalf("offline reported %d times", n)
	}
}

// OnPresence may call back into the hub: it runs outside the presence
// lock, in order.
func TestOnPresenceMayCallTheHub(t *testing.T) {
	b := &bus{}
	seen := make(chan []string, 16)
	var h *Hub
	var ready sync.WaitGroup
	ready.Add(1)
	h = busHub(t, b, "a", func(e PresenceEvent) {
		ready.Wait()
		users, _ := h.OnlineUsers(context.Background())
		seen <- users
	})
	ready.Done()
	if err := h.presence.Connect(context.Background(), "u"); err != nil {
		t.Fatal(err)
	}
	select {
	case users := <-seen:
		if !slices.Equal(users, []string{"u"}) {
			t.Fatalf("OnlineUsers from OnPresence: %v", users)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("OnPresence calling OnlineUsers deadlocked")
	}
}

// The oldest node restarts under its name: the survivors drop its earlier
// users and, the restarted node being young now, one of them reports it.
func TestPresenceLeaderRestartIsReported(t *testing.T) {
	log := &eventLog{}
	h := busHub(t, &bus{}, "me", log.hook("me"))
	cp := h.cluster
	cp.receive([]byte(`{"t":"c","n":"old","st":1,"q":1,"u":"gone"}`))
	cp.receive([]byte(`{"t":"h","n":"old","st":9000000000000000000,"q":0}`)) // restarted, after this node
	eventually(t, "offline of the restarted node's user reported", func() bool { return log.count(UserOffline, "gone") == 1 })
}

// FuzzPresenceReceive: whatever a peer sends, the replica stays
// consistent (counts match lists) and nothing panics.
func FuzzPresenceReceive(f *testing.F) {
	for _, s := range []string{
		`{"t":"j","n":"x","st":1,"q":1,"r":"r","u":"u"}`,
		`{"t":"l","n":"x","st":1,"q":2,"r":"r","u":"u"}`,
		`{"t":"c","n":"x","st":1,"q":1,"u":"u"}`,
		`{"t":"h","n":"x","st":1,"q":9,"cn":3}`,
		`{"t":"s","n":"x","st":1,"q":9,"p":0,"us":["u"],"rs":{"r":["u","v"]}}`,
		`{"t":"s","n":"x","st":1,"q":9,"p":1,"z":true,"rs":{"r":["w"]}}`,
		`{"t":"y","n":"x","to":["fuzz"]}`,
		`{"t":"b","n":"x"}`,
		`{"t":"j","n":"fuzz","q":1,"r":"r","u":"u"}`,
		`not json`,
	} {
		f.Add([]byte(s))
	}
	h, err := New(Options{Broker: (&bus{}).node(), NodeID: "fuzz", PresenceTTL: time.Hour,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		f.Fatal(err)
	}
	defer h.Close()
	f.Fuzz(func(t *testing.T, msg []byte) {
		cp := h.cluster
		for _, part := range strings.Split(string(msg), "\n") {
			cp.receive([]byte(part))
		}
		cp.mu.Lock()
		defer cp.mu.Unlock()
		for _, p := range cp.peers {
			for room := range p.share.rooms {
				if cp.rooms[room] <= 0 {
					t.Fatalf("room %q held by %s is not counted", room, p.id)
				}
			}
		}
		for room, n := range cp.rooms {
			seen := map[string]bool{}
			for _, p := range cp.peers {
				for u := range p.share.rooms[room] {
					seen[u] = true
				}
			}
			if n != len(seen) || n <= 0 {
				t.Fatalf("room %q counted %d users, holds %d", room, n, len(seen))
			}
		}
	})
}

// Two live nodes with one name: each says so in its log.
func TestPresenceWarnsOfATwin(t *testing.T) {
	var logs testkit.Buffer
	h, err := New(Options{Broker: (&bus{}).node(), NodeID: "same", PresenceTTL: time.Hour,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	h.cluster.receive([]byte(`{"t":"h","n":"same","st":1,"q":0}`))
	if !strings.Contains(logs.String(), "another node uses this node id") {
		t.Fatalf("no warning about a twin in:\n%s", logs.String())
	}
}
