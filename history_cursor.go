package switchboard

import (
	"slices"
	"time"

	"github.com/switchboardhq/switchboard/internal/wsframe"
)

// cursor follows one history stream for one connection that joined it: the
// next offset it should get. Live messages come through the broker at most
// once and, across nodes, not always in offset order; the cursor drops
// what the connection already has and fills a gap from history before
// letting later messages through, so the connection sees every kept
// message once, in order.
type cursor struct {
	stream string
	epoch  string
	next   uint64
	// waiting is set while a join or a gap fill reads history: live
	// messages are held meanwhile and released in order afterwards.
	waiting bool
	held    []heldMessage
	// ownID is the connection's id when it joined with echo off: its own
	// messages advance the cursor without being delivered, also when a
	// gap fill reads them back from history.
	ownID string
}

type heldMessage struct {
	offset uint64
	epoch  string
	frame  []byte // nil: the connection's own message with echo off, not delivered
}

func (c *Conn) cursorLocked(stream string) *cursor {
	for _, cur := range c.cursors {
		if cur.stream == stream {
			return cur
		}
	}
	return nil
}

// dmHoldFor bounds how long a new connection's direct messages wait for
// its first request when users' messages are kept.
const dmHoldFor = time.Second

// releaseDirect lets a new connection's held direct messages go, in order,
// unless a join of its private room took them over first.
func (c *Conn) releaseDirect() {
	if c.dmHoldUntil.Swap(0) == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if cur := c.cursorLocked(userStreamPfx + c.user); cur != nil && cur.waiting {
		c.releaseLocked(cur, fillNone)
	}
}

// holdStream starts following stream (or pauses an existing cursor) while
// a join reads its history.
func (c *Conn) holdStream(stream string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cur := c.cursorLocked(stream)
	if cur == nil {
		cur = &cursor{stream: stream}
		c.cursors = append(c.cursors, cur)
	}
	cur.waiting = true
}

// followedUpTo returns the next offset the connection's cursor on stream
// expects in epoch: the messages below it were delivered. 0 when it has
// not followed the stream in that epoch.
func (c *Conn) followedUpTo(stream, epoch string) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cur := c.cursorLocked(stream); cur != nil && cur.epoch == epoch {
		return cur.next
	}
	return 0
}

// dropStream stops following stream (the connection left the room).
func (c *Conn) dropStream(stream string) {
	c.mu.Lock()
	c.cursors = slices.DeleteFunc(c.cursors, func(cur *cursor) bool {
		if cur.stream != stream {
			return false
		}
		for _, m := range cur.held {
			c.pending.Add(-int64(len(m.frame)))
		}
		return true
	})
	c.mu.Unlock()
}

// deliverKept hands one live history message to the connection.
func (c *Conn) deliverKept(stream, epoch string, offset uint64, frame []byte) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	cur := c.cursorLocked(stream)
	switch {
	case cur == nil:
		// Not joined for recovery (another device's direct message).
		return c.pushLocked(frame)
	case cur.waiting:
		return c.holdLocked(cur, heldMessage{offset: offset, epoch: epoch, frame: frame})
	}
	return c.advanceLocked(cur, heldMessage{offset: offset, epoch: epoch, frame: frame}, true)
}

// advanceLocked delivers one message in stream order: one the connection
// has is dropped, the next one is queued, and one past a gap is held while
// the gap is filled from history (or, with fill false, the gap is given up
// as lost). Called with c.mu held.
func (c *Conn) advanceLocked(cur *cursor, m heldMessage, fill bool) bool {
	switch {
	case m.epoch != cur.epoch:
		// Continuity was lost (the stream started again): go on from here.
		cur.epoch, cur.next = m.epoch, m.offset+1
		return c.pushFrameLocked(m.frame)
	case m.offset < cur.next:
		return false // had it already (recovered in the join ack, or filled)
	case m.offset == cur.next || !fill:
		if m.offset > cur.next {
			c.hub.counters.drop("history_gap")
		}
		cur.next = m.offset + 1
		return c.pushFrameLocked(m.frame)
	}
	cur.waiting = true
	if !c.holdLocked(cur, m) {
		return false
	}
	go c.hub.fillGap(c, cur)
	return true
}

// pushFrameLocked queues frame unless it is a skipped own message.
func (c *Conn) pushFrameLocked(frame []byte) bool {
	return frame != nil && c.pushLocked(frame)
}

// skipKept advances the connection's cursor past one of its own messages
// that it does not want (echo off), so the next one is no gap.
func (c *Conn) skipKept(stream, epoch string, offset uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cur := c.cursorLocked(stream)
	switch {
	case cur == nil:
	case cur.waiting:
		c.holdLocked(cur, heldMessage{offset: offset, epoch: epoch})
	default:
		c.advanceLocked(cur, heldMessage{offset: offset, epoch: epoch}, true)
	}
}

// holdLocked keeps m until the wait ends. Held bytes count against the
// connection's queue bound like queued ones: a connection that cannot take
// what is published while its history is read is a slow consumer.
func (c *Conn) holdLocked(cur *cursor, m heldMessage) bool {
	if !c.reserve(len(m.frame)) {
		return false
	}
	cur.held = append(cur.held, m)
	return true
}

// Thresholds for releaseLocked.
const (
	fillAll  uint64 = 0              // every gap is filled from history
	fillNone uint64 = ^uint64(0) - 1 // every gap is given up
)

// releaseLocked ends a wait: the held messages go through in offset order.
// A gap before a message up to readTo+1 is given up (history was read that
// far and lacked it); a gap past it is filled, since with several
// publishing nodes a message can arrive after later ones.
func (c *Conn) releaseLocked(cur *cursor, readTo uint64) {
	held := cur.held
	cur.held, cur.waiting = nil, false
	for _, m := range held {
		c.pending.Add(-int64(len(m.frame))) // reserved again as each is queued
	}
	// Offset order within each run of one epoch; runs keep their arrival
	// order (a change of epoch starts the stream again).
	for start := 0; start < len(held); {
		end := start + 1
		for end < len(held) && held[end].epoch == held[start].epoch {
			end++
		}
		slices.SortStableFunc(held[start:end], func(a, b heldMessage) int {
			switch {
			case a.offset < b.offset:
				return -1
			case a.offset > b.offset:
				return 1
			}
			return 0
		})
		start = end
	}
	for i, m := range held {
		c.advanceLocked(cur, m, m.offset > readTo+1)
		if cur.waiting {
			// A gap: the rest waits for the fill, behind this message.
			for _, rest := range held[i+1:] {
				if !c.holdLocked(cur, rest) {
					return
				}
			}
			return
		}
	}
}

// fillGap reads the messages a connection missed between its cursor and
// the message that revealed the gap, queues them, then releases what was
// held. A gap history no longer covers is given up (counted as a
// history_gap drop): the client sees the jump in offsets.
func (h *Hub) fillGap(c *Conn, cur *cursor) {
	c.mu.Lock()
	from, epoch := cur.next, cur.epoch
	c.mu.Unlock()
	page, err := h.readHistoryShared(cur.stream, from-1, h.opts.History.Size*2)
	if err != nil {
		h.log.Warn("history fill failed", "error", err, "conn_id", c.id)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cursorLocked(cur.stream) != cur {
		return // left the room meanwhile
	}
	readTo := fillNone
	if err == nil && page.Epoch == epoch {
		readTo = page.Offset
		for _, p := range page.Payloads {
			env, eerr := unmarshalEnvelope(p)
			if eerr != nil {
				continue
			}
			body, offset, _, serr := splitHistory(env.frame)
			if serr != nil || offset != cur.next {
				continue
			}
			cur.next++
			if cur.ownID == "" || env.origin != cur.ownID {
				c.pushLocked(wsframe.AppendFrame(make([]byte, 0, wsframe.FrameSize(len(body))), wsframe.OpText, body))
			}
		}
	}
	c.releaseLocked(cur, readTo)
}
