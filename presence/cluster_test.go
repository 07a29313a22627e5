package presence

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard/internal/testkit"
)

const channel = "presence"

// node starts a replica on the bus, as a hub would: started before its
// channel is subscribed, so it is ready for the first message.
func node(t testing.TB, b *testkit.Bus, id string, changed ...func(Change)) (*Cluster, *testkit.BusNode) {
	t.Helper()
	return nodeWith(t, b, Config{Node: id, TTL: 600 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, changed...)
}

func nodeWith(t testing.TB, b *testkit.Bus, cfg Config, changed ...func(Change)) (*Cluster, *testkit.BusNode) {
	t.Helper()
	bn := b.Node()
	cfg.Send = func(ctx context.Context, msg []byte) error { return bn.Publish(ctx, channel, msg) }
	cp := NewCluster(cfg)
	report := func(Change) {}
	if len(changed) > 0 {
		report = changed[0]
	}
	if err := cp.Start(context.Background(), report); err != nil {
		t.Fatal(err)
	}
	if err := bn.Start(context.Background(), func(_ string, p []byte) { cp.Receive(p) }); err != nil {
		t.Fatal(err)
	}
	_ = bn.Subscribe(context.Background(), channel)
	t.Cleanup(func() {
		_ = cp.Close()
		_ = bn.Close()
	})
	return cp, bn
}

// eventually polls cond until it holds, failing after a deadline: for
// state that has no event to wait on (replicas, counts, queues).
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testkit.Eventually(t, 10*time.Second, 5*time.Millisecond, what, cond)
}

func roomUsersAre(cp *Cluster, room string, want int) func() bool {
	return func() bool {
		users, _ := cp.RoomUsers(context.Background(), room)
		n, _ := cp.RoomSize(context.Background(), room)
		return len(users) == want && n == want
	}
}

func nodes(cp *Cluster) int { return len(cp.Peers()) + 1 }

// A node that starts late learns a share bigger than one snapshot message
// (several parts), and the counts agree with the lists.
func TestPresenceSnapshotInParts(t *testing.T) {
	b := &testkit.Bus{}
	a, _ := node(t, b, "a")
	ctx := context.Background()
	const users = 2*snapshotPartBytes/(6*len("u00000")+4) + 17
	for i := range users {
		u := fmt.Sprintf("u%d", i)
		if err := a.Connect(ctx, u); err != nil {
			t.Fatal(err)
		}
		if err := a.Join(ctx, "big", u); err != nil {
			t.Fatal(err)
		}
	}
	late, _ := node(t, b, "late")
	eventually(t, "the late node has every user", roomUsersAre(late, "big", users))
	online, _ := late.OnlineUsers(ctx)
	if len(online) != users {
		t.Fatalf("late node sees %d users online, want %d", len(online), users)
	}
	u, rooms := late.Totals()
	if u != users || rooms != 1 || nodes(late) != 2 {
		t.Fatalf("cluster totals %d users, %d rooms with %d nodes, want %d users, 1 room, 2 nodes", u, rooms, nodes(late), users)
	}
}

// Deltas lost on the way (a broker hiccup) are noticed at the next
// heartbeat and repaired with a snapshot.
func TestPresenceRepairsAGap(t *testing.T) {
	b := &testkit.Bus{}
	a, aNode := node(t, b, "a")
	other, _ := node(t, b, "b")
	eventually(t, "nodes see each other", func() bool { return nodes(other) == 2 })
	var lost sync.Mutex
	dropping := true
	b.Drop(func(to *testkit.BusNode, ch string, payload []byte) bool {
		lost.Lock()
		defer lost.Unlock()
		// Lose a's deltas to b, but let heartbeats through.
		return dropping && ch == channel && to != aNode && strings.Contains(string(payload), `"t":"j"`)
	})
	ctx := context.Background()
	for i := range 5 {
		if err := a.Join(ctx, "r", fmt.Sprintf("u%d", i)); err != nil {
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
	b := &testkit.Bus{}
	cp, _ := node(t, b, "a")
	other, _ := node(t, b, "b")
	eventually(t, "nodes see each other", func() bool { return nodes(cp) == 2 })
	if err := other.Join(context.Background(), "r", "bob"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a sees bob", roomUsersAre(cp, "r", 1))
	later := time.Now().Add(10 * cp.ttl)
	cp.expire(later) // a's own heartbeat is as old as b's: no verdict
	if users, _ := cp.RoomUsers(context.Background(), "r"); len(users) != 1 {
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
	cp.Receive([]byte(`{"t":"h","n":"a","st":1,"q":0}`))
	cp.expire(time.Now())
	if users, _ := cp.RoomUsers(context.Background(), "r"); len(users) != 1 {
		t.Fatalf("b's users dropped right after the broker returned: %v", users)
	}
	cp.mu.Lock()
	cp.selfHeard = later
	cp.mu.Unlock()
	cp.expire(later)
	if users, _ := cp.RoomUsers(context.Background(), "r"); len(users) != 0 || nodes(cp) != 1 {
		t.Fatalf("after b's silence with a working broker: users %v, nodes %v", users, cp.Peers())
	}
}

// A node restarted under the same name starts its numbering again; its
// earlier share is dropped and its new deltas apply.
func TestPresenceNodeRestartedUnderTheSameName(t *testing.T) {
	cp, _ := node(t, &testkit.Bus{}, "me")
	cp.Receive([]byte(`{"t":"j","n":"x","st":1,"q":1,"r":"r","u":"old"}`))
	cp.Receive([]byte(`{"t":"j","n":"x","st":1,"q":2,"r":"r","u":"both"}`))
	cp.Receive([]byte(`{"t":"j","n":"x","st":2,"q":1,"r":"r","u":"both"}`))
	cp.Receive([]byte(`{"t":"j","n":"x","st":1,"q":3,"r":"r","u":"late"}`)) // from the earlier run
	users, _ := cp.RoomUsers(context.Background(), "r")
	if !slices.Equal(users, []string{"both"}) {
		t.Fatalf("room after the restart: %v, want [both]", users)
	}
}

// eventLog collects the changes several replicas ask to be reported
// (Notify: what a hub hands to OnPresence).
type eventLog struct {
	mu     sync.Mutex
	events []string
}

func (l *eventLog) hook(node string) func(Change) {
	return func(ch Change) {
		if !ch.Notify {
			return
		}
		l.mu.Lock()
		l.events = append(l.events, node+" "+ch.Kind+" "+ch.User+" "+ch.Room)
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
	b := &testkit.Bus{}
	log := &eventLog{}
	a, _ := node(t, b, "a", log.hook("a"))
	o, _ := node(t, b, "b", log.hook("b"))
	eventually(t, "nodes see each other", func() bool { return nodes(a) == 2 && nodes(o) == 2 })
	ctx := context.Background()
	for _, cp := range []*Cluster{a, o} {
		if err := cp.Connect(ctx, "u"); err != nil {
			t.Fatal(err)
		}
		if err := cp.Join(ctx, "r", "u"); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "both hold u", func() bool {
		ua, _ := a.RoomUsers(ctx, "r")
		ub, _ := o.RoomUsers(ctx, "r")
		return len(ua) == 1 && len(ub) == 1
	})
	resume := b.Pause()
	for _, cp := range []*Cluster{a, o} {
		_ = cp.Leave(ctx, "r", "u")
		_ = cp.Disconnect(ctx, "u")
	}
	resume()
	eventually(t, "u offline reported", func() bool {
		return log.count(UserOffline, "u") >= 1 && log.count(RoomLeave, "u") >= 1
	})
	if n := log.count(UserOffline, "u"); n > 2 {
		t.Fatalf("offline reported %d times", n)
	}
}

// The oldest node restarts under its name: the survivors drop its earlier
// users and, the restarted node being young now, one of them reports it.
func TestPresenceLeaderRestartIsReported(t *testing.T) {
	log := &eventLog{}
	cp, _ := node(t, &testkit.Bus{}, "me", log.hook("me"))
	cp.Receive([]byte(`{"t":"c","n":"old","st":1,"q":1,"u":"gone"}`))
	cp.Receive([]byte(`{"t":"h","n":"old","st":9000000000000000000,"q":0}`)) // restarted, after this node
	eventually(t, "offline of the restarted node's user reported", func() bool { return log.count(UserOffline, "gone") == 1 })
}

// A goodbye drops the leaving node's users at once, and the oldest node
// reports them.
func TestPresenceGoodbye(t *testing.T) {
	b := &testkit.Bus{}
	log := &eventLog{}
	a, _ := node(t, b, "a", log.hook("a"))
	leaving, _ := nodeWith(t, b, Config{Node: "z", TTL: time.Hour, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err := leaving.Join(context.Background(), "r", "bob"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a sees bob", roomUsersAre(a, "r", 1))
	if err := leaving.Close(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "bob gone with his node", roomUsersAre(a, "r", 0))
	eventually(t, "bob's leave reported", func() bool { return log.count(RoomLeave, "bob") == 1 })
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
	cp, _ := nodeWith(f, &testkit.Bus{}, Config{Node: "fuzz", TTL: time.Hour,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	f.Fuzz(func(t *testing.T, msg []byte) {
		for _, part := range strings.Split(string(msg), "\n") {
			cp.Receive([]byte(part))
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
	cp, _ := nodeWith(t, &testkit.Bus{}, Config{Node: "same", TTL: time.Hour,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	cp.Receive([]byte(`{"t":"h","n":"same","st":1,"q":0}`))
	if !strings.Contains(logs.String(), "another node uses this node id") {
		t.Fatalf("no warning about a twin in:\n%s", logs.String())
	}
}
