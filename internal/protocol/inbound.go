// Package protocol holds the Switchboard v1 wire format: strict decoding of
// client frames and allocation-light encoding of server frames.
//
// A leaf: it imports no other package of the project and nothing outside
// the standard library (internal/layers checks).
package protocol

import (
	"bytes"
	"encoding/json"
	"fmt"
	"unicode/utf8"
)

// Error codes sent in error frames (PROTOCOL.md, "Error codes").
const (
	CodeBadRequest   = "bad_request"
	CodeForbidden    = "forbidden"
	CodeNotJoined    = "not_joined"
	CodeRateLimited  = "rate_limited"
	CodeTooManyRooms = "too_many_rooms"
	CodeTooLarge     = "too_large"
	CodeInternal     = "internal"
)

// Client frame types.
const (
	TypePing     = "ping"
	TypePong     = "pong"
	TypeJoin     = "join"
	TypeLeave    = "leave"
	TypePublish  = "publish"
	TypeSend     = "send"
	TypePresence = "presence"
)

// MaxRoomLen is the longest room name accepted, in bytes.
const MaxRoomLen = 128

// MaxIDLen bounds the client-chosen request id echoed back as ref, so a
// client cannot make the server reflect arbitrarily large strings.
const MaxIDLen = 128

// Request is one decoded client frame. Data stays raw JSON end to end:
// decoding it into any would cost CPU and corrupt large integers.
type Request struct {
	Type  string          `json:"type"`
	ID    string          `json:"id,omitempty"`
	Room  string          `json:"room,omitempty"`
	To    string          `json:"to,omitempty"`
	Data  json.RawMessage `json:"data,omitempty"`
	Since *uint64         `json:"since,omitempty"`
	Epoch string          `json:"epoch,omitempty"`
	Echo  *bool           `json:"echo,omitempty"`
}

// DecodeError is a request the server refuses. Ref is the request id when the
// frame was JSON enough to carry one.
type DecodeError struct {
	Ref     string
	Code    string
	Message string
}

func (e *DecodeError) Error() string { return e.Code + ": " + e.Message }

// wireRequest mirrors Request with raw fields so that the type of each field
// can be checked and reported precisely instead of by encoding/json's generic
// messages. A nil field was absent from the frame.
type wireRequest struct {
	Type, ID, Room, To, Data, Since, Epoch, Echo json.RawMessage
}

// Decode parses one client frame strictly: it must be a JSON object with a
// known string type and the fields that type requires, each of the right JSON
// type. Unknown fields are ignored so that newer clients keep working with
// older servers (the protocol only ever grows by optional fields).
func Decode(frame []byte) (Request, *DecodeError) {
	var req Request
	trimmed := bytes.TrimLeft(frame, " \t\r\n")
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return req, &DecodeError{Code: CodeBadRequest, Message: "frame must be a JSON object"}
	}
	if !json.Valid(frame) {
		return req, &DecodeError{Code: CodeBadRequest, Message: "invalid JSON"}
	}
	// The members are picked out by a scanner rather than encoding/json: it
	// matches keys exactly (encoding/json matches struct fields
	// case-insensitively, even "ſince" for "since"; "TYPE" is an unknown
	// field here, not the type) and allocates nothing for the frame's shape.
	var w wireRequest
	scanMembers(frame, &w)
	if w.Data != nil {
		w.Data = append(json.RawMessage(nil), w.Data...) // the frame's buffer is reused
	}
	// The id comes first so every later error can carry it as ref.
	if w.ID != nil {
		id, ok := str(w.ID)
		if !ok {
			return req, &DecodeError{Code: CodeBadRequest, Message: "id must be a string"}
		}
		if len(id) > MaxIDLen {
			return req, &DecodeError{Code: CodeBadRequest, Message: fmt.Sprintf("id longer than %d bytes", MaxIDLen)}
		}
		req.ID = id
	}
	fail := func(msg string) (Request, *DecodeError) {
		return req, &DecodeError{Ref: req.ID, Code: CodeBadRequest, Message: msg}
	}
	typ, ok := str(w.Type)
	if w.Type == nil || !ok {
		return fail("type must be a string")
	}
	req.Type = typ
	switch typ {
	case TypePing, TypePong:
		return req, nil
	case TypeJoin, TypeLeave, TypePresence, TypePublish:
		room, ok := str(w.Room)
		if w.Room == nil || !ok {
			return fail("room (string) is required")
		}
		if msg := ValidateRoom(room); msg != "" {
			return fail(msg)
		}
		req.Room = room
	case TypeSend:
		to, ok := str(w.To)
		if w.To == nil || !ok || to == "" {
			return fail("to (non-empty string) is required")
		}
		req.To = to
	default:
		return fail(fmt.Sprintf("unknown type %q", typ))
	}
	switch typ {
	case TypePublish, TypeSend:
		if w.Data == nil {
			return fail("data is required")
		}
		req.Data = w.Data
	case TypeJoin:
		if w.Since != nil && !isNull(w.Since) {
			var since uint64
			if err := json.Unmarshal(w.Since, &since); err != nil {
				return fail("since must be a non-negative integer")
			}
			req.Since = &since
		}
		if w.Epoch != nil && !isNull(w.Epoch) {
			epoch, ok := str(w.Epoch)
			if !ok {
				return fail("epoch must be a string")
			}
			req.Epoch = epoch
		}
		if w.Echo != nil && !isNull(w.Echo) {
			var echo bool
			if err := json.Unmarshal(w.Echo, &echo); err != nil {
				return fail("echo must be a boolean")
			}
			req.Echo = &echo
		}
	}
	return req, nil
}

// ValidateRoom returns "" for a valid room name, else why it is not.
func ValidateRoom(room string) string {
	if len(room) == 0 || len(room) > MaxRoomLen {
		return fmt.Sprintf("room must be 1 to %d bytes", MaxRoomLen)
	}
	for i := 0; i < len(room); i++ {
		if !roomByte(room[i]) {
			return "room may only contain A-Z a-z 0-9 _ . : @ / -"
		}
	}
	return ""
}

func roomByte(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	switch c {
	case '_', '.', ':', '@', '/', '-':
		return true
	}
	return false
}

func str(raw json.RawMessage) (string, bool) {
	if len(raw) < 2 || raw[0] != '"' {
		return "", false
	}
	if inner := raw[1 : len(raw)-1]; bytes.IndexByte(inner, '\\') < 0 && utf8.Valid(inner) {
		return string(inner), true // the common case: nothing to unescape
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", false
	}
	return s, true
}

func isNull(raw json.RawMessage) bool { return string(raw) == "null" }

// Depth returns how deeply arrays and objects nest in the raw JSON value v
// (0 for a scalar). It scans bytes without decoding, skipping strings.
func Depth(v []byte) int {
	depth, deepest, inString := 0, 0, false
	for i := 0; i < len(v); i++ {
		c := v[i]
		if inString {
			switch c {
			case '\\':
				i++
			case '"':
				inString = false
			}
			continue
		}
		switch c {
		case '"':
			inString = true
		case '[', '{':
			depth++
			deepest = max(deepest, depth)
		case ']', '}':
			depth--
		}
	}
	return deepest
}
