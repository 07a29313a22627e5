package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// maxRoomName is the longest room name, in bytes (PROTOCOL.md, "Room names").
const maxRoomName = 128

// roomsError is why a rooms claim was refused. Its text names positions,
// never values, so it may be logged.
type roomsError struct{ msg string }

func (e *roomsError) Error() string { return e.msg }

// errRoomsNotList is what a rooms claim that is not a JSON list of strings
// is rejected with.
var errRoomsNotList = &roomsError{"rooms claim is not a list of strings"}

// ValidRoomPattern reports why p is not a valid entry of a token's rooms
// claim, or nil. An entry is an exact room name (1 to 128 bytes of
// [A-Za-z0-9_.:@/-]) or a pattern: such a name prefix, possibly empty,
// followed by a single '*' at the end ("*" allows every room). The error
// never repeats p, so callers decide whether the value may be shown.
func ValidRoomPattern(p string) error {
	name, pattern := strings.CutSuffix(p, "*")
	switch {
	case p == "":
		return errors.New("empty room name")
	case pattern && name == "":
		return nil // "*": every room
	case len(name) > maxRoomName:
		return fmt.Errorf("longer than %d bytes", maxRoomName)
	}
	for i := 0; i < len(name); i++ {
		if !roomByte(name[i]) {
			if name[i] == '*' {
				return errors.New("'*' is only allowed once, at the end")
			}
			return fmt.Errorf("byte %d is not one of [A-Za-z0-9_.:@/-]", i)
		}
	}
	return nil
}

func roomByte(b byte) bool {
	switch {
	case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9':
		return true
	}
	return strings.IndexByte("_.:@/-", b) >= 0
}

// parseRoomsClaim decodes the raw JSON of a token's rooms claim. An absent
// claim (raw empty) is nil: every room except other users' private rooms.
// Anything but a list of valid room names and patterns is an error, and so
// is null. An empty list is an empty, non-nil slice: no rooms at all.
// Errors name the position of a bad entry, never its value: the claim is
// part of the token, and authentication errors are logged.
func parseRoomsClaim(raw []byte) ([]string, error) {
	if len(raw) == 0 {
		return nil, nil
	}
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '[' { // null, objects, strings, numbers...
		return nil, errRoomsNotList
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, errRoomsNotList
	}
	rooms := make([]string, 0, len(items))
	for i, item := range items {
		var s string
		if len(item) == 0 || item[0] != '"' || json.Unmarshal(item, &s) != nil {
			return nil, &roomsError{fmt.Sprintf("rooms claim entry %d is not a string", i)}
		}
		if err := ValidRoomPattern(s); err != nil {
			return nil, &roomsError{fmt.Sprintf("rooms claim entry %d: %v", i, err)}
		}
		rooms = append(rooms, s)
	}
	return rooms, nil
}

// roomsClaim is the rooms claim inside token claims: decoding it runs
// parseRoomsClaim, so a malformed claim fails the whole token.
type roomsClaim struct {
	rooms []string
	set   bool
}

func (r *roomsClaim) UnmarshalJSON(b []byte) error {
	rooms, err := parseRoomsClaim(b)
	if err != nil {
		return err
	}
	r.rooms, r.set = rooms, true
	return nil
}

func (r roomsClaim) MarshalJSON() ([]byte, error) {
	if r.rooms == nil {
		return []byte("[]"), nil
	}
	return json.Marshal(r.rooms)
}
