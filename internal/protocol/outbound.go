package protocol

import (
	"strconv"
	"time"
	"unicode/utf8"
)

// Frames with no fields are constants: sending them allocates nothing.
var (
	PingFrame = []byte(`{"type":"ping"}`)
	PongFrame = []byte(`{"type":"pong"}`)
)

// Message is a delivered publish or direct send. Exactly one of Room and To is set.
type Message struct {
	Room   string
	To     string
	From   string
	Data   []byte // raw JSON, copied verbatim
	ID     string
	Offset uint64 // written only when HasOffset
	// HasOffset is set for rooms that keep history.
	HasOffset bool
	TS        int64 // unix milliseconds
}

// AppendMessage encodes m. Hand-written because it runs once per publish on
// the hot path; encoding/json would reflect and escape data again.
func AppendMessage(dst []byte, m *Message) []byte {
	dst = append(dst, `{"type":"message",`...)
	if m.Room != "" {
		dst = append(dst, `"room":`...)
		dst = AppendString(dst, m.Room)
	} else {
		dst = append(dst, `"to":`...)
		dst = AppendString(dst, m.To)
	}
	dst = append(dst, `,"from":`...)
	dst = AppendString(dst, m.From)
	dst = append(dst, `,"data":`...)
	dst = append(dst, m.Data...)
	dst = append(dst, `,"id":`...)
	dst = AppendString(dst, m.ID)
	if m.HasOffset {
		dst = append(dst, `,"offset":`...)
		dst = strconv.AppendUint(dst, m.Offset, 10)
	}
	dst = append(dst, `,"ts":`...)
	dst = strconv.AppendInt(dst, m.TS, 10)
	return append(dst, '}')
}

// AppendMessageAround encodes m in two parts that go either side of its
// offset's digits, for a store that assigns the offset as it keeps the
// message (a broker-side script concatenates head, offset, tail).
func AppendMessageAround(m *Message) (head, tail []byte) {
	b := *m
	b.HasOffset, b.Offset = true, 0
	whole := AppendMessage(make([]byte, 0, 112+len(m.Data)), &b)
	cut := len(whole) - len(`0,"ts":`) - len(strconv.AppendInt(nil, m.TS, 10)) - 1
	return whole[:cut], whole[cut+1:]
}

// Welcome is the first frame of every connection.
func Welcome(conn, user string, pingInterval, pongTimeout time.Duration, maxMessageBytes int) []byte {
	dst := make([]byte, 0, 160)
	dst = append(dst, `{"type":"welcome","conn":`...)
	dst = AppendString(dst, conn)
	dst = append(dst, `,"user":`...)
	dst = AppendString(dst, user)
	dst = append(dst, `,"ping_interval":`...)
	dst = appendSeconds(dst, pingInterval)
	dst = append(dst, `,"pong_timeout":`...)
	dst = appendSeconds(dst, pongTimeout)
	dst = append(dst, `,"max_message_bytes":`...)
	dst = strconv.AppendInt(dst, int64(maxMessageBytes), 10)
	return append(dst, '}')
}

// WelcomeSession is the welcome of an event-stream connection: Welcome
// plus the transport's name and the session its requests must carry.
func WelcomeSession(conn, user string, pingInterval, pongTimeout time.Duration, maxMessageBytes int, session string) []byte {
	dst := Welcome(conn, user, pingInterval, pongTimeout, maxMessageBytes)
	dst = append(dst[:len(dst)-1], `,"transport":"sse","session":`...)
	dst = AppendString(dst, session)
	return append(dst, '}')
}

// appendSeconds writes whole seconds as integers and shorter intervals
// (used in tests and by impatient operators) as decimals.
func appendSeconds(dst []byte, d time.Duration) []byte {
	if d%time.Second == 0 {
		return strconv.AppendInt(dst, int64(d/time.Second), 10)
	}
	return strconv.AppendFloat(dst, d.Seconds(), 'f', -1, 64)
}

// Join announces a user's first connection entering a room.
func Join(room, user string) []byte { return roomUser(`{"type":"join","room":`, room, user) }

// Leave announces a user's last connection leaving a room.
func Leave(room, user string) []byte { return roomUser(`{"type":"leave","room":`, room, user) }

func roomUser(prefix, room, user string) []byte {
	dst := make([]byte, 0, len(prefix)+len(room)+len(user)+16)
	dst = append(dst, prefix...)
	dst = AppendString(dst, room)
	dst = append(dst, `,"user":`...)
	dst = AppendString(dst, user)
	return append(dst, '}')
}

// Presence answers a presence request; users must be sorted.
func Presence(room string, users []string) []byte {
	dst := make([]byte, 0, 48+len(room)+16*len(users))
	dst = append(dst, `{"type":"presence","room":`...)
	dst = AppendString(dst, room)
	dst = append(dst, `,"users":`...)
	dst = AppendStrings(dst, users)
	return append(dst, '}')
}

// Ack is a successful answer to a request that carried an id.
type Ack struct {
	Ref string
	// Users is the presence snapshot of a join; nil omits the field.
	Users []string
	// Recovered is set for a join that asked for recovery (since).
	Recovered *bool
	// Messages are already encoded message frames for a recovered join.
	Messages [][]byte
	// Offset and Epoch describe the room's history, when it keeps one.
	Offset    uint64
	Epoch     string
	HasOffset bool
}

// AckAround encodes a join ack in two parts that go either side of an
// encoded users array, so that a shared snapshot is never copied.
func AckAround(a *Ack) (head, tail []byte) {
	head = AppendString([]byte(`{"type":"ack","ref":`), a.Ref)
	head = append(head, `,"users":`...)
	b := *a
	b.Users, b.Ref = nil, ""
	rest := AppendAck(nil, &b) // {"type":"ack","ref":""...}
	tail = rest[len(`{"type":"ack","ref":""`):]
	return head, tail
}

// AppendAck encodes a.
func AppendAck(dst []byte, a *Ack) []byte {
	dst = append(dst, `{"type":"ack","ref":`...)
	dst = AppendString(dst, a.Ref)
	if a.Users != nil {
		dst = append(dst, `,"users":`...)
		dst = AppendStrings(dst, a.Users)
	}
	if a.HasOffset {
		dst = append(dst, `,"offset":`...)
		dst = strconv.AppendUint(dst, a.Offset, 10)
		dst = append(dst, `,"epoch":`...)
		dst = AppendString(dst, a.Epoch)
	}
	if a.Recovered != nil {
		dst = append(dst, `,"recovered":`...)
		dst = strconv.AppendBool(dst, *a.Recovered)
		dst = append(dst, `,"messages":[`...)
		for i, m := range a.Messages {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, m...)
		}
		dst = append(dst, ']')
	}
	return append(dst, '}')
}

// Error encodes an error frame; ref is omitted when empty.
func Error(ref, code, message string) []byte {
	dst := make([]byte, 0, 48+len(ref)+len(code)+len(message))
	dst = append(dst, `{"type":"error",`...)
	if ref != "" {
		dst = append(dst, `"ref":`...)
		dst = AppendString(dst, ref)
		dst = append(dst, ',')
	}
	dst = append(dst, `"code":`...)
	dst = AppendString(dst, code)
	dst = append(dst, `,"message":`...)
	dst = AppendString(dst, message)
	return append(dst, '}')
}

// AppendStrings writes a JSON array of strings.
func AppendStrings(dst []byte, ss []string) []byte {
	dst = append(dst, '[')
	for i, s := range ss {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = AppendString(dst, s)
	}
	return append(dst, ']')
}

const hexDigits = "0123456789abcdef"

// AppendString writes s as a JSON string. Invalid UTF-8 becomes U+FFFD so the
// frame stays valid UTF-8 (browsers close connections on invalid text frames).
func AppendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		// U+2028 and U+2029 are valid JSON but break JavaScript string
		// literals in older engines; escaping them costs nothing.
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\u202`...)
			dst = append(dst, hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// PresenceDiff batches a big room's joins and leaves of one interval; both
// lists are sorted and either may be empty.
func PresenceDiff(room string, joins, leaves []string) []byte {
	dst := make([]byte, 0, 64+len(room)+16*(len(joins)+len(leaves)))
	dst = append(dst, `{"type":"presence_diff","room":`...)
	dst = AppendString(dst, room)
	dst = append(dst, `,"joins":`...)
	dst = AppendStrings(dst, joins)
	dst = append(dst, `,"leaves":`...)
	dst = AppendStrings(dst, leaves)
	return append(dst, '}')
}
