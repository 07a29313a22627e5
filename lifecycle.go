package switchboard

import (
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// closeConn is the server closing a connection: the connection leaves the
// registry at once (leave is announced), a close frame is queued behind
// what is already queued (or instead of it, for a slow consumer), and the
// socket is shut when the peer answers or after the write timeout.
func (h *Hub) closeConn(c *Conn, code int, reason string) {
	if c.state.Load() == stateStarting {
		c.mu.Lock()
		if c.state.Load() == stateStarting {
			// Still being set up: the accept path closes it when done.
			if c.closeWhenOpen == nil {
				c.closeWhenOpen = &closeCause{code: code, reason: reason}
			}
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
	}
	if !c.state.CompareAndSwap(stateOpen, stateClosing) {
		return
	}
	// Into the closing set first: the socket may be shut (by the peer's
	// answer or an error) before this function returns.
	h.trackClosing(c)
	h.cleanup(c, code, reason)
	c.queueClose(code, reason, code == CloseSlowConsumer, false)
}

func (h *Hub) trackClosing(c *Conn) {
	h.closingMu.Lock()
	h.closing[c] = time.Now().Add(h.opts.Limits.WriteTimeout).UnixNano()
	h.closingMu.Unlock()
}

// peerClosed answers the peer's close frame with the same code and shuts
// the socket once the answer is written.
func (h *Hub) peerClosed(c *Conn, code int, reason string) {
	if !c.state.CompareAndSwap(stateOpen, stateClosing) {
		// We closed first and this is the peer's answer.
		h.shut(c)
		return
	}
	h.trackClosing(c)
	h.cleanup(c, code, "peer: "+reason)
	if code == 1005 || code == 1006 || code == 1015 {
		code = CloseNormal // reserved codes may not be sent back
	}
	answer := ""
	if code == CloseNormal {
		answer = "bye"
	}
	c.queueClose(code, answer, false, true)
}

// transportClosed runs when the socket failed or was shut: whatever the
// state, the connection is cleaned up and the socket released.
func (h *Hub) transportClosed(c *Conn, err error) {
	if c.state.CompareAndSwap(stateOpen, stateClosed) {
		code, reason := 1006, "connection lost"
		var ce *closeCause
		if errors.As(err, &ce) {
			code, reason = ce.code, ce.reason
		}
		if err != nil && !isEOF(err) && ce == nil {
			h.log.Debug("connection read failed", "conn_id", c.id, "error", err)
		}
		h.cleanup(c, code, reason)
	}
	h.shut(c)
}

// shut releases the socket and the connection's MaxConns slot, once.
func (h *Hub) shut(c *Conn) {
	c.state.Store(stateClosed)
	if c.shutDone.Swap(true) {
		return
	}
	h.closingMu.Lock()
	delete(h.closing, c)
	h.closingMu.Unlock()
	if c.t != nil {
		_ = c.t.Close()
	}
	if h.total.Add(-1) <= 0 && h.draining.Load() {
		select {
		case h.idle <- struct{}{}:
		default:
		}
	}
}

// cleanup removes c from every index exactly once, announcing leave in
// each room where it was its user's last connection, and runs callbacks.
func (h *Hub) cleanup(c *Conn, code int, reason string) {
	if c.cleaned.Swap(true) {
		return
	}
	h.counters.closed(code)
	h.reg.removeConn(c)
	c.mu.Lock()
	rooms := c.rooms
	c.rooms = nil // addRoom refuses from now on (the state is no longer open)
	c.mu.Unlock()
	for _, r := range rooms {
		h.leftRoom(c, r)
	}
	unlock := h.lockUser(c.user)
	if h.reg.removeUserConn(c) {
		if err := h.presence.Disconnect(h.ctx, c.user); err != nil {
			h.log.Error("presence disconnect failed", "error", err, "user_id", c.user)
		}
	} else {
		h.reportUserConns(c.user)
	}
	unlock()
	h.interest(userChannelPfx+c.user, -1)
	online := h.Count()
	h.log.Info("connection closed", "conn_id", c.id, "user_id", c.user, "code", code,
		"reason", reason, "online_count", online, "duration_ms", time.Since(c.connectedAt).Milliseconds())
	if cb := h.opts.OnDisconnect; cb != nil {
		func() {
			defer func() {
				if p := recover(); p != nil {
					h.log.Error("OnDisconnect panicked", "conn_id", c.id, "panic", fmt.Sprint(p))
				}
			}()
			cb(c, code, reason)
		}()
	}
}

// leftRoom updates the room index and presence after c left room. The
// room's lock keeps the registry change, the presence update and the
// announcement in one order across connections.
func (h *Hub) leftRoom(c *Conn, room string) {
	unlock := h.lockRoom(room)
	removed, last, _ := h.reg.leaveRoom(c, room)
	if last {
		if err := h.presence.Leave(h.ctx, room, c.user); err != nil {
			h.log.Error("presence leave failed", "error", err, "room", room)
		}
	}
	unlock()
	if removed {
		h.interest(roomChannelPfx+room, -1)
	}
}

// closeCause carries the close code to send when reading fails in a way
// the protocol names (frame too big, invalid UTF-8, protocol error).
type closeCause struct {
	code   int
	reason string
}

func (e *closeCause) Error() string { return fmt.Sprintf("close %d %s", e.code, e.reason) }

func isEOF(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed)
}
