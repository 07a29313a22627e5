package switchboard

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboardhq/switchboard/history"
	"github.com/switchboardhq/switchboard/internal/protocol"
	"github.com/switchboardhq/switchboard/internal/transport"
	"github.com/switchboardhq/switchboard/presence"
)

// Close codes (PROTOCOL.md, "Close codes").
const (
	CloseNormal       = 1000
	CloseGoingAway    = 1001
	ClosePolicy       = 1008
	CloseUnsupported  = 1003
	CloseTooBig       = 1009
	CloseInternal     = 1011
	ClosePingTimeout  = 4000
	CloseSlowConsumer = 4001
	CloseReplaced     = 4002
	CloseKicked       = 4003
)

// ServerUser is the from field of messages published by application code.
const ServerUser = "server"

// ErrClosed is returned by a Hub that has been shut down.
var ErrClosed = errors.New("switchboard: hub closed")

// Hub is the registry of live connections and the router between them.
// Create one with New, mount Handler, and call its methods from anywhere.
type Hub struct {
	opts     Options
	reg      *registry
	writers  *transport.WriterPool
	broker   Broker
	presence Presence
	cluster  *presence.Cluster     // the default Presence of a multi-node broker, else nil
	history  History               // nil when no stream keeps history
	reads    *history.SharedReader // reads of history bounded in time, gap fills shared
	log      *slog.Logger

	handshakes *handshakeLimiter
	total      atomic.Int64 // connections held or being accepted, for MaxConns
	draining   atomic.Bool
	msgSeq     atomic.Uint64
	msgPfx     string
	counters   counters

	closingMu sync.Mutex
	closing   map[*Conn]int64 // server-closed sockets awaiting the peer's close, -> deadline

	diffs         presence.Diffs
	segments      segmentCache // compressed presence snapshots (deflate.go)
	notifier      presence.Notifier
	lastDiffFlush int64 // sweeper only
	lastPrune     int64 // sweeper only
	lastCatchUp   int64 // sweeper only

	roomLocks stripedLocks
	userLocks stripedLocks

	// subs counts local interest per broker channel, sharded by channel so
	// that subscribing one room (a broker round trip) never waits for
	// another room's.
	subs [shardCount]subShard

	// sseSessions maps the id of each event-stream connection to its
	// session (sse.go); WebSocket connections are not in it.
	sseSessions sync.Map

	closeOnce sync.Once
	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	idle      chan struct{} // signalled when total drops to zero while draining
}

// New starts a hub. The zero Options give a working single-node hub.
func New(opts Options) (*Hub, error) {
	opts = opts.withDefaults()
	h := &Hub{
		opts:       opts,
		reg:        newRegistry(shardCount),
		writers:    transport.NewWriterPool(runtime.GOMAXPROCS(0)),
		handshakes: newHandshakeLimiter(opts.Limits.HandshakeRate, opts.Limits.HandshakeBurst),
		broker:     opts.Broker,
		log:        opts.Logger,
		msgPfx:     randomHex(4) + "-",
		closing:    make(map[*Conn]int64),
		idle:       make(chan struct{}, 1),
	}
	if h.broker == nil {
		h.broker = NewMemoryBroker()
	}
	h.presence = opts.Presence
	if h.presence == nil {
		if _, single := h.broker.(*MemoryBroker); single {
			h.presence = &localPresence{reg: h.reg}
		} else {
			h.cluster = h.newClusterPresence()
			h.presence = h.cluster
		}
	}
	if err := h.chooseHistory(); err != nil {
		return nil, err
	}
	h.ctx, h.cancel = context.WithCancel(context.Background())
	if err := h.broker.Start(h.ctx, h.deliver); err != nil {
		h.cancel()
		return nil, fmt.Errorf("start broker: %w", err)
	}
	h.notifier.Start(h.opts.OnPresence, h.log, func() { h.counters.panics.Add(1) })
	// Presence starts before its channel is subscribed: it must be ready
	// for the first message.
	if err := h.presence.Start(h.ctx, h.presenceChange); err != nil {
		h.cancel()
		_ = h.broker.Close()
		h.notifier.Stop()
		return nil, fmt.Errorf("start presence: %w", err)
	}
	channels := []string{channelAll}
	if h.cluster != nil {
		channels = append(channels, channelPresence)
	}
	for _, ch := range channels {
		if err := h.broker.Subscribe(h.ctx, ch); err != nil {
			h.cancel()
			_ = h.presence.Close()
			_ = h.broker.Close()
			h.notifier.Stop()
			return nil, fmt.Errorf("subscribe %s: %w", ch, err)
		}
	}
	h.wg.Add(1)
	go h.sweep()
	return h, nil
}

// NodeID is this node's name.
func (h *Hub) NodeID() string { return h.opts.NodeID }

// Count returns the number of open connections on this node.
func (h *Hub) Count() int {
	return h.reg.connCount()
}

// Stats are this node's counts.
type Stats struct {
	Connections int `json:"connections"`
	Users       int `json:"users"`
	Rooms       int `json:"rooms"`
}

// Stats returns this node's connection, user and room counts.
func (h *Hub) Stats() Stats {
	c, u, r := h.reg.counts()
	return Stats{Connections: c, Users: u, Rooms: r}
}

// OnlineUsers returns the sorted ids of users with a connection, across
// the cluster when Presence is cluster-wide.
func (h *Hub) OnlineUsers(ctx context.Context) ([]string, error) {
	return h.presence.OnlineUsers(ctx)
}

// RoomUsers returns the sorted ids of users in room.
func (h *Hub) RoomUsers(ctx context.Context, room string) ([]string, error) {
	return h.presence.RoomUsers(ctx, room)
}

// UserConns returns the user's connections on this node, oldest first.
func (h *Hub) UserConns(user string) []*Conn { return h.reg.userConns(user) }

// UserConnCount returns how many connections user has on every node, as
// this node knows it (other nodes' counts are as fresh as the broker
// carries them; see Limits.MaxConnsPerUser).
func (h *Hub) UserConnCount(user string) int {
	n, _ := h.reg.userConnStats(user)
	if h.cluster != nil {
		elsewhere, _, _ := h.cluster.UserConnsElsewhere(user)
		n += elsewhere
	}
	return n
}

// Published identifies a message handed to the cluster.
type Published struct {
	ID string
	// Offset and Epoch place the message in its stream's history; Offset
	// is 0 when the room (or user) keeps none.
	Offset uint64
	Epoch  string
}

// Publish sends data (raw JSON) to every connection in room, on all nodes,
// as a message from "server". In a room that keeps history the message is
// kept first and gets an offset.
func (h *Hub) Publish(ctx context.Context, room string, data json.RawMessage) (Published, error) {
	if msg := protocol.ValidateRoom(room); msg != "" {
		return Published{}, fmt.Errorf("publish: %s", msg)
	}
	return h.publish(ctx, kindRoomMessage, "", room, ServerUser, data)
}

// SendToUser sends data to every connection of user, on all nodes (kept
// when HistoryOptions.Users is set).
func (h *Hub) SendToUser(ctx context.Context, user string, data json.RawMessage) (Published, error) {
	if user == "" {
		return Published{}, errors.New("send: empty user id")
	}
	return h.publish(ctx, kindUserMessage, "", user, ServerUser, data)
}

// Broadcast sends data to every connection on every node. The message
// carries "broadcast": true instead of a room or a recipient; it is never
// kept.
func (h *Hub) Broadcast(ctx context.Context, data json.RawMessage) (string, error) {
	p, err := h.publish(ctx, kindBroadcast, "", "", ServerUser, data)
	return p.ID, err
}

// Disconnect closes every connection of user on all nodes with 4003 kicked.
func (h *Hub) Disconnect(ctx context.Context, user string) error {
	env := envelope{kind: kindKick, target: user}
	if err := h.broker.Publish(ctx, channelAll, env.marshal()); err != nil {
		return fmt.Errorf("disconnect %s: %w", user, err)
	}
	return nil
}

func (h *Hub) nextMessageID() string {
	return h.msgPfx + strconv.FormatUint(h.msgSeq.Add(1), 36)
}

// publish encodes the message once and hands it to the broker.
func (h *Hub) publish(ctx context.Context, kind byte, origin, target, from string, data json.RawMessage) (Published, error) {
	if h.ctx.Err() != nil {
		return Published{}, ErrClosed
	}
	if len(data) == 0 {
		data = json.RawMessage("null")
	} else if !json.Valid(data) {
		return Published{}, errors.New("data is not valid JSON")
	}
	m := protocol.Message{From: from, Data: data, ID: h.nextMessageID(), TS: time.Now().UnixMilli()}
	channel := channelAll
	switch kind {
	case kindRoomMessage:
		m.Room, channel = target, roomChannelPfx+target
	case kindUserMessage:
		m.To, channel = target, userChannelPfx+target
	}
	stream := ""
	switch kind {
	case kindRoomMessage:
		stream = h.roomStream(target)
	case kindUserMessage:
		stream = h.userStream(target)
	}
	if stream != "" {
		head, tail := protocol.AppendMessageAround(&m)
		env := envelope{kind: kindKept, origin: origin, target: stream, frame: head}
		offset, epoch, err := h.history.Append(ctx, stream, channel, env.marshal(), tail)
		if err != nil {
			return Published{}, fmt.Errorf("publish to history: %w", err)
		}
		return Published{ID: m.ID, Offset: offset, Epoch: epoch}, nil
	}
	var frame []byte
	if kind == kindBroadcast {
		frame = appendBroadcast(nil, &m)
	} else {
		frame = protocol.AppendMessage(make([]byte, 0, 96+len(data)), &m)
	}
	env := envelope{kind: kind, origin: origin, target: target, frame: frame}
	if err := h.broker.Publish(ctx, channel, env.marshal()); err != nil {
		return Published{}, fmt.Errorf("publish: %w", err)
	}
	return Published{ID: m.ID}, nil
}

func appendBroadcast(dst []byte, m *protocol.Message) []byte {
	dst = append(dst, `{"type":"message","broadcast":true,"from":`...)
	dst = protocol.AppendString(dst, m.From)
	dst = append(dst, `,"data":`...)
	dst = append(dst, m.Data...)
	dst = append(dst, `,"id":`...)
	dst = protocol.AppendString(dst, m.ID)
	dst = append(dst, `,"ts":`...)
	dst = strconv.AppendInt(dst, m.TS, 10)
	return append(dst, '}')
}

// deliver fans out one broker payload to this node's connections. The
// WebSocket frame is built once and shared by every recipient.
func (h *Hub) deliver(_ string, payload []byte) {
	env, err := unmarshalEnvelope(payload)
	if err != nil {
		h.log.Warn("broker payload dropped", "error", err, "bytes", len(payload))
		return
	}
	if env.kind == kindPresence {
		if h.cluster != nil {
			h.cluster.Receive(env.frame)
		}
		return
	}
	if env.kind == kindKick {
		for _, c := range h.reg.userConns(env.target) {
			h.closeConn(c, CloseKicked, "kicked")
		}
		return
	}
	if env.kind == kindKept {
		h.deliverKept(&env)
		return
	}
	if env.kind == kindSSERequest {
		h.sseForwarded(&env)
		return
	}
	if env.kind == kindNodeMessage { // see nodemsg.go
		h.deliverNodeMessage(&env)
		return
	}
	text := newSharedText(env.frame)
	var n uint64 // deliveries, added once: no shared counter per recipient
	switch env.kind {
	case kindRoomMessage:
		h.reg.eachMember(env.target, func(c *Conn, echo bool) {
			if c.id == env.origin && !echo {
				return
			}
			if c.enqueue(text.frameFor(c)) {
				n++
			}
		})
	case kindUserMessage:
		for _, c := range h.reg.userConns(env.target) {
			if c.enqueue(text.frameFor(c)) {
				n++
			}
		}
	case kindBroadcast:
		h.reg.eachConn(func(c *Conn) {
			if c.enqueue(text.frameFor(c)) {
				n++
			}
		})
	}
	h.counters.deliveries.Add(n)
}

// interest counts local reasons to hear a broker channel and subscribes or
// unsubscribes on the first and last.
func (h *Hub) interest(channel string, delta int) {
	// The broker calls stay under the shard's lock: otherwise a 1->0 and a
	// 0->1 racing could reach the broker as Subscribe then Unsubscribe.
	sh := &h.subs[hashKey(channel)%shardCount]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.n == nil {
		sh.n = make(map[string]int)
	}
	before := sh.n[channel]
	n := before + delta
	if n <= 0 {
		delete(sh.n, channel)
	} else {
		sh.n[channel] = n
	}
	var err error
	switch {
	case before <= 0 && n > 0:
		err = h.broker.Subscribe(h.ctx, channel)
	case before > 0 && n <= 0:
		err = h.broker.Unsubscribe(h.ctx, channel)
	}
	if err != nil {
		h.log.Error("broker subscription failed", "error", err)
	}
}

type subShard struct {
	mu sync.Mutex
	n  map[string]int
}

// interestCount is the number of channels with local interest (tests).
func (h *Hub) interestCount() int {
	total := 0
	for i := range h.subs {
		h.subs[i].mu.Lock()
		total += len(h.subs[i].n)
		h.subs[i].mu.Unlock()
	}
	return total
}

// announce tells a room's members that a user arrived or left.
// announceLocal sends a presence frame to this node's members of room,
// except the connections of user (the one who joined: its ack already says
// who is there). Every node announces the cluster-wide transitions its
// Presence reports to its own members, so nothing goes through the broker.
func (h *Hub) announceLocal(room, user string, payload []byte) {
	text := newSharedText(payload)
	var n uint64
	h.reg.eachMember(room, func(c *Conn, _ bool) {
		if c.user != user && c.enqueue(text.frameFor(c)) {
			n++
		}
	})
	h.counters.deliveries.Add(n)
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err))
	}
	return hex.EncodeToString(b)
}
