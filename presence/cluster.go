package presence

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Cluster is the presence of a multi-node cluster. Every node keeps a
// replica of every node's share (which users it has online, and in which
// rooms) and keeps it in step over one broker channel that every node
// hears (Config.Send out, Receive in):
//
//   - each change of this node's share goes out as a numbered delta;
//   - every TTL/3 a heartbeat carries the newest number, so a receiver
//     that missed a delta (broker outage, late start) notices the gap and
//     asks that node for a snapshot of its share;
//   - a node not heard from for the TTL, while this node hears its own
//     heartbeats (so the broker works), is dropped with all its users.
//
// The replica costs every node memory for the whole cluster's presence
// (about 180 bytes per user in one room, BenchmarkClusterPresenceMemory),
// and every node hears every first join and last leave: presence traffic grows with the
// cluster's churn, not with its messages.
//
// A user is in a room when any node's share says so; the cluster-wide
// transitions (first share to hold the user, last share to drop it) are
// reported to the function given to Start (the hub announces them to its
// own members). Queries are answered from memory, without a round trip.
//
// Lock order: sendMu, then mu; changed runs under mu and must not call
// back into the Cluster.
type Cluster struct {
	self    string
	started int64 // unix nanoseconds; the oldest live node reports expiries
	ttl     time.Duration
	send    func(ctx context.Context, msg []byte) error
	counts  func() Counts
	evict   func(user string, openedBy time.Time)
	log     *slog.Logger
	changed func(Change)

	// Lock order: sendMu before mu. sendMu keeps this node's numbered
	// messages in number order on the broker; mu guards the replica.
	sendMu sync.Mutex
	mu     sync.Mutex
	seq    uint64
	peers  map[string]*peer // every node heard from, this one included
	me     *peer
	rooms  map[string]int // users per room, cluster-wide
	// selfHeard is when this node last heard its own heartbeat back: the
	// broker works, so silence from another node means that node is gone.
	selfHeard time.Time
	wantSync  map[string]bool // nodes to ask for a snapshot; "" asks all
	wantSnap  bool            // a node asked for this node's snapshot
	// stillHeld remembers this node's own removals that were not the last
	// (another node still held the user), for one TTL: when that node's
	// removal arrives and is the last, both changes raced, and this node
	// reports the transition too, lest nobody does.
	stillHeld map[string]time.Time

	twinWarned time.Time // the last warning about a node with this one's name

	// closing is set by Leaving and Close: changes are no longer sent one
	// by one, the goodbye covers them.
	closing atomic.Bool

	wake   chan struct{}
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// peer is one node's share as this node knows it.
type peer struct {
	id        string
	started   int64
	heard     time.Time
	seq       uint64 // the newest delta applied
	synced    bool   // share is complete up to seq
	asked     time.Time
	share     share
	conns     int // from its heartbeat
	users     int
	roomCount int

	incoming *share // a snapshot being assembled
	nextPart int
}

type share struct {
	rooms map[string]map[string]struct{}
	users map[string]struct{}
	// conns are the connections of each online user on the node, for
	// limits that count a user's connections cluster-wide (see
	// userconns.go).
	conns map[string]userConns
}

func newShare() share {
	return share{rooms: map[string]map[string]struct{}{}, users: map[string]struct{}{}, conns: map[string]userConns{}}
}

const (
	snapshotDelay     = 25 * time.Millisecond // coalesces the requests of several nodes
	snapshotPartBytes = 128 << 10             // per snapshot message, well under broker limits (NATS: 1 MiB)
)

// Config configures a Cluster.
type Config struct {
	// Node names this node; every node of the cluster needs its own name.
	Node string
	// TTL bounds how long a node that went silent keeps its users present
	// elsewhere: each node says it is alive every TTL/3, and the others
	// drop its users once they have heard nothing from it for TTL.
	// Default 30s.
	TTL time.Duration
	// Send publishes one presence message to every node, this one
	// included; each node hands what it hears to Receive. Required. It
	// must return quickly (queue the network work) and keep one sender's
	// messages in order.
	Send func(ctx context.Context, msg []byte) error
	// Counts reports this node's totals for its heartbeats (NodeInfo on
	// the others). Default: zeros.
	Counts func() Counts
	// Logger receives events with counts and node ids. Default
	// slog.Default().
	Logger *slog.Logger
	// Evict is called when another node asks this one to close user's
	// oldest connection here, if it opened by openedBy (EvictOldest). It
	// is called with the replica's lock held and must not block. Default:
	// nothing.
	Evict func(user string, openedBy time.Time)
}

// Counts are one node's totals, carried by its heartbeats.
type Counts struct {
	Connections, Users, Rooms int
}

// DefaultTTL is Config.TTL's default.
const DefaultTTL = 30 * time.Second

// NewCluster returns the presence replica of node cfg.Node. Call Start
// before handing it messages.
func NewCluster(cfg Config) *Cluster {
	if cfg.TTL <= 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.Counts == nil {
		cfg.Counts = func() Counts { return Counts{} }
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Evict == nil {
		cfg.Evict = func(string, time.Time) {}
	}
	cp := &Cluster{
		self:     cfg.Node,
		started:  time.Now().UnixNano(),
		ttl:      cfg.TTL,
		send:     cfg.Send,
		counts:   cfg.Counts,
		evict:    cfg.Evict,
		log:      cfg.Logger,
		peers:    map[string]*peer{},
		rooms:    map[string]int{},
		changed:  func(Change) {},
		wantSync: map[string]bool{"": true}, // a new node asks everyone
		wake:     make(chan struct{}, 1),
	}
	cp.me = &peer{id: cp.self, started: cp.started, synced: true, share: newShare()}
	cp.peers[cp.self] = cp.me
	return cp
}

// Start begins the heartbeats and snapshot exchange, reporting every
// cluster-wide transition to changed until Close. changed is called with
// the replica's lock held, from Join, Leave, Connect and Disconnect (this
// node's own changes) and from Receive and the replica's goroutine; it
// must not call back into the Cluster, and should be short: it may take
// the caller's own locks (the hub announces to its members under it), but
// must not wait on anything that waits on the Cluster.
func (cp *Cluster) Start(ctx context.Context, changed func(Change)) error {
	cp.changed = changed
	ctx, cp.cancel = context.WithCancel(ctx)
	cp.wg.Add(1)
	go cp.run(ctx)
	return nil
}

// Close stops the replica and tells the other nodes to drop this one at
// once instead of after the TTL.
func (cp *Cluster) Close() error {
	if cp.cancel == nil {
		return nil
	}
	cp.closing.Store(true)
	cp.cancel()
	cp.wg.Wait()
	// The goodbye matters (without it the others keep this node's users
	// for a TTL): a full publish queue is retried for a second.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	cp.sendMu.Lock()
	defer cp.sendMu.Unlock()
	for {
		err := cp.publish(ctx, &presenceMsg{Type: msgBye})
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("presence goodbye: %w", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Leaving says this node is going: its remaining changes are covered by
// the goodbye Close sends, not sent one by one.
func (cp *Cluster) Leaving() { cp.closing.Store(true) }

func (cp *Cluster) run(ctx context.Context) {
	defer cp.wg.Done()
	tick := time.NewTicker(cp.ttl / 3)
	defer tick.Stop()
	var snap <-chan time.Time
	cp.heartbeat(ctx)
	cp.signal()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			cp.heartbeat(ctx)
			cp.expire(now)
		case <-cp.wake:
			cp.mu.Lock()
			want := cp.wantSync
			cp.wantSync = nil
			snapWanted := cp.wantSnap
			cp.mu.Unlock()
			if len(want) > 0 {
				cp.askSnapshots(ctx, want)
			}
			if snapWanted && snap == nil {
				snap = time.After(snapshotDelay)
			}
		case <-snap:
			snap = nil
			cp.mu.Lock()
			cp.wantSnap = false
			cp.mu.Unlock()
			cp.sendSnapshot(ctx)
		}
	}
}

func (cp *Cluster) signal() {
	select {
	case cp.wake <- struct{}{}:
	default:
	}
}

// Join records that user is in room on this node.
func (cp *Cluster) Join(ctx context.Context, room, user string) error {
	return cp.local(ctx, msgJoin, room, user)
}

// Leave records that user left room on this node.
func (cp *Cluster) Leave(ctx context.Context, room, user string) error {
	return cp.local(ctx, msgLeave, room, user)
}

// Connect records that user has a connection on this node.
func (cp *Cluster) Connect(ctx context.Context, user string) error {
	return cp.local(ctx, msgConnect, "", user)
}

// Disconnect records that user has no connection left on this node.
func (cp *Cluster) Disconnect(ctx context.Context, user string) error {
	return cp.local(ctx, msgDisconnect, "", user)
}

// local applies a change of this node's share and sends it as the next
// numbered delta.
func (cp *Cluster) local(ctx context.Context, typ, room, user string) error {
	cp.sendMu.Lock()
	defer cp.sendMu.Unlock()
	cp.mu.Lock()
	if !cp.apply(cp.me, typ, room, user, true) {
		cp.mu.Unlock()
		return nil // the share already says so
	}
	if cp.closing.Load() {
		cp.mu.Unlock()
		return nil
	}
	cp.seq++
	cp.me.seq = cp.seq
	m := presenceMsg{Type: typ, Seq: cp.seq, Room: room, User: user}
	cp.mu.Unlock()
	if err := cp.publish(ctx, &m); err != nil {
		// The replica has the change; the others notice the missing
		// number at the next heartbeat and ask for a snapshot.
		cp.log.Debug("presence change not sent", "error", err, "type", typ)
	}
	return nil
}

// apply changes p's share, reporting a cluster-wide transition, and says
// whether the share changed. Called with mu held.
func (cp *Cluster) apply(p *peer, typ, room, user string, notify bool) bool {
	switch typ {
	case msgJoin:
		members := p.share.rooms[room]
		if _, in := members[user]; in {
			return false
		}
		first := !cp.inRoomElsewhere(p, room, user)
		if members == nil {
			members = map[string]struct{}{}
			p.share.rooms[room] = members
		}
		members[user] = struct{}{}
		if first {
			cp.rooms[room]++
			cp.changed(Change{Kind: RoomJoin, User: user, Room: room, Members: cp.rooms[room], Notify: notify})
		}
	case msgLeave:
		members := p.share.rooms[room]
		if _, in := members[user]; !in {
			return false
		}
		delete(members, user)
		if len(members) == 0 {
			delete(p.share.rooms, room)
		}
		if !cp.inRoomElsewhere(p, room, user) {
			cp.rooms[room]--
			if cp.rooms[room] <= 0 {
				delete(cp.rooms, room)
			}
			notify = cp.raced(p, notify, room+"\x00"+user)
			cp.changed(Change{Kind: RoomLeave, User: user, Room: room, Members: cp.rooms[room], Notify: notify})
		} else if p == cp.me {
			cp.remember(room + "\x00" + user)
		}
	case msgConnect:
		if _, in := p.share.users[user]; in {
			return false
		}
		first := !cp.onlineElsewhere(p, user)
		p.share.users[user] = struct{}{}
		if _, known := p.share.conns[user]; !known {
			// One connection, from about now, until the node says more.
			p.share.conns[user] = userConns{n: 1, oldest: time.Now().UnixNano()}
		}
		if first {
			cp.changed(Change{Kind: UserOnline, User: user, Notify: notify})
		}
	case msgDisconnect:
		if _, in := p.share.users[user]; !in {
			return false
		}
		delete(p.share.users, user)
		delete(p.share.conns, user)
		if !cp.onlineElsewhere(p, user) {
			notify = cp.raced(p, notify, "\x00"+user)
			cp.changed(Change{Kind: UserOffline, User: user, Notify: notify})
		} else if p == cp.me {
			cp.remember("\x00" + user)
		}
	default:
		return false
	}
	return true
}

// remember notes a removal of this node's that another node's share
// outlived. Called with mu held.
func (cp *Cluster) remember(key string) {
	if cp.stillHeld == nil {
		cp.stillHeld = map[string]time.Time{}
	}
	cp.stillHeld[key] = time.Now()
}

// raced says whether a last removal arriving from peer p must be reported
// here: when this node removed the same entry shortly before, believing
// another node (p) still held it, neither node saw the transition as its
// own. Called with mu held.
func (cp *Cluster) raced(p *peer, notify bool, key string) bool {
	if p == cp.me || notify {
		return notify
	}
	at, ok := cp.stillHeld[key]
	if !ok {
		return false
	}
	delete(cp.stillHeld, key)
	return time.Since(at) < cp.ttl
}

func (cp *Cluster) inRoomElsewhere(p *peer, room, user string) bool {
	for _, q := range cp.peers {
		if q != p {
			if _, in := q.share.rooms[room][user]; in {
				return true
			}
		}
	}
	return false
}

func (cp *Cluster) onlineElsewhere(p *peer, user string) bool {
	for _, q := range cp.peers {
		if q != p {
			if _, in := q.share.users[user]; in {
				return true
			}
		}
	}
	return false
}

// replace makes next p's share, reporting every transition: users who
// came first (online, then their rooms) and users who went (rooms, then
// offline). Called with mu held.
func (cp *Cluster) replace(p *peer, next share, notify bool) {
	old := p.share
	for room, members := range old.rooms {
		for user := range members {
			if _, keep := next.rooms[room][user]; !keep {
				cp.apply(p, msgLeave, room, user, notify)
			}
		}
	}
	for user := range old.users {
		if _, keep := next.users[user]; !keep {
			cp.apply(p, msgDisconnect, "", user, notify)
		}
	}
	for user := range next.users {
		cp.apply(p, msgConnect, "", user, notify)
	}
	for room, members := range next.rooms {
		for user := range members {
			cp.apply(p, msgJoin, room, user, notify)
		}
	}
	for user, uc := range next.conns {
		if _, online := p.share.users[user]; online {
			p.share.conns[user] = uc
		}
	}
}

// dropShare reports the transitions of a share that is gone: p holds
// the share no more. Called with mu held.
func (cp *Cluster) dropShare(p *peer, gone share) {
	// The ghost is in no peer list, so each of its users counts as gone
	// unless a live node holds them.
	ghost := &peer{id: p.id, share: gone}
	cp.replace(ghost, newShare(), cp.isLeader())
}

// isLeader says whether this node is the oldest live one, the one that
// reports the transitions of nodes that left. Called with mu held.
func (cp *Cluster) isLeader() bool {
	for _, p := range cp.peers {
		if p.started < cp.started || (p.started == cp.started && p.id < cp.self) {
			return false
		}
	}
	return true
}

// expire drops the nodes not heard from for the TTL, provided this node
// heard its own heartbeat within the last half TTL: when the broker is
// down every node falls silent at once, and none of them is gone. Run
// every TTL/3, it drops a silent node within 4/3 TTL of its last word.
func (cp *Cluster) expire(now time.Time) {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	if now.Sub(cp.selfHeard) > cp.ttl/2 {
		return // the broker is not carrying this node's messages: no verdict
	}
	var gone []*peer
	for id, p := range cp.peers {
		if p != cp.me && now.Sub(p.heard) > cp.ttl {
			delete(cp.peers, id)
			gone = append(gone, p)
		}
	}
	for key, at := range cp.stillHeld {
		if now.Sub(at) > cp.ttl {
			delete(cp.stillHeld, key)
		}
	}
	notify := cp.isLeader()
	for _, p := range gone {
		cp.log.Warn("cluster node expired", "node_id", p.id, "users", len(p.share.users),
			"silent_ms", now.Sub(p.heard).Milliseconds())
		cp.replace(p, newShare(), notify)
	}
}
