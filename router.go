package switchboard

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/switchboardhq/switchboard/internal/protocol"
	"github.com/switchboardhq/switchboard/internal/wsframe"
)

// onData feeds bytes read from the socket through the frame reader and
// routes each complete frame. A panic anywhere below, including in an
// application callback, closes only this connection with 1011.
func (h *Hub) onData(c *Conn, data []byte) (err error) {
	defer func() {
		if p := recover(); p != nil {
			h.panicked(c, "handler", p)
			err = nil
		}
	}()
	if c.readFailed {
		return nil
	}
	ferr := c.reader.Feed(data, func(op wsframe.Opcode, payload []byte) bool {
		c.lastSeen.Store(time.Now().UnixNano())
		if op == wsframe.OpClose {
			code, reason, cerr := wsframe.ParseClosePayload(payload)
			if cerr != nil {
				var ce *wsframe.CloseError
				if errors.As(cerr, &ce) {
					h.closeConn(c, ce.Code, ce.Reason)
				}
				return false
			}
			h.peerClosed(c, code, reason)
			return false
		}
		if c.isClosed() {
			// Closing: only the peer's close frame matters now, but the
			// frames before it must still be parsed to find it.
			return true
		}
		switch op {
		case wsframe.OpText:
			h.handleText(c, payload)
		case wsframe.OpBinary:
			// The protocol is JSON text; a binary frame is a client that
			// speaks something else (RFC 6455 1003: unsupported data).
			h.closeConn(c, CloseUnsupported, "binary_unsupported")
		case wsframe.OpPing:
			// Control pings cost a pong each: they share the message rate.
			if h.admit(c, "") {
				c.enqueue(wsframe.AppendFrame(nil, wsframe.OpPong, payload))
			}
		}
		return true // keep parsing: a close frame from the peer may follow
	})
	if ferr != nil {
		c.readFailed = true
		var ce *wsframe.CloseError
		if errors.As(ferr, &ce) {
			h.closeConn(c, ce.Code, ce.Reason)
			return nil
		}
		return fmt.Errorf("read frame: %w", ferr)
	}
	return nil
}

// admit applies the per-connection message rate. A refused frame is
// answered rate_limited (with ref, for requests); MaxRateViolations refusals
// in a row close the connection with 1008.
func (h *Hub) admit(c *Conn, ref string) bool {
	if c.limiter.Allow() {
		c.violations = 0
		return true
	}
	h.counters.drop("rate_limited")
	c.violations++
	if c.violations >= h.opts.Limits.MaxRateViolations {
		h.closeConn(c, ClosePolicy, "policy")
		return false
	}
	c.enqueueJSON(protocol.Error(ref, protocol.CodeRateLimited, "too many messages; slow down"))
	return false
}

// enqueueJSON frames one JSON text for this connection alone.
func (c *Conn) enqueueJSON(text []byte) bool {
	return c.enqueue(c.textFrame(text))
}

var (
	pingWireFrame = wsframe.AppendFrame(nil, wsframe.OpText, protocol.PingFrame)
	pongWireFrame = wsframe.AppendFrame(nil, wsframe.OpText, protocol.PongFrame)
)

func (h *Hub) handleText(c *Conn, payload []byte) {
	req, derr := protocol.Decode(payload)
	if derr != nil {
		h.counters.messageIn("invalid", len(payload))
	} else {
		h.counters.messageIn(req.Type, len(payload))
	}
	if derr == nil && req.Type == protocol.TypePong {
		// Liveness was refreshed already; pongs are never rate limited.
		if sent := c.pingSent.Swap(0); sent != 0 && h.opts.Observer != nil {
			h.opts.Observer.PingRTT(time.Duration(time.Now().UnixNano() - sent))
		}
		return
	}
	ref := req.ID
	if derr != nil {
		ref = derr.Ref
	}
	if !h.admit(c, ref) {
		return
	}
	if derr != nil {
		c.enqueueJSON(protocol.Error(derr.Ref, derr.Code, derr.Message))
		return
	}
	if c.dmHoldUntil.Load() != 0 {
		if req.Type == protocol.TypeJoin && req.Room == "user:"+c.user && req.Since != nil {
			c.dmHoldUntil.Store(0) // the resuming join takes the held messages over
		} else {
			c.releaseDirect()
		}
	}
	if cb := h.opts.OnMessage; cb != nil && req.Type != protocol.TypePing {
		cb(c, payload)
	}
	switch req.Type {
	case protocol.TypePing:
		c.enqueue(pongWireFrame)
		h.ack(c, req.ID)
	case protocol.TypeJoin:
		h.handleJoin(c, &req)
	case protocol.TypeLeave:
		if !c.removeRoom(req.Room) {
			h.fail(c, req.ID, protocol.CodeNotJoined, "not in room "+req.Room)
			return
		}
		h.leftRoom(c, req.Room)
		if stream := h.joinStream(req.Room); stream != "" {
			c.dropStream(stream)
		}
		h.ack(c, req.ID)
	case protocol.TypePublish:
		if h.mayPublish(c, &req) {
			h.forward(c, &req, kindRoomMessage, req.Room)
		}
	case protocol.TypeSend:
		if h.dataAcceptable(c, &req) {
			h.forward(c, &req, kindUserMessage, req.To)
		}
	case protocol.TypePresence:
		if !mayJoin(c, req.Room) {
			h.fail(c, req.ID, protocol.CodeForbidden, "room not allowed: "+req.Room)
			return
		}
		users, err := h.presence.RoomUsers(h.ctx, req.Room)
		if err != nil {
			h.log.Error("presence failed", "error", err, "room", req.Room)
			h.fail(c, req.ID, protocol.CodeInternal, "presence unavailable")
			return
		}
		c.enqueueJSON(protocol.Presence(req.Room, users))
		h.ack(c, req.ID)
	}
}

// forward publishes a client's message to a room or a user and answers the
// request.
func (h *Hub) forward(c *Conn, req *protocol.Request, kind byte, target string) {
	if _, err := h.publish(h.ctx, kind, c.id, target, c.user, req.Data); err != nil {
		h.log.Error(req.Type+" failed", "error", err, "conn_id", c.id)
		h.fail(c, req.ID, protocol.CodeInternal, req.Type+" failed")
		return
	}
	h.ack(c, req.ID)
}

func (h *Hub) mayPublish(c *Conn, req *protocol.Request) bool {
	joined := c.joined(req.Room)
	switch {
	case !mayJoin(c, req.Room):
		h.fail(c, req.ID, protocol.CodeForbidden, "room not allowed: "+req.Room)
	case !joined:
		h.fail(c, req.ID, protocol.CodeNotJoined, "join "+req.Room+" before publishing to it")
	case matchesAny(h.opts.ReadOnlyRooms, req.Room):
		h.fail(c, req.ID, protocol.CodeForbidden, "room "+req.Room+" is read-only: only the server publishes to it")
	default:
		return h.dataAcceptable(c, req)
	}
	return false
}

// dataAcceptable applies the size and nesting limits to a publish or send.
func (h *Hub) dataAcceptable(c *Conn, req *protocol.Request) bool {
	lim := h.opts.Limits
	if len(req.Data) > lim.MaxDataBytes {
		h.fail(c, req.ID, protocol.CodeTooLarge, fmt.Sprintf("data is over %d bytes", lim.MaxDataBytes))
		return false
	}
	if protocol.Depth(req.Data) > lim.MaxDataDepth {
		h.fail(c, req.ID, protocol.CodeBadRequest, fmt.Sprintf("data is nested deeper than %d levels", lim.MaxDataDepth))
		return false
	}
	return true
}

func (h *Hub) handleJoin(c *Conn, req *protocol.Request) {
	if !mayJoin(c, req.Room) {
		h.fail(c, req.ID, protocol.CodeForbidden, "room not allowed: "+req.Room)
		return
	}
	echo := req.Echo == nil || *req.Echo
	already, full, closed := c.addRoom(req.Room, h.opts.Limits.MaxRooms)
	switch {
	case closed:
		return
	case full:
		h.fail(c, req.ID, protocol.CodeTooManyRooms, fmt.Sprintf("already in %d rooms", h.opts.Limits.MaxRooms))
		return
	case !already:
		// Subscribe before announcing so this node hears its own announcement.
		h.interest(roomChannelPfx+req.Room, +1)
	}
	// A room with history: live messages wait from here until the join has
	// read the history, so the two meet without a gap or a duplicate.
	stream := h.joinStream(req.Room)
	if stream != "" {
		c.holdStream(stream)
	}
	unlock := h.lockRoom(req.Room)
	first, _, ok := h.reg.joinRoom(c, req.Room, echo)
	if ok && first {
		// Presence announces the join to the room's members on every node
		// where it is the user's first connection in the room anywhere.
		if err := h.presence.Join(h.ctx, req.Room, c.user); err != nil {
			h.log.Error("presence join failed", "error", err, "room", req.Room)
		}
	}
	unlock()
	if !ok {
		// Closed meanwhile, before the registry had this membership:
		// cleanup found nothing to remove, so the interest is undone here.
		if !already {
			h.interest(roomChannelPfx+req.Room, -1)
			if stream != "" {
				c.dropStream(stream)
			}
		}
		return
	}
	if stream != "" {
		h.joinKept(c, req, stream)
		return
	}
	if req.ID == "" {
		return
	}
	ack := protocol.Ack{Ref: req.ID}
	if req.Since != nil {
		// This room keeps no history: recovery is never possible.
		recovered := false
		ack.Recovered = &recovered
		ack.Messages = [][]byte{}
	}
	current := func() ([]string, error) { return h.presence.RoomUsers(h.ctx, req.Room) }
	if size, err := h.presence.RoomSize(h.ctx, req.Room); err == nil && size > h.opts.PresenceBatchSize {
		snapshot, err := h.diffs.Snapshot(req.Room, current)
		if err == nil {
			head, tail := protocol.AckAround(&ack)
			c.enqueueParts(c.textParts(req.Room, head, snapshot, tail)...)
			return
		}
		h.log.Error("presence failed", "error", err, "room", req.Room)
	}
	users, err := current()
	if err != nil {
		h.log.Error("presence failed", "error", err, "room", req.Room)
		users = []string{}
	}
	ack.Users = users
	c.enqueueJSON(protocol.AppendAck(nil, &ack))
}

// joinKept answers the join of a room with history, users included.
func (h *Hub) joinKept(c *Conn, req *protocol.Request, stream string) {
	ack := protocol.Ack{Ref: req.ID}
	var snapshot []byte
	if req.ID != "" {
		current := func() ([]string, error) { return h.presence.RoomUsers(h.ctx, req.Room) }
		if size, err := h.presence.RoomSize(h.ctx, req.Room); err == nil && size > h.opts.PresenceBatchSize {
			snapshot, _ = h.diffs.Snapshot(req.Room, current)
		}
		if snapshot == nil {
			users, err := current()
			if err != nil {
				h.log.Error("presence failed", "error", err, "room", req.Room)
				users = []string{}
			}
			ack.Users = users
		}
	}
	h.keptJoin(c, req, stream, &ack, snapshot)
}

// mayJoin applies the private-room rule and the identity's rooms claim.
func mayJoin(c *Conn, room string) bool {
	if rest, ok := strings.CutPrefix(room, "user:"); ok {
		return rest == c.user
	}
	if c.ident == nil || c.ident.Rooms == nil {
		return true
	}
	return matchesAny(c.ident.Rooms, room)
}

// matchesAny reports whether room equals one of patterns or starts with the
// prefix of one ending in *.
func matchesAny(patterns []string, room string) bool {
	for _, p := range patterns {
		if prefix, ok := strings.CutSuffix(p, "*"); ok {
			if strings.HasPrefix(room, prefix) {
				return true
			}
		} else if p == room {
			return true
		}
	}
	return false
}

func (h *Hub) ack(c *Conn, ref string) {
	if ref != "" {
		c.enqueueJSON(protocol.AppendAck(nil, &protocol.Ack{Ref: ref}))
	}
}

func (h *Hub) fail(c *Conn, ref, code, msg string) {
	c.enqueueJSON(protocol.Error(ref, code, msg))
}

// writeFailed maps a failed write to the close it stands for.
func writeFailed(err error) error {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return &closeCause{code: CloseSlowConsumer, reason: "slow_consumer"}
	}
	return err
}
