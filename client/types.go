package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Error codes a server puts in an error frame (docs/protocol.md, section 8).
const (
	CodeBadRequest   = "bad_request"
	CodeForbidden    = "forbidden"
	CodeNotJoined    = "not_joined"
	CodeRateLimited  = "rate_limited"
	CodeTooManyRooms = "too_many_rooms"
	CodeTooLarge     = "too_large"
	CodeInternal     = "internal"
)

// Error is a request the server refused: the code and message of its error
// frame. Use errors.As to get at it.
type Error struct {
	Code    string // one of the Code constants, or a newer one
	Message string // for humans; may change between server versions
}

func (e *Error) Error() string {
	if e.Message == "" {
		return "switchboard: " + e.Code
	}
	return "switchboard: " + e.Code + ": " + e.Message
}

var (
	// ErrClosed is returned by requests after Close, or once the client has
	// stopped reconnecting (Err says why).
	ErrClosed = errors.New("switchboard: client closed")
	// ErrDisconnected is returned by a request whose connection ended before
	// the answer came. The request may or may not have taken effect.
	ErrDisconnected = errors.New("switchboard: connection lost before the answer")
	// ErrFrameTooLarge is returned, without sending anything, for a request
	// over the max_message_bytes the server announced: sending it would make
	// the server close the connection.
	ErrFrameTooLarge = errors.New("switchboard: request over the server's frame limit")
)

// HandshakeError is a refused connection: the server answered the upgrade
// request with an HTTP error (docs/protocol.md, "Handshake answers").
type HandshakeError struct {
	StatusCode int           // e.g. 401, 429, 503
	Code       string        // the body's error code, e.g. "unauthorized"; may be empty
	RetryAfter time.Duration // from Retry-After, when the server sent one
}

func (e *HandshakeError) Error() string {
	return fmt.Sprintf("switchboard: handshake refused: %d %s", e.StatusCode, e.Code)
}

// CloseError is how a connection ended when the server closed it, or 1006
// when it ended without a close frame (network loss, dead server).
type CloseError struct {
	Code   int
	Reason string
}

func (e *CloseError) Error() string {
	return fmt.Sprintf("switchboard: connection closed: %d %s", e.Code, e.Reason)
}

// Welcome is what the server announced about one connection.
type Welcome struct {
	Conn            string        // the connection's id
	User            string        // the authenticated user
	PingInterval    time.Duration // how often the server pings
	PongTimeout     time.Duration // how much longer it waits for any frame
	MaxMessageBytes int           // the largest frame the client may send
}

// Message is a message frame: a publish to a room, a direct send to this
// user, or a broadcast. Exactly one of Room, To and Broadcast is set.
type Message struct {
	Room      string
	To        string
	Broadcast bool
	From      string          // the sender's user id, or "server"
	Data      json.RawMessage // exactly as the sender wrote it
	ID        string          // unique per message: the same for every recipient
	Offset    uint64          // position in the room's history; 0 without history
	Time      time.Time       // when the server accepted it
	// Recovered is set for a message the client missed while disconnected
	// and got back from the room's history on rejoining.
	Recovered bool
}

// EventType names what an Event reports.
type EventType string

// Event types.
const (
	// EventJoin: User entered Room (their first connection in it).
	EventJoin EventType = "join"
	// EventLeave: User left Room (their last connection in it went).
	EventLeave EventType = "leave"
	// EventPresenceDiff: in a big room, Joins entered and Leaves left
	// during the last batch interval.
	EventPresenceDiff EventType = "presence_diff"
	// EventRejoin: after a reconnect, Room was joined again (Err nil) with
	// Users as its members now. Recovered says whether every message missed
	// meanwhile was delivered; when false the application should reload
	// the room's state from its own backend. If Err is set the rejoin
	// failed; with forbidden or bad_request the room is dropped, otherwise
	// it is tried again on the next reconnect.
	EventRejoin EventType = "rejoin"
	// EventError: an error frame that answers no request of this client.
	EventError EventType = "error"
)

// Event is a presence change, a rejoin after reconnecting, or a stray error.
type Event struct {
	Type      EventType
	Room      string
	User      string   // EventJoin, EventLeave
	Joins     []string // EventPresenceDiff
	Leaves    []string // EventPresenceDiff
	Users     []string // EventRejoin: the room's users, sorted
	Recovered bool     // EventRejoin
	Offset    uint64   // EventRejoin in a room with history: its newest offset
	Epoch     string   // EventRejoin in a room with history
	Err       error    // EventRejoin that failed, EventError (an *Error)
	// Dropped counts the events lost just before this one because the
	// Events buffer was full; after a loss, ask Presence to resync.
	Dropped int
}

// JoinResult is a join's ack.
type JoinResult struct {
	Users []string // the room's users, sorted, the joining user included
	// History is set for a room that keeps history; Offset (its newest
	// message, 0 before the first) and Epoch are then the room's position.
	History bool
	Offset  uint64
	Epoch   string
	// Recovered, for a join with Since, says the missed messages were all
	// found; they are delivered on Messages before any later live message.
	Recovered bool
}

// State is where the client's connection stands.
type State int

// States, in the order a client goes through them.
const (
	StateConnecting   State = iota // dialling, up to the welcome frame
	StateConnected                 // welcome received and rooms rejoined
	StateReconnecting              // the connection ended; waiting to retry
	StateClosed                    // stopped for good: Close, or a close code that forbids retrying
)

func (s State) String() string {
	switch s {
	case StateConnecting:
		return "connecting"
	case StateConnected:
		return "connected"
	case StateReconnecting:
		return "reconnecting"
	case StateClosed:
		return "closed"
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// StateChange is passed to Options.OnState.
type StateChange struct {
	State State
	// Err is why the previous connection ended or the attempt failed
	// (a *CloseError, a *HandshakeError or a network error); nil for
	// Connected and after Close.
	Err error
	// Delay is how long the client waits before the next attempt, for
	// StateReconnecting.
	Delay time.Duration
}

// frame is every field of every server frame the client reads.
type frame struct {
	Type string `json:"type"`
	Ref  string `json:"ref"`
	// error
	Code    string `json:"code"`
	Message string `json:"message"`
	// welcome
	Conn            string  `json:"conn"`
	PingInterval    float64 `json:"ping_interval"`
	PongTimeout     float64 `json:"pong_timeout"`
	MaxMessageBytes int     `json:"max_message_bytes"`
	// message, join, leave, presence, presence_diff
	Room      string          `json:"room"`
	To        string          `json:"to"`
	Broadcast bool            `json:"broadcast"`
	From      string          `json:"from"`
	User      string          `json:"user"`
	Data      json.RawMessage `json:"data"`
	ID        string          `json:"id"`
	Offset    *uint64         `json:"offset"`
	TS        int64           `json:"ts"`
	Users     []string        `json:"users"`
	Joins     []string        `json:"joins"`
	Leaves    []string        `json:"leaves"`
	// join ack
	Epoch     string            `json:"epoch"`
	Recovered *bool             `json:"recovered"`
	Messages  []json.RawMessage `json:"messages"`
}

func (f *frame) message(recovered bool) Message {
	m := Message{
		Room: f.Room, To: f.To, Broadcast: f.Broadcast, From: f.From,
		Data: f.Data, ID: f.ID, Recovered: recovered,
	}
	if f.Offset != nil {
		m.Offset = *f.Offset
	}
	if f.TS != 0 {
		m.Time = time.UnixMilli(f.TS)
	}
	return m
}

// request is every field of a client frame.
type request struct {
	Type  string          `json:"type"`
	ID    string          `json:"id,omitempty"`
	Room  string          `json:"room,omitempty"`
	To    string          `json:"to,omitempty"`
	Data  json.RawMessage `json:"data,omitempty"`
	Echo  *bool           `json:"echo,omitempty"`
	Since *uint64         `json:"since,omitempty"`
	Epoch string          `json:"epoch,omitempty"`
}

func seconds(v float64) time.Duration { return time.Duration(v * float64(time.Second)) }
