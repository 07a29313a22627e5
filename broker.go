package switchboard

import (
	"context"
	"encoding/binary"
	"errors"
	"sync"
)

// Broker carries publishes between the nodes of a cluster. Every node
// subscribes to the channels it has local interest in (a room with a local
// member, a user with a local connection, and the hub-wide channel) and
// fans out what arrives to its own connections. Brokers are at-most-once;
// recovery of missed messages is the history's job, not the broker's.
//
// Publish, Subscribe and Unsubscribe are called on connections' goroutines:
// implementations must return quickly (queue the network work) and must
// deliver a node's own publishes back to it.
type Broker interface {
	// Start begins delivering subscribed channels' payloads to deliver,
	// until Close. deliver must not be called concurrently for one channel
	// out of publish order.
	Start(ctx context.Context, deliver func(channel string, payload []byte)) error
	Publish(ctx context.Context, channel string, payload []byte) error
	Subscribe(ctx context.Context, channel string) error
	Unsubscribe(ctx context.Context, channel string) error
	Close() error
}

// MemoryBroker is the single-node Broker: a publish is delivered straight
// back to the hub that made it. It is the default.
type MemoryBroker struct {
	mu      sync.RWMutex
	deliver func(channel string, payload []byte)
}

// NewMemoryBroker returns a Broker for a single node.
func NewMemoryBroker() *MemoryBroker { return &MemoryBroker{} }

// Start implements Broker.
func (b *MemoryBroker) Start(_ context.Context, deliver func(string, []byte)) error {
	b.mu.Lock()
	b.deliver = deliver
	b.mu.Unlock()
	return nil
}

// Publish implements Broker by delivering synchronously.
func (b *MemoryBroker) Publish(_ context.Context, channel string, payload []byte) error {
	b.mu.RLock()
	deliver := b.deliver
	b.mu.RUnlock()
	if deliver == nil {
		return errors.New("memory broker: not started")
	}
	deliver(channel, payload)
	return nil
}

// Subscribe implements Broker; a single node hears everything it publishes.
func (b *MemoryBroker) Subscribe(context.Context, string) error { return nil }

// Unsubscribe implements Broker.
func (b *MemoryBroker) Unsubscribe(context.Context, string) error { return nil }

// Close implements Broker.
func (b *MemoryBroker) Close() error {
	b.mu.Lock()
	b.deliver = nil
	b.mu.Unlock()
	return nil
}

// ErrUnavailable is wrapped by a Broker's Publish error while it cannot
// reach its server: the message was not published (a backend may retry).
var ErrUnavailable = errors.New("broker unavailable")

// Broker channel names.
const (
	channelAll      = "all"
	roomChannelPfx  = "room:"
	userChannelPfx  = "user:"
	channelPresence = "presence"
	envelopeVersion = 1
)

// Envelope kinds: what a payload on a channel asks the receiving nodes to do.
const (
	kindRoomMessage byte = 'r' // frame to the room's members (origin may be skipped)
	kindUserMessage byte = 'u' // frame to the user's connections
	kindBroadcast   byte = 'b' // frame to every connection
	kindKick        byte = 'k' // close the user's connections with 4003
	kindPresence    byte = 'p' // a node's presence news, on channelPresence
	kindKept        byte = 'h' // a kept message: target is its stream, the frame ends with history.Trailer
	kindSSERequest  byte = 'q' // an event stream's POST that reached another node: target is its session, on the user's channel
)

// envelope is what travels through the broker: a small binary header and
// the already-encoded JSON frame, so receiving nodes never re-encode.
type envelope struct {
	kind   byte
	origin string // connection id of the publisher, for echo suppression
	target string // room or user
	frame  []byte // JSON text of the frame
}

func (e *envelope) marshal() []byte {
	b := make([]byte, 0, 2+2*binary.MaxVarintLen32+len(e.origin)+len(e.target)+len(e.frame))
	b = append(b, envelopeVersion, e.kind)
	b = binary.AppendUvarint(b, uint64(len(e.origin)))
	b = append(b, e.origin...)
	b = binary.AppendUvarint(b, uint64(len(e.target)))
	b = append(b, e.target...)
	return append(b, e.frame...)
}

var errBadEnvelope = errors.New("malformed broker envelope")

func unmarshalEnvelope(b []byte) (envelope, error) {
	var e envelope
	if len(b) < 2 || b[0] != envelopeVersion {
		return e, errBadEnvelope
	}
	e.kind = b[1]
	b = b[2:]
	field := func() (string, bool) {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k) {
			return "", false
		}
		s := string(b[k : k+int(n)])
		b = b[k+int(n):]
		return s, true
	}
	var ok bool
	if e.origin, ok = field(); !ok {
		return e, errBadEnvelope
	}
	if e.target, ok = field(); !ok {
		return e, errBadEnvelope
	}
	e.frame = b
	return e, nil
}
