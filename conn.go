package switchboard

import (
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/switchboardhq/switchboard/history"
	"github.com/switchboardhq/switchboard/internal/transport"
	"github.com/switchboardhq/switchboard/internal/wsframe"
)

// Connection states. A connection goes starting (registered while its
// handshake completes: frames queue, nothing is written, a close is only
// recorded) -> open -> closing (a close frame is queued, the registry no
// longer holds it) -> closed (the socket is shut).
const (
	stateStarting int32 = iota
	stateOpen
	stateClosing
	stateClosed
)

// Conn is one WebSocket connection. Its exported methods are safe to call
// from any goroutine; callbacks receive it to identify the connection.
type Conn struct {
	hub         *Hub
	id          string
	user        string
	ident       *Identity
	connectedAt time.Time
	userAgent   string
	remoteAddr  string
	t           transport.Transport

	state    atomic.Int32
	cleaned  atomic.Bool
	shutDone atomic.Bool
	lastSeen atomic.Int64 // unix nanoseconds of the last frame received
	// pending counts bytes accepted for this connection that the kernel has
	// not taken yet: the queue plus whatever the transport still buffers.
	pending atomic.Int64
	// stalledSince is when pending last became non-zero without progress;
	// zero while the connection keeps up.
	stalledSince atomic.Int64

	// dmHoldUntil is when held direct messages go out if the client has
	// not made its first request (unix nanoseconds; 0: not holding).
	dmHoldUntil atomic.Int64

	// evicting marks a connection already chosen for eviction, so that two
	// concurrent handshakes of one user never pick the same victim.
	evicting atomic.Bool

	// Owned by the sweeper goroutine only.
	lastPing int64
	// pingSent is when the last unanswered ping was queued (0: none), for
	// the round-trip measurement when the pong arrives.
	pingSent atomic.Int64

	// deflateBits is the server window size negotiated for
	// permessage-deflate, 0 without it; set before the connection is
	// reachable, then only read.
	deflateBits uint8

	// Owned by the goroutine that reads this connection.
	reader     wsframe.Reader
	limiter    *rate.Limiter
	violations int
	readFailed bool

	mu    sync.Mutex // guards the fields below; never held while taking a registry lock
	queue [][]byte
	// spare is the queue's previous backing array, kept so that steady
	// traffic appends without allocating (a broadcast must cost O(1)
	// allocations however many connections it reaches).
	spare    [][]byte
	flushing bool
	// shutAfterFlush closes the socket once the queue has drained (a close
	// frame answering the peer's close is the last thing written).
	shutAfterFlush bool
	// closeWhenOpen holds a close requested while starting; the accept
	// path carries it out once the connection is fully set up.
	closeWhenOpen *closeCause
	// rooms the connection is in. A slice, not a map: it holds a handful
	// of names (MaxRooms bounds it) and a one-entry map costs ~700 bytes
	// per idle connection where a slice costs 16.
	rooms []string
	// cursors follow the history streams the connection joined for
	// recovery (see conn_history.go); nil for most connections.
	cursors history.Cursors
}

// ID is the connection id, unique across the cluster.
func (c *Conn) ID() string { return c.id }

// User is the id of the user the connection belongs to.
func (c *Conn) User() string { return c.user }

// ConnectedAt is when the handshake completed.
func (c *Conn) ConnectedAt() time.Time { return c.connectedAt }

// LastSeen is when the last frame arrived from the peer.
func (c *Conn) LastSeen() time.Time { return time.Unix(0, c.lastSeen.Load()) }

// UserAgent is the User-Agent header of the handshake.
func (c *Conn) UserAgent() string { return c.userAgent }

// RemoteAddr is the peer's address.
func (c *Conn) RemoteAddr() string { return c.remoteAddr }

// Rooms returns the rooms the connection is in, sorted.
func (c *Conn) Rooms() []string {
	c.mu.Lock()
	rooms := append([]string(nil), c.rooms...)
	c.mu.Unlock()
	sort.Strings(rooms)
	return rooms
}

func (c *Conn) isClosed() bool { return c.state.Load() >= stateClosing }

// enqueue queues one complete WebSocket frame. It never blocks: a
// connection whose backlog would pass QueueBytes is closed 4001 instead, and
// enqueue reports false so callers can count the drop. frame may be shared
// between connections and must not be modified afterwards.
func (c *Conn) enqueue(frame []byte) bool {
	c.mu.Lock()
	ok := c.pushLocked(frame)
	c.mu.Unlock()
	return ok
}

// pushLocked is enqueue with c.mu held, for callers that must order a frame
// with other state of the connection (history cursors).
func (c *Conn) pushLocked(frame []byte) bool {
	if !c.reserve(len(frame)) {
		return false
	}
	if c.isClosed() {
		c.pending.Add(-int64(len(frame)))
		return false
	}
	c.queue = append(c.queue, frame)
	c.startFlushLocked()
	return true
}

// enqueueParts queues one frame made of several buffers, written back to
// back with nothing in between; shared parts are never copied.
func (c *Conn) enqueueParts(parts ...[]byte) bool {
	c.mu.Lock()
	ok := c.pushPartsLocked(parts...)
	c.mu.Unlock()
	return ok
}

// pushPartsLocked is enqueueParts with c.mu held.
func (c *Conn) pushPartsLocked(parts ...[]byte) bool {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	if !c.reserve(n) {
		return false
	}
	if c.isClosed() {
		c.pending.Add(-int64(n))
		return false
	}
	c.queue = append(c.queue, parts...)
	c.startFlushLocked()
	return true
}

// reserve counts n bytes against the queue bound, closing the connection
// as a slow consumer when they do not fit.
func (c *Conn) reserve(n int) bool {
	if c.isClosed() {
		c.hub.counters.drop("closed")
		return false
	}
	if c.pending.Add(int64(n)) > int64(c.hub.opts.Limits.QueueBytes) {
		c.pending.Add(-int64(n))
		c.hub.counters.drop("slow_consumer")
		// Callers may hold registry locks that cleanup needs.
		go c.hub.closeConn(c, CloseSlowConsumer, "slow_consumer")
		return false
	}
	return true
}

// startFlushLocked hands the connection to a writer unless one already has
// it, or the connection is still starting (the accept path flushes then).
func (c *Conn) startFlushLocked() {
	if c.flushing || c.state.Load() == stateStarting {
		return
	}
	c.flushing = true
	if c.stalledSince.Load() == 0 {
		c.stalledSince.Store(time.Now().UnixNano())
	}
	c.t.ScheduleFlush(c.wire())
}

// flush writes everything queued, several frames per system call when they
// have piled up, until the queue is empty.
func (c *Conn) flush() {
	var done [][]byte
	for {
		c.mu.Lock()
		if done != nil && cap(done) <= maxSpareFrames {
			c.spare = done[:0]
		}
		q := c.queue
		c.queue, c.spare = c.spare, nil
		if len(q) == 0 {
			c.flushing = false
			shut := c.shutAfterFlush
			c.mu.Unlock()
			if shut {
				c.t.ShutWhenDrained(c.wire())
			}
			return
		}
		c.mu.Unlock()
		err := c.t.Write(c.wire(), q)
		clear(q) // let written frames be collected
		done = q
		if err != nil {
			c.hub.transportClosed(c, writeFailed(err))
			c.mu.Lock()
			c.flushing = false
			c.queue = nil
			c.mu.Unlock()
			return
		}
	}
}

// maxSpareFrames bounds the backing array kept between flushes, so a burst
// does not pin a large array to an idle connection.
const maxSpareFrames = 64

// wrote records that n bytes reached the kernel.
func (c *Conn) wrote(n int) {
	c.hub.counters.bytesOut.Add(uint64(n))
	if c.pending.Add(-int64(n)) <= 0 {
		c.stalledSince.Store(0)
	} else {
		c.stalledSince.Store(time.Now().UnixNano())
	}
}

// queueClose ends the outbound stream with a close frame. When drop is set
// (slow consumer) the frames still queued are discarded so that the close
// frame is the next thing the peer can read.
func (c *Conn) queueClose(code int, reason string, drop, shut bool) {
	frame := wsframe.AppendClose(nil, code, reason)
	c.mu.Lock()
	if drop {
		var dropped int
		for _, f := range c.queue {
			dropped += len(f)
		}
		c.queue = nil
		c.wrote(dropped)
	}
	c.pending.Add(int64(len(frame)))
	c.queue = append(c.queue, frame)
	c.shutAfterFlush = shut
	c.startFlushLocked()
	c.mu.Unlock()
}

// addRoom records membership on the connection; the registry is updated
// by the caller afterwards, outside c.mu.
func (c *Conn) addRoom(name string, max int) (already, full, closed bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state.Load() != stateOpen {
		return false, false, true // cleanup has taken (or is taking) the rooms
	}
	if slices.Contains(c.rooms, name) {
		return true, false, false
	}
	if len(c.rooms) >= max {
		return false, true, false
	}
	c.rooms = append(c.rooms, name)
	return false, false, false
}

func (c *Conn) removeRoom(name string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	i := slices.Index(c.rooms, name)
	if i < 0 {
		return false
	}
	c.rooms = slices.Delete(c.rooms, i, i+1)
	return true
}

func (c *Conn) joined(name string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Contains(c.rooms, name)
}
