package switchboard

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboardhq/switchboard/internal/protocol"
)

// Presence keeps who is online and who is in which room, for the whole
// cluster. The hub reports its own node's transitions (a user's first local
// connection into a room and its last one out; likewise for being online at
// all) and announces to its local connections the cluster-wide transitions
// the Presence reports back through the function given to Start: a user in
// a room on no node before, or on no node any more.
//
// The default is this node's registry when the Broker is the in-memory one,
// and a replica kept in step over the Broker otherwise (see Options.PresenceTTL).
type Presence interface {
	// Start begins reporting changes until Close. changed may be called
	// from inside Join, Leave, Connect and Disconnect (the node's own
	// transitions) and from the Presence's own goroutines; calls for one
	// room or user come in the order of the changes and must not block.
	Start(ctx context.Context, changed func(PresenceChange)) error
	Join(ctx context.Context, room, user string) error
	Leave(ctx context.Context, room, user string) error
	Connect(ctx context.Context, user string) error
	Disconnect(ctx context.Context, user string) error
	// RoomUsers returns the sorted users in room.
	RoomUsers(ctx context.Context, room string) ([]string, error)
	// RoomSize returns how many users are in room.
	RoomSize(ctx context.Context, room string) (int, error)
	// OnlineUsers returns the sorted users with at least one connection.
	OnlineUsers(ctx context.Context) ([]string, error)
	Close() error
}

// PresenceChange is one cluster-wide transition of a user.
type PresenceChange struct {
	Kind string // UserOnline, UserOffline, RoomJoin or RoomLeave
	User string
	Room string // for RoomJoin and RoomLeave
	// Members is how many users the room has after the change; the hub
	// batches the announcements of rooms past Options.PresenceBatchSize.
	Members int
	// Notify asks the hub to report the change to Options.OnPresence. One
	// node of the cluster does: the one whose connection caused it (both,
	// when two devices on two nodes race), or for a node that went silent,
	// left or restarted, and for repairs from a snapshot, the oldest live
	// node.
	Notify bool
}

// localPresence is the single-node default: the hub's registry already
// knows everything, so it answers from there and stores nothing twice.
// Every transition the hub reports is a cluster-wide one.
type localPresence struct {
	reg     *registry
	changed func(PresenceChange)
}

func (p *localPresence) Start(_ context.Context, changed func(PresenceChange)) error {
	p.changed = changed
	return nil
}

func (p *localPresence) Join(_ context.Context, room, user string) error {
	p.changed(PresenceChange{Kind: RoomJoin, User: user, Room: room, Members: p.reg.roomSize(room), Notify: true})
	return nil
}

func (p *localPresence) Leave(_ context.Context, room, user string) error {
	p.changed(PresenceChange{Kind: RoomLeave, User: user, Room: room, Members: p.reg.roomSize(room), Notify: true})
	return nil
}

func (p *localPresence) Connect(_ context.Context, user string) error {
	p.changed(PresenceChange{Kind: UserOnline, User: user, Notify: true})
	return nil
}

func (p *localPresence) Disconnect(_ context.Context, user string) error {
	p.changed(PresenceChange{Kind: UserOffline, User: user, Notify: true})
	return nil
}

func (p *localPresence) RoomUsers(_ context.Context, room string) ([]string, error) {
	return p.reg.roomUsers(room), nil
}

func (p *localPresence) RoomSize(_ context.Context, room string) (int, error) {
	return p.reg.roomSize(room), nil
}

func (p *localPresence) OnlineUsers(context.Context) ([]string, error) {
	return p.reg.onlineUsers(), nil
}

func (p *localPresence) Close() error { return nil }

// Presence transitions reported to Options.OnPresence.
const (
	UserOnline  = "user.online"  // the user's first connection
	UserOffline = "user.offline" // the user's last connection is gone
	RoomJoin    = "room.join"    // the user's first connection entered the room
	RoomLeave   = "room.leave"   // the user's last connection left the room
)

// PresenceEvent is one cluster-wide transition of a user.
type PresenceEvent struct {
	Kind string
	User string
	Room string // for room.join and room.leave
	Time time.Time
}

// presenceChange announces a transition to this node's members of the
// room and reports it to OnPresence when asked to. Rooms past the batch
// size get their changes in the next presence_diff instead of a frame each.
func (h *Hub) presenceChange(ch PresenceChange) {
	if ch.Notify {
		h.notifier.add(PresenceEvent{Kind: ch.Kind, User: ch.User, Room: ch.Room, Time: time.Now()})
	}
	var frame []byte
	switch ch.Kind {
	case RoomJoin:
		frame = protocol.Join(ch.Room, ch.User)
	case RoomLeave:
		frame = protocol.Leave(ch.Room, ch.User)
	default:
		return
	}
	// A room crossing the threshold is judged by its size before a join
	// and after a leave, so that both sides of the crossing are batched.
	members := ch.Members
	if ch.Kind == RoomJoin {
		members--
	}
	if members >= h.opts.PresenceBatchSize {
		h.diffs.add(ch.Room, ch.User, ch.Kind == RoomJoin)
		return
	}
	if h.diffs.addIfPending(ch.Room, ch.User, ch.Kind == RoomJoin) {
		return
	}
	h.diffs.invalidate(ch.Room)
	h.announceLocal(ch.Room, ch.User, frame)
}

// presenceNotifier runs OnPresence on a goroutine of its own, in the order
// of the transitions: a Presence reports them under its lock, and user code
// must be free to call back into the hub (OnlineUsers, Disconnect).
type presenceNotifier struct {
	cb      func(PresenceEvent)
	log     *slog.Logger
	panics  *atomic.Uint64
	mu      sync.Mutex
	queue   []PresenceEvent
	wake    chan struct{}
	done    chan struct{}
	stopped bool
}

func (n *presenceNotifier) start(cb func(PresenceEvent), log *slog.Logger, c *counters) {
	if cb == nil {
		return
	}
	n.cb, n.log, n.panics = cb, log, &c.panics
	n.wake, n.done = make(chan struct{}, 1), make(chan struct{})
	go n.run()
}

func (n *presenceNotifier) add(ev PresenceEvent) {
	if n.cb == nil {
		return
	}
	n.mu.Lock()
	n.queue = append(n.queue, ev)
	n.mu.Unlock()
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

// stop delivers what is queued, then ends the goroutine.
func (n *presenceNotifier) stop() {
	if n.cb == nil {
		return
	}
	n.mu.Lock()
	already := n.stopped
	n.stopped = true
	n.mu.Unlock()
	if !already {
		n.wake <- struct{}{}
	}
	<-n.done
}

func (n *presenceNotifier) run() {
	defer close(n.done)
	for range n.wake {
		for {
			n.mu.Lock()
			batch, stopped := n.queue, n.stopped
			n.queue = nil
			n.mu.Unlock()
			for _, ev := range batch {
				n.call(ev)
			}
			if len(batch) == 0 {
				if stopped {
					return
				}
				break
			}
		}
	}
}

func (n *presenceNotifier) call(ev PresenceEvent) {
	defer func() {
		if p := recover(); p != nil {
			n.panics.Add(1)
			n.log.Error("OnPresence panicked", "panic", fmt.Sprint(p), "kind", ev.Kind)
		}
	}()
	n.cb(ev)
}
