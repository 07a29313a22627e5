package history

import "slices"

// Sink is the connection a cursor delivers to: its outbound queue and its
// queue bound. Every method is called with the lock that guards the
// connection's cursors held, and must not block.
type Sink interface {
	// Push queues one wire frame (possibly shared with other recipients);
	// false when it was dropped (the connection is closing, or over its
	// queue bound).
	Push(frame []byte) bool
	// PushText frames one JSON text for this connection alone and queues it.
	PushText(text []byte) bool
	// Reserve counts n held bytes against the queue bound, as if queued;
	// false when they do not fit (the connection is then closed as a slow
	// consumer) or the connection is closing.
	Reserve(n int) bool
	// Unreserve gives back n bytes reserved earlier.
	Unreserve(n int)
	// GapLost records a gap given up: offsets the connection will never
	// get, because the store no longer has them.
	GapLost()
	// Fill starts a gap fill of cur on another goroutine: read from the
	// store what cur misses (FillFrom), then, under the lock again, hand
	// it to cur.Fill.
	Fill(cur *Cursor)
}

// Cursor follows one stream for one connection that joined it: the next
// offset it should get. Live messages come through the broker at most
// once and, across nodes, not always in offset order; the cursor drops
// what the connection already has and fills a gap from history before
// letting later messages through, so the connection sees every kept
// message once, in order.
//
// A Cursor is not safe for concurrent use: its owner's lock guards it.
type Cursor struct {
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

// Stream is the stream the cursor follows.
func (cur *Cursor) Stream() string { return cur.stream }

// Waiting says whether live messages are held for a read of history.
func (cur *Cursor) Waiting() bool { return cur.waiting }

// FillFrom is where a gap fill reads from: the next offset the cursor
// expects, in its epoch.
func (cur *Cursor) FillFrom() (next uint64, epoch string) { return cur.next, cur.epoch }

// Cursors are a connection's cursors, one per stream it follows; nil for
// most connections.
type Cursors []*Cursor

// Find returns the cursor on stream, or nil.
func (cs Cursors) Find(stream string) *Cursor {
	for _, cur := range cs {
		if cur.stream == stream {
			return cur
		}
	}
	return nil
}

// Hold starts following stream, or pauses the existing cursor, holding
// live messages until Joined or Release.
func (cs *Cursors) Hold(stream string) *Cursor {
	cur := cs.Find(stream)
	if cur == nil {
		cur = &Cursor{stream: stream}
		*cs = append(*cs, cur)
	}
	cur.waiting = true
	return cur
}

// Drop stops following stream (the connection left), giving back what
// its held messages reserved.
func (cs *Cursors) Drop(s Sink, stream string) {
	*cs = slices.DeleteFunc(*cs, func(cur *Cursor) bool {
		if cur.stream != stream {
			return false
		}
		for _, m := range cur.held {
			s.Unreserve(len(m.frame))
		}
		return true
	})
}

// FollowedUpTo returns the next offset the cursor on stream expects in
// epoch: the messages below it were delivered. 0 when the connection has
// not followed the stream in that epoch.
func (cs Cursors) FollowedUpTo(stream, epoch string) uint64 {
	if cur := cs.Find(stream); cur != nil && cur.epoch == epoch {
		return cur.next
	}
	return 0
}

// Deliver hands one live kept message to the connection: in stream order
// through its cursor, or straight to the queue when it follows no cursor
// on the stream (another device's direct message). It reports whether the
// message was queued or held.
func (cs Cursors) Deliver(s Sink, stream, epoch string, offset uint64, frame []byte) bool {
	cur := cs.Find(stream)
	m := heldMessage{offset: offset, epoch: epoch, frame: frame}
	switch {
	case cur == nil:
		return s.Push(frame)
	case cur.waiting:
		return cur.hold(s, m)
	}
	return cur.advance(s, m, true)
}

// Skip advances the cursor on stream past one of the connection's own
// messages that it does not want (echo off), so the next one is no gap.
func (cs Cursors) Skip(s Sink, stream, epoch string, offset uint64) {
	cur := cs.Find(stream)
	m := heldMessage{offset: offset, epoch: epoch}
	switch {
	case cur == nil:
	case cur.waiting:
		cur.hold(s, m)
	default:
		cur.advance(s, m, true)
	}
}

// Each calls fn for every cursor not waiting on a read.
func (cs Cursors) Each(fn func(*Cursor)) {
	for _, cur := range cs {
		if !cur.waiting {
			fn(cur)
		}
	}
}

// advance delivers one message in stream order: one the connection has is
// dropped, the next one is queued, and one past a gap is held while the
// gap is filled from history (or, with fill false, the gap is given up as
// lost).
func (cur *Cursor) advance(s Sink, m heldMessage, fill bool) bool {
	switch {
	case m.epoch != cur.epoch:
		// Continuity was lost (the stream started again): go on from here.
		cur.epoch, cur.next = m.epoch, m.offset+1
		return push(s, m.frame)
	case m.offset < cur.next:
		return false // had it already (recovered in the join ack, or filled)
	case m.offset == cur.next || !fill:
		if m.offset > cur.next {
			s.GapLost()
		}
		cur.next = m.offset + 1
		return push(s, m.frame)
	}
	cur.waiting = true
	if !cur.hold(s, m) {
		return false
	}
	s.Fill(cur)
	return true
}

// push queues frame unless it is a skipped own message.
func push(s Sink, frame []byte) bool { return frame != nil && s.Push(frame) }

// hold keeps m until the wait ends. Held bytes count against the
// connection's queue bound like queued ones: a connection that cannot take
// what is published while its history is read is a slow consumer.
func (cur *Cursor) hold(s Sink, m heldMessage) bool {
	if !s.Reserve(len(m.frame)) {
		return false
	}
	cur.held = append(cur.held, m)
	return true
}

// Thresholds for Release.
const (
	FillAll  uint64 = 0              // every gap is filled from history
	FillNone uint64 = ^uint64(0) - 1 // every gap is given up
)

// Release ends a wait: the held messages go through in offset order. A
// gap before a message up to readTo+1 is given up (history was read that
// far and lacked it); a gap past it is filled, since with several
// publishing nodes a message can arrive after later ones.
func (cur *Cursor) Release(s Sink, readTo uint64) {
	held := cur.held
	cur.held, cur.waiting = nil, false
	for _, m := range held {
		s.Unreserve(len(m.frame)) // reserved again as each is queued
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
		cur.advance(s, m, m.offset > readTo+1)
		if cur.waiting {
			// A gap: the rest waits for the fill, behind this message.
			for _, rest := range held[i+1:] {
				if !cur.hold(s, rest) {
					return
				}
			}
			return
		}
	}
}

// Entry is one kept message read back for a gap fill.
type Entry struct {
	Offset uint64
	Origin string // the publishing connection's id, for echo off
	Text   []byte // the message's JSON text
}

// Fill completes a gap fill: entries are what the store had from the
// cursor's FillFrom on, in offset order, and readTo the newest offset the
// read saw (FillNone when the read failed or found another epoch). The
// missing messages are queued, then what was held is released.
func (cur *Cursor) Fill(s Sink, entries []Entry, readTo uint64) {
	for _, e := range entries {
		if e.Offset != cur.next {
			continue
		}
		cur.next++
		if cur.ownID == "" || e.Origin != cur.ownID {
			s.PushText(e.Text)
		}
	}
	cur.Release(s, readTo)
}

// Joined completes the join of the stream: page is what the join read
// (nil when the read failed), recovered says the join's answer carried
// every message after the client's position, and ownID is the
// connection's id when it joined with echo off. The held live messages
// then follow without a gap or a duplicate.
func (cur *Cursor) Joined(s Sink, page *Page, recovered bool, ownID string) {
	cur.ownID = ownID
	switch {
	case page == nil:
		// Nothing known: follow live messages from the next one on.
		cur.epoch, cur.next = "", 0
	case cur.epoch != page.Epoch || cur.next == 0:
		// A new follower, or one whose stream started again.
		cur.epoch, cur.next = page.Epoch, page.Offset+1
	case recovered && cur.next <= page.Offset:
		// A member joining again with since: the answer carried the rest.
		cur.next = page.Offset + 1
	}
	cur.Release(s, FillAll)
}

// CatchUp fills the cursor from the store when page, the stream's newest
// state, is ahead of it: a live message lost on the way would otherwise
// wait for the stream's next message to reveal the gap, for ever in a
// quiet room.
func (cur *Cursor) CatchUp(s Sink, page Page) {
	if !cur.waiting && cur.epoch == page.Epoch && cur.next != 0 && cur.next <= page.Offset {
		cur.waiting = true
		s.Fill(cur)
	}
}
