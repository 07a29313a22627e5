package switchboard

import (
	"time"

	"github.com/switchboardhq/switchboard/history"
)

// A connection's history cursors (history.Cursors) live under its mu,
// which is never held while reading the store: a join or a gap fill reads
// first, then takes mu to queue what it read and release what was held.

// connSink is a connection as its cursors see it: history.Sink, whose
// methods run with c.mu held, and history.Follower for the catch-up,
// which takes c.mu itself.
type connSink Conn

func (c *Conn) sink() *connSink { return (*connSink)(c) }

func (s *connSink) Push(frame []byte) bool { return (*Conn)(s).pushLocked(frame) }

func (s *connSink) PushText(text []byte) bool {
	return (*Conn)(s).pushLocked((*Conn)(s).textFrame(text))
}

func (s *connSink) Reserve(n int) bool { return (*Conn)(s).reserve(n) }
func (s *connSink) Unreserve(n int)    { s.pending.Add(-int64(n)) }
func (s *connSink) GapLost()           { s.hub.counters.drop("history_gap") }

// Fill runs the gap fill on a goroutine of its own: the caller holds c.mu,
// and the read must not.
func (s *connSink) Fill(cur *history.Cursor) { go s.hub.fillGap((*Conn)(s), cur) }

func (s *connSink) CatchUp(stream string, page history.Page) {
	c := (*Conn)(s)
	c.mu.Lock()
	if cur := c.cursors.Find(stream); cur != nil {
		cur.CatchUp(s, page)
	}
	c.mu.Unlock()
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
	if cur := c.cursors.Find(userStreamPfx + c.user); cur != nil && cur.Waiting() {
		cur.Release(c.sink(), history.FillNone)
	}
}

// holdStream starts following stream (or pauses an existing cursor) while
// a join reads its history.
func (c *Conn) holdStream(stream string) {
	c.mu.Lock()
	c.cursors.Hold(stream)
	c.mu.Unlock()
}

// dropStream stops following stream (the connection left the room).
func (c *Conn) dropStream(stream string) {
	c.mu.Lock()
	c.cursors.Drop(c.sink(), stream)
	c.mu.Unlock()
}

// deliverKept hands one live history message to the connection.
func (c *Conn) deliverKept(stream, epoch string, offset uint64, frame []byte) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cursors.Deliver(c.sink(), stream, epoch, offset, frame)
}

// skipKept advances the connection's cursor past one of its own messages
// that it does not want (echo off), so the next one is no gap.
func (c *Conn) skipKept(stream, epoch string, offset uint64) {
	c.mu.Lock()
	c.cursors.Skip(c.sink(), stream, epoch, offset)
	c.mu.Unlock()
}

// addFollowed lists, per stream, the connection under each stream it
// follows and is not waiting on. Called from the sweeper's walk.
func (c *Conn) addFollowed(followers map[string][]history.Follower) {
	c.mu.Lock()
	c.cursors.Each(func(cur *history.Cursor) {
		followers[cur.Stream()] = append(followers[cur.Stream()], c.sink())
	})
	c.mu.Unlock()
}
