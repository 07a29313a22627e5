package protocol

import (
	"bytes"
	"encoding/json"
)

// scanMembers fills w with the raw values of the known top-level members of
// obj, which must be a valid JSON object (json.Valid). Like decoding into a
// map, the last of duplicate keys wins and escaped keys compare by their
// decoded text.
func scanMembers(obj []byte, w *wireRequest) {
	i := skipSpace(obj, 0) + 1 // past '{'
	for {
		i = skipSpace(obj, i)
		if obj[i] == '}' {
			return
		}
		keyEnd := skipString(obj, i)
		key := obj[i:keyEnd]
		i = skipSpace(obj, keyEnd) + 1 // past ':'
		i = skipSpace(obj, i)
		valEnd := skipValue(obj, i)
		if dst := w.field(key); dst != nil {
			*dst = obj[i:valEnd:valEnd]
		}
		i = skipSpace(obj, valEnd)
		if obj[i] == ',' {
			i++
		}
	}
}

// field returns where the value of the member named by the quoted key goes,
// or nil for a key the protocol does not know.
func (w *wireRequest) field(quoted []byte) *json.RawMessage {
	name := quoted[1 : len(quoted)-1]
	if bytes.IndexByte(name, '\\') >= 0 {
		var s string
		if json.Unmarshal(quoted, &s) != nil {
			return nil
		}
		name = []byte(s)
	}
	switch string(name) {
	case "type":
		return &w.Type
	case "id":
		return &w.ID
	case "room":
		return &w.Room
	case "to":
		return &w.To
	case "data":
		return &w.Data
	case "since":
		return &w.Since
	case "epoch":
		return &w.Epoch
	case "echo":
		return &w.Echo
	}
	return nil
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index just past the string starting at b[i] ('"').
func skipString(b []byte, i int) int {
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return len(b)
}

// skipValue returns the index just past the JSON value starting at b[i].
func skipValue(b []byte, i int) int {
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for ; i < len(b); i++ {
			switch b[i] {
			case '"':
				i = skipString(b, i) - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
		}
		return len(b)
	}
	for i < len(b) && bytes.IndexByte([]byte(",}] \t\r\n"), b[i]) < 0 {
		i++
	}
	return i
}
