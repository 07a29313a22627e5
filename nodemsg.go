package switchboard

import (
	"context"
	"fmt"
	"sort"
)

// kindNodeMessage carries application data from one node to every node,
// on channelAll (which every node hears): target is the sender's NodeID,
// frame the payload. A node that does not know the kind ignores it.
const kindNodeMessage byte = 'n'

// MaxNodeMessageBytes bounds one SendToNodes payload: node messages are
// for small periodic summaries, not for bulk data.
const MaxNodeMessageBytes = 64 << 10

// SendToNodes hands payload to every node of the cluster, this one
// included, whose Options.OnNodeMessage receives it with this node's
// NodeID. The hub does not look inside payload. Delivery is at most once,
// like every broker message; with the in-memory broker only this node
// hears it.
func (h *Hub) SendToNodes(ctx context.Context, payload []byte) error {
	if h.ctx.Err() != nil {
		return ErrClosed
	}
	if len(payload) > MaxNodeMessageBytes {
		return fmt.Errorf("send to nodes: %d bytes is over %d", len(payload), MaxNodeMessageBytes)
	}
	env := envelope{kind: kindNodeMessage, target: h.opts.NodeID, frame: payload}
	if err := h.broker.Publish(ctx, channelAll, env.marshal()); err != nil {
		return fmt.Errorf("send to nodes: %w", err)
	}
	return nil
}

// deliverNodeMessage runs on the broker's delivery goroutine.
func (h *Hub) deliverNodeMessage(env *envelope) {
	if h.opts.OnNodeMessage == nil {
		return
	}
	defer func() {
		if r := recover(); r != nil {
			h.counters.panics.Add(1)
			h.log.Error("OnNodeMessage panicked", "panic", fmt.Sprint(r), "node", env.target)
		}
	}()
	h.opts.OnNodeMessage(env.target, env.frame)
}

// RoomCount is a room and how many users are in it.
type RoomCount struct {
	Room  string `json:"room"`
	Users int    `json:"users"`
}

// TopRooms returns up to n of this node's rooms with the most users on
// this node, most first (ties by name). It walks every room, so it is for
// dashboards asking now and then, not for a hot path.
func (h *Hub) TopRooms(n int) []RoomCount {
	if n <= 0 {
		return nil
	}
	var top []RoomCount // sorted, at most n long
	less := func(a, b RoomCount) bool { return a.Users > b.Users || a.Users == b.Users && a.Room < b.Room }
	for i := range h.reg.rooms {
		s := &h.reg.rooms[i]
		s.mu.RLock()
		for name, rm := range s.rooms {
			rc := RoomCount{Room: name, Users: len(rm.users)}
			if len(top) == n && !less(rc, top[n-1]) {
				continue
			}
			at := sort.Search(len(top), func(j int) bool { return less(rc, top[j]) })
			if len(top) < n {
				top = append(top, RoomCount{})
			}
			copy(top[at+1:], top[at:])
			top[at] = rc
		}
		s.mu.RUnlock()
	}
	return top
}

// RoomSize returns how many users are in room, across the cluster when
// Presence is cluster-wide.
func (h *Hub) RoomSize(ctx context.Context, room string) (int, error) {
	n, err := h.presence.RoomSize(ctx, room)
	if err != nil {
		return 0, fmt.Errorf("room size: %w", err)
	}
	return n, nil
}
