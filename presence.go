package switchboard

import (
	"context"
	"time"

	"github.com/switchboardhq/switchboard/internal/protocol"
	"github.com/switchboardhq/switchboard/presence"
)

// Presence keeps who is online and who is in which room, for the whole
// cluster. The hub reports its own node's transitions (a user's first local
// connection into a room and its last one out; likewise for being online at
// all) and announces to its local connections the cluster-wide transitions
// the Presence reports back through the function given to Start: a user in
// a room on no node before, or on no node any more.
//
// The default is this node's registry when the Broker is the in-memory one,
// and a replica kept in step over the Broker otherwise (presence.Cluster,
// see Options.PresenceTTL).
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

// PresenceChange is one cluster-wide transition of a user, as a Presence
// reports it (see presence.Change).
type PresenceChange = presence.Change

// PresenceEvent is one cluster-wide transition as Options.OnPresence is
// told of it.
type PresenceEvent = presence.Event

// NodeInfo describes one node of the cluster as this node knows it.
type NodeInfo = presence.NodeInfo

// Presence transitions reported to Options.OnPresence.
const (
	UserOnline  = presence.UserOnline  // the user's first connection
	UserOffline = presence.UserOffline // the user's last connection is gone
	RoomJoin    = presence.RoomJoin    // the user's first connection entered the room
	RoomLeave   = presence.RoomLeave   // the user's last connection left the room
)

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

// presenceChange announces a transition to this node's members of the
// room and reports it to OnPresence when asked to. Rooms past the batch
// size get their changes in the next presence_diff instead of a frame each.
func (h *Hub) presenceChange(ch PresenceChange) {
	if ch.Notify {
		h.notifier.Add(PresenceEvent{Kind: ch.Kind, User: ch.User, Room: ch.Room, Time: time.Now()})
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
		h.diffs.Add(ch.Room, ch.User, ch.Kind == RoomJoin)
		return
	}
	if h.diffs.AddIfPending(ch.Room, ch.User, ch.Kind == RoomJoin) {
		return
	}
	h.diffs.Invalidate(ch.Room)
	h.announceLocal(ch.Room, ch.User, frame)
}

// flushPresenceDiffs announces each big room's changes as one frame.
func (h *Hub) flushPresenceDiffs() {
	for room, rd := range h.diffs.Take() {
		joins, leaves := rd.Sorted()
		if len(joins) == 0 && len(leaves) == 0 {
			continue
		}
		h.announceLocal(room, "", protocol.PresenceDiff(room, joins, leaves))
	}
}

// Nodes lists the live nodes of the cluster, this one first. Counts of
// other nodes come from their last heartbeat (every PresenceTTL/3).
func (h *Hub) Nodes() []NodeInfo {
	st := h.Stats()
	self := NodeInfo{ID: h.opts.NodeID, Connections: st.Connections, Users: st.Users, Rooms: st.Rooms, LastSeen: time.Now()}
	if h.cluster == nil {
		return []NodeInfo{self}
	}
	return append([]NodeInfo{self}, h.cluster.Peers()...)
}

// ClusterStats returns the cluster's distinct users and rooms, its
// connections summed over the nodes, and the nodes themselves.
func (h *Hub) ClusterStats() (Stats, []NodeInfo) {
	nodes := h.Nodes()
	if h.cluster == nil {
		return h.Stats(), nodes
	}
	var st Stats
	for _, n := range nodes {
		st.Connections += n.Connections
	}
	st.Users, st.Rooms = h.cluster.Totals()
	return st, nodes
}

// newClusterPresence is the default Presence of a multi-node broker: a
// replica of every node's share, kept in step over the presence channel.
func (h *Hub) newClusterPresence() *presence.Cluster {
	return presence.NewCluster(presence.Config{
		Node:   h.opts.NodeID,
		TTL:    h.opts.PresenceTTL,
		Logger: h.log,
		Send: func(ctx context.Context, msg []byte) error {
			env := envelope{kind: kindPresence, frame: msg}
			return h.broker.Publish(ctx, channelPresence, env.marshal())
		},
		// Not on the replica's goroutine: closing takes the hub's locks.
		Evict: func(user string, openedBy time.Time) { go h.evictRequested(user, openedBy) },
		Counts: func() presence.Counts {
			st := h.Stats()
			return presence.Counts{Connections: st.Connections, Users: st.Users, Rooms: st.Rooms}
		},
	})
}
