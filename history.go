package switchboard

import (
	"context"
	"strings"
	"time"

	"github.com/switchboardhq/switchboard/history"
)

// History keeps the newest messages of the streams that ask for it (rooms
// matching HistoryOptions.Rooms, users with HistoryOptions.Users), so that
// a client coming back can get what it missed. Each kept message has an
// offset, one more than the stream's previous one, and the stream has an
// epoch that changes whenever continuity is lost (the stream expired, was
// trimmed past a reader, or the store lost its data).
//
// The Redis and NATS brokers implement History themselves; with the
// in-memory broker the hub keeps rings in memory (history.Memory).
type History interface {
	// Append stores one message of stream and publishes it on the broker
	// channel in one step, so that no node ever sees a message live that
	// history does not have. What is published, and kept, is head, the
	// offset in decimal, tail, then history.Trailer(offset, epoch).
	Append(ctx context.Context, stream, channel string, head, tail []byte) (offset uint64, epoch string, err error)
	// Read returns up to limit kept payloads of stream with an offset above
	// since, oldest first. limit 0 asks for the stream's state only. A
	// stream read before its first message gets its epoch then, so that
	// the messages that follow continue it.
	Read(ctx context.Context, stream string, since uint64, limit int) (HistoryPage, error)
}

// HistoryBounded is implemented by stores that take their bounds from the
// hub (the brokers): the hub calls BoundHistory once, before Start, with
// HistoryOptions.Size and TTL.
type HistoryBounded interface {
	BoundHistory(size int, ttl time.Duration)
}

// HistoryPage is what History.Read found.
type HistoryPage = history.Page

// HistoryOptions choose which streams keep history. The zero value keeps
// none, and nothing changes for rooms that do not need it.
type HistoryOptions struct {
	// Rooms are room names, or prefixes ending in *, whose messages are
	// kept.
	Rooms []string
	// Users keeps every user's direct messages (send) as well; a client
	// recovers them by joining its private room user:<id> with since.
	Users bool
	// Size is how many messages each stream keeps. Default 100.
	Size int
	// TTL is how long a message is kept. Default 5 minutes.
	TTL time.Duration
	// MaxBytes bounds each stream's kept payloads, for the in-memory store
	// (the others bound by Size). Default 1 MiB.
	MaxBytes int
	// Store, if set, keeps the messages. Default: the broker when it
	// implements History (Redis, NATS), else memory (one node only).
	Store History
}

// Defaults of HistoryOptions.
const (
	DefaultHistorySize     = 100
	DefaultHistoryTTL      = 5 * time.Minute
	DefaultHistoryMaxBytes = 1 << 20
)

func (o HistoryOptions) withDefaults() HistoryOptions {
	if o.Size <= 0 {
		o.Size = DefaultHistorySize
	}
	if o.TTL <= 0 {
		o.TTL = DefaultHistoryTTL
	}
	if o.MaxBytes <= 0 {
		o.MaxBytes = DefaultHistoryMaxBytes
	}
	return o
}

func (o HistoryOptions) enabled() bool { return len(o.Rooms) > 0 || o.Users }

// Stream names: a room's messages and a user's direct messages never share
// a stream, even for the private room user:<id>.
const (
	roomStreamPfx = "r:"
	userStreamPfx = "u:"
)

// roomStream is the history stream of room, or "" when it keeps none.
func (h *Hub) roomStream(room string) string {
	if h.history != nil && matchesAny(h.opts.History.Rooms, room) {
		return roomStreamPfx + room
	}
	return ""
}

// userStream is the history stream of user's direct messages, or "".
func (h *Hub) userStream(user string) string {
	if h.history != nil && h.opts.History.Users {
		return userStreamPfx + user
	}
	return ""
}

// joinStream is the stream a join of room recovers: the room's own, or
// for a user's private room with user history, that user's messages.
func (h *Hub) joinStream(room string) string {
	if user, ok := strings.CutPrefix(room, "user:"); ok {
		if s := h.userStream(user); s != "" {
			return s // the private room recovers direct messages first
		}
	}
	return h.roomStream(room)
}

// keptBody opens a kept payload as published (an envelope whose frame ends
// with the trailer): the message frame, its offset and epoch.
func keptBody(p []byte) (body []byte, offset uint64, epoch string, err error) {
	env, err := unmarshalEnvelope(p)
	if err != nil {
		return nil, 0, "", err
	}
	return history.Split(env.frame)
}
