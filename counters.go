package switchboard

import (
	"sync/atomic"
	"time"
)

// counters are the hub's running totals for dashboards. They are plain
// atomics on the hot path (a broadcast adds its deliveries once, not once
// per recipient) and read only when someone asks, so a metrics library
// stays outside the root package: see Hub.Counters and Observer.
type counters struct {
	messagesIn  [len(inboundTypes)]atomic.Uint64
	deliveries  atomic.Uint64 // frames queued to connections
	bytesIn     atomic.Uint64
	bytesOut    atomic.Uint64
	drops       [len(dropReasons)]atomic.Uint64
	closes      [len(closeCodes)]atomic.Uint64
	rejections  [len(rejectReasons)]atomic.Uint64
	connsOpened atomic.Uint64
	panics      atomic.Uint64
	// connsDeflate counts handshakes that negotiated permessage-deflate;
	// deflated counts messages compressed (a broadcast once, however
	// many recipients share the compressed frame).
	connsDeflate atomic.Uint64
	deflated     atomic.Uint64
}

// The fixed label sets: metrics never carry ids, names or free text.
var (
	inboundTypes  = [...]string{"ping", "pong", "join", "leave", "publish", "send", "presence", "invalid"}
	dropReasons   = [...]string{"slow_consumer", "rate_limited", "closed", "history_gap"}
	closeCodes    = [...]int{1000, 1001, 1002, 1003, 1006, 1007, 1008, 1009, 1011, 4000, 4001, 4002, 4003, 0}
	rejectReasons = [...]string{"shutting_down", "too_many_handshakes", "bad_handshake", "origin_not_allowed",
		"unauthorized", "server_full", "too_many_connections", "internal"}
)

func indexOf[T comparable](set []T, v T, fallback int) int {
	for i, x := range set {
		if x == v {
			return i
		}
	}
	return fallback
}

func (k *counters) messageIn(typ string, n int) {
	k.messagesIn[indexOf(inboundTypes[:], typ, len(inboundTypes)-1)].Add(1)
	k.bytesIn.Add(uint64(n))
}

func (k *counters) drop(reason string) { k.drops[indexOf(dropReasons[:], reason, 2)].Add(1) }

func (k *counters) closed(code int) { k.closes[indexOf(closeCodes[:], code, len(closeCodes)-1)].Add(1) }

func (k *counters) rejected(reason string) {
	k.rejections[indexOf(rejectReasons[:], reason, len(rejectReasons)-1)].Add(1)
}

// Counters are running totals since the hub started.
type Counters struct {
	// ConnectionsOpened counts accepted handshakes.
	ConnectionsOpened uint64
	// MessagesIn counts client frames by type ("invalid" for frames that
	// did not decode).
	MessagesIn map[string]uint64
	// Deliveries counts frames queued to connections; BytesIn and BytesOut
	// count WebSocket payload and wire bytes.
	Deliveries, BytesIn, BytesOut uint64
	// Drops counts frames not delivered, by reason: slow_consumer (the
	// recipient's queue was full), rate_limited (a client frame refused),
	// closed (the recipient was closing).
	Drops map[string]uint64
	// Closes counts closed connections by close code (0: any other code).
	Closes map[int]uint64
	// HandshakeRejections counts refused handshakes by reason.
	HandshakeRejections map[string]uint64
	// Panics counts recovered panics in handlers and callbacks.
	Panics uint64
	// ConnectionsCompressed counts accepted handshakes that negotiated
	// permessage-deflate (CompressionOptions).
	ConnectionsCompressed uint64
	// MessagesCompressed counts messages the hub compressed: a broadcast
	// counts once, however many recipients share its compressed frame.
	MessagesCompressed uint64
}

// Counters returns the hub's running totals.
func (h *Hub) Counters() Counters {
	k := &h.counters
	c := Counters{
		ConnectionsOpened:   k.connsOpened.Load(),
		MessagesIn:          make(map[string]uint64, len(inboundTypes)),
		Deliveries:          k.deliveries.Load(),
		BytesIn:             k.bytesIn.Load(),
		BytesOut:            k.bytesOut.Load(),
		Drops:               make(map[string]uint64, len(dropReasons)),
		Closes:              make(map[int]uint64, len(closeCodes)),
		HandshakeRejections: make(map[string]uint64, len(rejectReasons)),
		Panics:              k.panics.Load(),

		ConnectionsCompressed: k.connsDeflate.Load(),
		MessagesCompressed:    k.deflated.Load(),
	}
	for i, t := range inboundTypes {
		c.MessagesIn[t] = k.messagesIn[i].Load()
	}
	for i, r := range dropReasons {
		c.Drops[r] = k.drops[i].Load()
	}
	for i, code := range closeCodes {
		c.Closes[code] = k.closes[i].Load()
	}
	for i, r := range rejectReasons {
		c.HandshakeRejections[r] = k.rejections[i].Load()
	}
	return c
}

// Observer receives measurements that are distributions rather than
// totals. Methods are called on the hub's goroutines and must not block.
type Observer interface {
	// PingRTT is the time from a ping to the pong that answered it.
	PingRTT(time.Duration)
	// QueueBytes samples a connection's outbound backlog, once per
	// connection per sweep.
	QueueBytes(int64)
}

// InboundTypes, DropReasons, CloseCodes and RejectReasons are the label
// values Counters uses, for exporters that declare them up front.
func InboundTypes() []string  { return append([]string(nil), inboundTypes[:]...) }
func DropReasons() []string   { return append([]string(nil), dropReasons[:]...) }
func CloseCodes() []int       { return append([]int(nil), closeCodes[:]...) }
func RejectReasons() []string { return append([]string(nil), rejectReasons[:]...) }
