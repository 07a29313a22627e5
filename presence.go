package switchboard

import (
	"context"
	"fmt"
	"time"
)

// Presence answers who is online and who is in a room, across the cluster.
// The hub reports per-user transitions on this node: Join when a user's
// first local connection enters a room, Leave when its last one leaves,
// Connect and Disconnect likewise for being online at all.
type Presence interface {
	Join(ctx context.Context, room, user string) error
	Leave(ctx context.Context, room, user string) error
	Connect(ctx context.Context, user string) error
	Disconnect(ctx context.Context, user string) error
	// RoomUsers returns the sorted users in room.
	RoomUsers(ctx context.Context, room string) ([]string, error)
	// OnlineUsers returns the sorted users with at least one connection.
	OnlineUsers(ctx context.Context) ([]string, error)
}

// localPresence is the single-node default: the hub's registry already
// knows everything, so it answers from there and stores nothing twice.
type localPresence struct{ reg *registry }

func (p localPresence) Join(context.Context, string, string) error  { return nil }
func (p localPresence) Leave(context.Context, string, string) error { return nil }
func (p localPresence) Connect(context.Context, string) error       { return nil }
func (p localPresence) Disconnect(context.Context, string) error    { return nil }

func (p localPresence) RoomUsers(_ context.Context, room string) ([]string, error) {
	return p.reg.roomUsers(room), nil
}

func (p localPresence) OnlineUsers(context.Context) ([]string, error) {
	return p.reg.onlineUsers(), nil
}

// Presence transitions reported to Options.OnPresence.
const (
	UserOnline  = "user.online"  // the user's first connection
	UserOffline = "user.offline" // the user's last connection is gone
	RoomJoin    = "room.join"    // the user's first connection entered the room
	RoomLeave   = "room.leave"   // the user's last connection left the room
)

// PresenceEvent is one transition of a user, as this node sees it.
type PresenceEvent struct {
	Kind string
	User string
	Room string // for room.join and room.leave
	Time time.Time
}

func (h *Hub) presenceChanged(kind, user, room string) {
	cb := h.opts.OnPresence
	if cb == nil {
		return
	}
	defer func() {
		if p := recover(); p != nil {
			h.counters.panics.Add(1)
			h.log.Error("OnPresence panicked", "panic", fmt.Sprint(p), "kind", kind)
		}
	}()
	cb(PresenceEvent{Kind: kind, User: user, Room: room, Time: time.Now()})
}
