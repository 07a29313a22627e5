package switchboard

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/switchboardhq/switchboard/history"
	"github.com/switchboardhq/switchboard/internal/protocol"
)

// chooseHistory picks the store for the streams that keep history: the
// one given, the broker itself (Redis, NATS), or memory on a single node.
func (h *Hub) chooseHistory() error {
	o := h.opts.History
	if !o.enabled() {
		return nil
	}
	switch store, ok := h.broker.(History); {
	case o.Store != nil:
		h.history = o.Store
	case ok:
		h.history = store
	default:
		if _, single := h.broker.(*MemoryBroker); !single {
			return errors.New("history: the broker keeps no history and memory serves one node only; set HistoryOptions.Store")
		}
		h.history = history.NewMemory(o.Size, o.MaxBytes, o.TTL, h.broker.Publish)
	}
	if b, ok := h.history.(HistoryBounded); ok {
		b.BoundHistory(o.Size, o.TTL)
	}
	// Bytes held for a connection while history is read count against its
	// stall timeout, so a read must end well before Limits.WriteTimeout.
	h.reads = history.NewSharedReader(h.history, max(h.opts.Limits.WriteTimeout/2, 100*time.Millisecond))
	return nil
}

// deliverKept fans out a kept message; each joined connection's cursor
// puts it in order.
func (h *Hub) deliverKept(env *envelope) {
	body, offset, epoch, err := history.Split(env.frame)
	if err != nil {
		h.log.Warn("broker payload dropped", "error", err, "bytes", len(env.frame))
		return
	}
	text := newSharedText(body)
	var n uint64
	if room, ok := strings.CutPrefix(env.target, roomStreamPfx); ok {
		h.reg.eachMember(room, func(c *Conn, echo bool) {
			if c.id == env.origin && !echo {
				c.skipKept(env.target, epoch, offset)
			} else if c.deliverKept(env.target, epoch, offset, text.frameFor(c)) {
				n++
			}
		})
	} else if user, ok := strings.CutPrefix(env.target, userStreamPfx); ok {
		for _, c := range h.reg.userConns(user) {
			if c.deliverKept(env.target, epoch, offset, text.frameFor(c)) {
				n++
			}
		}
	}
	h.counters.deliveries.Add(n)
}

// recoveryBytes bounds the messages one join ack may carry: a gap bigger
// than half a connection's queue is answered recovered:false instead.
func (h *Hub) recoveryBytes() int { return h.opts.Limits.QueueBytes / 2 }

// keptJoin completes the join of a room with history: the ack gives the
// stream's offset and epoch and, with since, the missed messages, and the
// live messages held meanwhile follow it without a gap or a duplicate.
// The connection's cursor was made waiting before it became a member, so
// nothing published since the history was read can slip past.
func (h *Hub) keptJoin(c *Conn, req *protocol.Request, stream string, ack *protocol.Ack, users []byte) {
	since, limit := uint64(0), 0 // a plain join reads the stream's state only
	if req.Since != nil {
		since, limit = *req.Since, h.opts.History.Size*2+16 // Redis trims approximately
	}
	page, err := h.reads.Read(h.ctx, stream, since, limit)
	if err != nil {
		// The ack then names no position: a client must not resume from
		// one that was never read.
		h.log.Error("history read failed", "error", err, "room", req.Room)
	} else {
		ack.HasOffset, ack.Offset, ack.Epoch = true, page.Offset, page.Epoch
	}
	recovered := false
	if req.Since != nil {
		recovered = err == nil && history.Recoverable(page, since, req.Epoch)
		// Messages this connection was already given live (it followed the
		// stream before: a member joining again, or direct messages let go
		// before the join) are left out of the ack.
		c.mu.Lock()
		had := c.cursors.FollowedUpTo(stream, page.Epoch)
		c.mu.Unlock()
		var msgs [][]byte
		size, count := 0, 0
		for _, p := range page.Payloads {
			body, offset, _, serr := keptBody(p)
			if serr != nil {
				recovered = false
				break
			}
			count++
			if offset < had {
				continue
			}
			size += len(body)
			msgs = append(msgs, body)
		}
		if recovered && (uint64(count) != page.Offset-since || size > h.recoveryBytes()) {
			recovered = false
		}
		if !recovered {
			msgs = [][]byte{}
		}
		ack.Recovered, ack.Messages = &recovered, msgs
	}
	var parts [][]byte
	if users != nil {
		head, tail := protocol.AckAround(ack)
		parts = c.textParts(req.Room, head, users, tail)
	} else {
		parts = [][]byte{c.textFrame(protocol.AppendAck(nil, ack))}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	cur := c.cursors.Find(stream)
	if req.ID != "" {
		c.pushPartsLocked(parts...)
	} else if recovered {
		// No ack to carry them: the recovered messages go as frames.
		for _, m := range ack.Messages {
			c.pushLocked(c.textFrame(m))
		}
	}
	if cur == nil {
		return // left meanwhile
	}
	ownID := ""
	if req.Echo != nil && !*req.Echo {
		ownID = c.id
	}
	var read *history.Page
	if err == nil {
		read = &page
	}
	cur.Joined(c.sink(), read, recovered, ownID)
}

// catchUpInterval is how often the sweeper checks followed streams for
// connections left behind (history.CatchUpEvery, or a quarter of the
// history TTL when that is shorter, to keep followed epochs alive).
func (h *Hub) catchUpInterval() time.Duration { return min(history.CatchUpEvery, h.opts.History.TTL/4) }

// catchUp reads each followed stream's newest offset and fills the
// connections that are behind it.
func (h *Hub) catchUp(followers map[string][]history.Follower) {
	defer h.wg.Done()
	history.CatchUp(h.ctx, h.reads, followers, h.log)
}

// fillGap reads the messages a connection missed between its cursor and
// the message that revealed the gap, queues them, then releases what was
// held. A gap history no longer covers is given up (counted as a
// history_gap drop): the client sees the jump in offsets.
func (h *Hub) fillGap(c *Conn, cur *history.Cursor) {
	c.mu.Lock()
	from, epoch := cur.FillFrom()
	c.mu.Unlock()
	stream := cur.Stream()
	page, err := h.reads.Shared(h.ctx, stream, from-1, h.opts.History.Size*2)
	if err != nil {
		h.log.Warn("history fill failed", "error", err, "conn_id", c.id)
	}
	readTo := history.FillNone
	var entries []history.Entry
	if err == nil && page.Epoch == epoch {
		readTo = page.Offset
		entries = make([]history.Entry, 0, len(page.Payloads))
		for _, p := range page.Payloads {
			env, eerr := unmarshalEnvelope(p)
			if eerr != nil {
				continue
			}
			body, offset, _, serr := history.Split(env.frame)
			if serr != nil {
				continue
			}
			entries = append(entries, history.Entry{Offset: offset, Origin: env.origin, Text: body})
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cursors.Find(stream) != cur {
		return // left the room meanwhile
	}
	cur.Fill(c.sink(), entries, readTo)
}

// RoomHistory is what a room's history holds.
type RoomHistory struct {
	Messages []json.RawMessage // message frames, oldest first
	Offset   uint64            // the newest offset
	Epoch    string
	// Complete says the messages are all those after since (history did
	// not lose any of them, and limit did not cut them).
	Complete bool
}

// History returns up to limit kept messages of room after offset since.
// For a user's private room user:<id> with HistoryOptions.Users, they are
// the user's direct messages, as a join of that room recovers them.
func (h *Hub) History(ctx context.Context, room string, since uint64, limit int) (RoomHistory, error) {
	stream := h.joinStream(room)
	if stream == "" {
		return RoomHistory{}, fmt.Errorf("room %q keeps no history", room)
	}
	page, err := h.history.Read(ctx, stream, since, limit)
	if err != nil {
		return RoomHistory{}, fmt.Errorf("history of %s: %w", room, err)
	}
	out := RoomHistory{Offset: page.Offset, Epoch: page.Epoch, Messages: []json.RawMessage{}}
	for _, p := range page.Payloads {
		body, _, _, err := keptBody(p)
		if err != nil {
			return RoomHistory{}, fmt.Errorf("history of %s: %w", room, err)
		}
		out.Messages = append(out.Messages, body)
	}
	out.Complete = history.Recoverable(page, since, page.Epoch) && uint64(len(out.Messages)) == page.Offset-min(since, page.Offset)
	return out, nil
}

// KeepsHistory says whether room's messages are kept (for user:<id>, the
// user's direct messages with HistoryOptions.Users).
func (h *Hub) KeepsHistory(room string) bool { return h.joinStream(room) != "" }
