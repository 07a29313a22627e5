// Package natsbroker is a switchboard.Broker on NATS core subjects, for
// running several Switchboard nodes as one cluster.
//
// Each switchboard channel is one subject, Prefix followed by the channel
// escaped into a single NATS token (see Subject), and each node holds one
// subscription per channel it has local interest in. All subscriptions feed
// one buffered Go channel read by one goroutine, so a node costs a constant
// number of goroutines whatever its number of rooms and users, and payloads
// of one channel are delivered in publish order. Publishing uses nats.go's
// buffered writer; reconnection, and the re-creation of subscriptions after
// it, are nats.go's. Like every switchboard broker it is at-most-once.
//
// The broker is also a switchboard.History, on JetStream (see Append): the
// rooms that keep history need a NATS server with JetStream enabled.
//
// It imports the root package (for Broker) and history; it must not import
// the server, metrics or another broker (internal/layers checks).
package natsbroker

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/switchboardhq/switchboard"
)

// Defaults for Options.
const (
	DefaultPrefix           = "switchboard."
	DefaultDeliverBuffer    = 65536
	DefaultSubscribeTimeout = time.Second
	DefaultStartTimeout     = 5 * time.Second
	DefaultReconnectWait    = 250 * time.Millisecond
	DefaultReconnectJitter  = 500 * time.Millisecond
	DefaultReconnectBuffer  = 8 << 20
	DefaultPingInterval     = 5 * time.Second
	closeFlushTimeout       = 2 * time.Second
	// MaxHistoryReplicas is JetStream's limit on a stream's replicas.
	MaxHistoryReplicas = 5
)

// Errors returned by the broker.
var (
	ErrClosed     = errors.New("natsbroker: closed")
	ErrNotStarted = errors.New("natsbroker: not started")
	// ErrNotReady is returned by Publish while NATS is unreachable: rather
	// than buffer the message for a reconnection that may never come, the
	// caller (an API client) is told it was not published.
	ErrNotReady = fmt.Errorf("natsbroker: NATS is unreachable, not published: %w", switchboard.ErrUnavailable)
)

// Options configure a Broker. Only URL is required.
type Options struct {
	// URL is the NATS server, or a comma-separated list of the servers
	// of a NATS cluster: nats://[user:password@]host:4222 (also tls://,
	// ws://, wss://; without a scheme, nats://). Each URL may carry its
	// own credentials. The connection goes to one of them, picked at
	// random unless NATSOptions has nats.DontRandomize, and moves to
	// another when its server goes away; servers the cluster announces
	// are added to the list. Errors and logs never show the URLs.
	URL string
	// Prefix is prepended to every subject; nodes of one cluster must use
	// the same. It must be a valid subject prefix ending in "." (a run of
	// tokens) or empty-token-free text such as "sb_". Default
	// "switchboard.".
	Prefix string
	// Name is the connection name shown by the NATS server. Optional.
	Name   string
	Logger *slog.Logger
	// DeliverBuffer is how many received payloads may wait for the hub;
	// past it NATS drops them (slow consumer). Default 65536.
	DeliverBuffer int
	// SubscribeTimeout is how long Subscribe waits for the server to
	// acknowledge a new subscription (a PING round trip), so that other
	// nodes' publishes made right after it are heard. This node's own
	// publishes are heard without waiting. Negative: never wait. Default 1s.
	SubscribeTimeout time.Duration
	// StartTimeout is how long Start waits for the first connection; past
	// it Start succeeds anyway, logs a warning and nats.go keeps trying
	// (Ready reports false). Default 5s.
	StartTimeout time.Duration
	// ReconnectWait and ReconnectJitter set the pause between reconnection
	// attempts: ReconnectWait plus a random part up to ReconnectJitter.
	// Defaults 250ms and 500ms. Attempts never stop.
	ReconnectWait, ReconnectJitter time.Duration
	// ReconnectBuffer bounds the bytes of publishes kept while
	// disconnected; past it Publish fails. Default 8 MiB.
	ReconnectBuffer int
	// PingInterval is how often the connection is probed. A server that
	// dies without closing its sockets (a crashed host, a cut network) is
	// noticed after two unanswered pings, within 2 to 3 intervals, and
	// the broker moves to another server. Default 5s (nats.go's own is
	// 2m, which would leave a node deaf for minutes).
	PingInterval time.Duration
	// NATSOptions are applied after the broker's own (credentials, TLS...).
	NATSOptions []nats.Option

	// History (see Append) needs JetStream. HistoryStream names the
	// JetStream stream that keeps it; default "sb-history-" followed by
	// Prefix escaped as a token (EncodeToken), so that clusters with
	// different prefixes never share one.
	HistoryStream string
	// HistoryMemory keeps history in memory instead of files. Files are
	// the default because history exists to bridge disruptions, a NATS
	// restart among them; the file store does not sync each message, so
	// it costs little more.
	HistoryMemory bool
	// HistoryReplicas is how many servers of a JetStream cluster keep
	// each history message: 1 to MaxHistoryReplicas, default 1; 3 in a
	// cluster of 3 or more. With R replicas history survives the loss of
	// (R-1)/2 servers. More than 1 needs a clustered JetStream with at
	// least that many servers. A stream kept with another count is
	// changed to this one when the broker makes sure of it (at Start, and
	// after it was lost): nodes sharing a stream should agree.
	HistoryReplicas int
}

// Stats are a broker's counters since New.
type Stats struct {
	Published     uint64 // payloads handed to the NATS connection
	PublishErrors uint64 // payloads refused by it
	Delivered     uint64 // payloads handed to the hub
	Dropped       uint64 // payloads NATS dropped because the hub fell behind
	Reconnects    uint64 // connections re-established after a loss
	Subscriptions int    // channels this node is subscribed to
}

// Broker is a switchboard.Broker on NATS. Create it with New; the hub
// starts it and closes it.
type Broker struct {
	opts Options
	log  *slog.Logger

	mu      sync.Mutex
	nc      *nats.Conn
	subs    map[string]*nats.Subscription // channel -> subscription
	deliver func(channel string, payload []byte)

	msgs      chan *nats.Msg
	done      chan struct{}
	wg        sync.WaitGroup
	started   atomic.Bool
	closed    atomic.Bool
	ready     atomic.Bool
	closeOnce sync.Once

	published, publishErrors, delivered, dropped, reconnects atomic.Uint64

	hist histState
	idem idemBucket // Idempotency-Keys, see idempotency.go
}

// New checks opts and prepares a Broker; nothing connects until Start.
func New(opts Options) (*Broker, error) {
	if err := checkURLs(opts.URL); err != nil {
		return nil, err
	}
	if opts.Prefix == "" {
		opts.Prefix = DefaultPrefix
	}
	if !validSubject(opts.Prefix + "x") {
		return nil, fmt.Errorf("natsbroker: prefix %q does not make valid subjects (use tokens of letters, digits, - and _, ending in \".\")", opts.Prefix)
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.DeliverBuffer <= 0 {
		opts.DeliverBuffer = DefaultDeliverBuffer
	}
	if opts.SubscribeTimeout == 0 {
		opts.SubscribeTimeout = DefaultSubscribeTimeout
	}
	if opts.StartTimeout <= 0 {
		opts.StartTimeout = DefaultStartTimeout
	}
	if opts.ReconnectWait <= 0 {
		opts.ReconnectWait = DefaultReconnectWait
	}
	if opts.ReconnectJitter <= 0 {
		opts.ReconnectJitter = DefaultReconnectJitter
	}
	if opts.ReconnectBuffer <= 0 {
		opts.ReconnectBuffer = DefaultReconnectBuffer
	}
	if opts.PingInterval <= 0 {
		opts.PingInterval = DefaultPingInterval
	}
	if opts.HistoryStream == "" {
		opts.HistoryStream = "sb-history-" + EncodeToken(opts.Prefix)
	}
	if strings.ContainsAny(opts.HistoryStream, ".*>/\\ \t\r\n") {
		return nil, fmt.Errorf("natsbroker: history stream name %q is not a valid JetStream stream name", opts.HistoryStream)
	}
	if opts.HistoryReplicas <= 0 {
		opts.HistoryReplicas = 1
	}
	if opts.HistoryReplicas > MaxHistoryReplicas {
		return nil, fmt.Errorf("natsbroker: history replicas %d: JetStream keeps at most %d copies of a stream (use 3 in a cluster of 3 or more servers)", opts.HistoryReplicas, MaxHistoryReplicas)
	}
	return &Broker{
		opts: opts,
		log:  opts.Logger.With("broker", "nats"),
		subs: make(map[string]*nats.Subscription),
		msgs: make(chan *nats.Msg, opts.DeliverBuffer),
		done: make(chan struct{}),
		hist: histState{seed: maphash.MakeSeed()},
	}, nil
}

// checkURLs parses the server list as nats.go will, so that a bad URL is
// reported here: nats.go's own parse errors quote the URL, password
// included. Servers are named by position only.
func checkURLs(list string) error {
	var n int
	for i, raw := range strings.Split(list, ",") {
		raw = strings.TrimSpace(raw)
		if raw == "" {
			continue // nats.go skips empty entries too
		}
		n++
		if !strings.Contains(raw, "://") {
			raw = "nats://" + raw
		}
		u, err := url.Parse(raw)
		if err != nil || u.Host == "" {
			return fmt.Errorf("natsbroker: server %d of the URL list is not a URL such as nats://[user:password@]host:4222 (not shown: it may hold a password)", i+1)
		}
		switch u.Scheme {
		case "nats", "tls", "ws", "wss":
		default:
			return fmt.Errorf("natsbroker: server %d of the URL list has scheme %q; use nats://, tls://, ws:// or wss://", i+1, u.Scheme)
		}
	}
	if n == 0 {
		return errors.New("natsbroker: URL is required")
	}
	return nil
}

// Start implements switchboard.Broker: it connects and starts delivering.
// ctx bounds only the wait for the first connection.
func (b *Broker) Start(ctx context.Context, deliver func(channel string, payload []byte)) error {
	if b.closed.Load() {
		return ErrClosed
	}
	if b.started.Load() {
		return errors.New("natsbroker: already started")
	}
	connected := make(chan struct{})
	var once sync.Once
	opts := []nats.Option{
		nats.Name(b.opts.Name),
		nats.MaxReconnects(-1),
		nats.RetryOnFailedConnect(true),
		nats.ReconnectWait(b.opts.ReconnectWait),
		nats.ReconnectJitter(b.opts.ReconnectJitter, b.opts.ReconnectJitter),
		nats.ReconnectBufSize(b.opts.ReconnectBuffer),
		nats.PingInterval(b.opts.PingInterval),
		nats.MaxPingsOutstanding(2),
		nats.ConnectHandler(func(nc *nats.Conn) {
			b.ready.Store(true)
			once.Do(func() { close(connected) })
			b.log.Info("connected to NATS", serverAttrs(nc)...)
		}),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			b.ready.Store(false)
			if !b.closed.Load() {
				b.log.Warn("lost the NATS connection; reconnecting", "error", err)
			}
		}),
		// nats.go has re-sent every subscription before it calls this.
		nats.ReconnectHandler(func(nc *nats.Conn) {
			b.reconnects.Add(1)
			b.ready.Store(true)
			b.log.Info("reconnected to NATS", serverAttrs(nc)...)
		}),
		nats.DiscoveredServersHandler(func(nc *nats.Conn) {
			b.log.Debug("NATS cluster announced servers", "servers", len(nc.Servers()))
		}),
		nats.ClosedHandler(func(*nats.Conn) { b.ready.Store(false) }),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			if errors.Is(err, nats.ErrSlowConsumer) {
				b.log.Warn("delivery fell behind; NATS dropped payloads", "subject", subject(sub))
				return
			}
			b.log.Error("NATS error", "error", err, "subject", subject(sub))
		}),
	}
	nc, err := nats.Connect(b.opts.URL, append(opts, b.opts.NATSOptions...)...)
	if err != nil {
		if errors.As(err, new(*url.Error)) { // it quotes the URL
			return errors.New("natsbroker: invalid server URL (not shown: it may hold a password)")
		}
		return fmt.Errorf("natsbroker: %w", err)
	}
	if nc.IsConnected() { // without waiting for the handler, which runs on nats.go's callback goroutine
		b.ready.Store(true)
		once.Do(func() { close(connected) })
	}
	b.mu.Lock()
	b.nc, b.deliver = nc, deliver
	b.mu.Unlock()
	b.started.Store(true)
	b.wg.Add(1)
	go b.run(deliver)

	t := time.NewTimer(b.opts.StartTimeout)
	defer t.Stop()
	select {
	case <-connected:
	case <-t.C:
		b.log.Warn("NATS not reachable yet; serving locally and retrying", "timeout", b.opts.StartTimeout.String())
	case <-ctx.Done():
	}
	b.startHistory(ctx, nc)
	return nil
}

// serverAttrs name the server nc is connected to, without the URL it was
// reached by: that may carry a password, or a token as its user name,
// which nats.go's redaction leaves in place.
func serverAttrs(nc *nats.Conn) []any {
	return []any{"server", nc.ConnectedServerName(), "addr", nc.ConnectedAddr(), "cluster", nc.ConnectedClusterName()}
}

func subject(sub *nats.Subscription) string {
	if sub == nil {
		return ""
	}
	return sub.Subject
}

// run hands received payloads to the hub, one at a time, in arrival order.
func (b *Broker) run(deliver func(string, []byte)) {
	defer b.wg.Done()
	for {
		select {
		case <-b.done:
			return
		case m := <-b.msgs:
			ch, ok := b.channelOf(m.Subject)
			if !ok {
				continue
			}
			b.mu.Lock()
			sub := b.subs[ch]
			b.mu.Unlock()
			if sub != m.Sub { // unsubscribed since, or subscribed anew
				continue
			}
			b.delivered.Add(1)
			deliver(ch, m.Data)
		}
	}
}

// Ready reports whether the connection to NATS is up.
func (b *Broker) Ready() bool { return b.ready.Load() }

// Stats returns the broker's counters.
func (b *Broker) Stats() Stats {
	b.mu.Lock()
	n := len(b.subs)
	var dropped uint64
	for _, s := range b.subs {
		if d, err := s.Dropped(); err == nil {
			dropped += uint64(d)
		}
	}
	b.mu.Unlock()
	return Stats{
		Published:     b.published.Load(),
		PublishErrors: b.publishErrors.Load(),
		Delivered:     b.delivered.Load(),
		Dropped:       b.dropped.Load() + dropped,
		Reconnects:    b.reconnects.Load(),
		Subscriptions: n,
	}
}

func (b *Broker) conn() (*nats.Conn, error) {
	if b.closed.Load() {
		return nil, ErrClosed
	}
	b.mu.Lock()
	nc := b.nc
	b.mu.Unlock()
	if nc == nil {
		return nil, ErrNotStarted
	}
	return nc, nil
}

// Publish implements switchboard.Broker. nats.go copies payload into its
// write buffer (or, while reconnecting, its reconnect buffer) and sends it
// from its own goroutine: Publish does not wait on the network.
func (b *Broker) Publish(_ context.Context, channel string, payload []byte) error {
	nc, err := b.conn()
	if err != nil {
		return err
	}
	if !nc.IsConnected() {
		b.publishErrors.Add(1)
		return ErrNotReady
	}
	if err := nc.Publish(b.Subject(channel), payload); err != nil {
		b.publishErrors.Add(1)
		return fmt.Errorf("natsbroker: publish: %w", err)
	}
	b.published.Add(1)
	return nil
}

// Flush waits until the server has processed everything published so far.
func (b *Broker) Flush(ctx context.Context) error {
	nc, err := b.conn()
	if err != nil {
		return err
	}
	return nc.FlushWithContext(ctx)
}

// Subscribe implements switchboard.Broker. This node hears its own
// publishes made after Subscribe returns (one connection keeps the order of
// SUB and PUB); to make sure other nodes' publishes are heard too, it waits
// up to SubscribeTimeout for the server's acknowledgement while connected.
func (b *Broker) Subscribe(ctx context.Context, channel string) error {
	nc, err := b.conn()
	if err != nil {
		return err
	}
	b.mu.Lock()
	if b.subs[channel] != nil {
		b.mu.Unlock()
		return nil
	}
	sub, err := nc.ChanSubscribe(b.Subject(channel), b.msgs)
	if err != nil {
		b.mu.Unlock()
		return fmt.Errorf("natsbroker: subscribe %q: %w", channel, err)
	}
	b.subs[channel] = sub
	b.mu.Unlock()
	if b.opts.SubscribeTimeout < 0 || !nc.IsConnected() {
		return nil
	}
	fctx, cancel := context.WithTimeout(ctx, b.opts.SubscribeTimeout)
	defer cancel()
	if err := nc.FlushWithContext(fctx); err != nil && !b.closed.Load() {
		b.log.Warn("subscription not acknowledged in time; it stays in place", "channel", channel, "error", err)
	}
	return nil
}

// Unsubscribe implements switchboard.Broker. Payloads of the channel stop
// being delivered at once.
func (b *Broker) Unsubscribe(_ context.Context, channel string) error {
	b.mu.Lock()
	sub := b.subs[channel]
	delete(b.subs, channel)
	b.mu.Unlock()
	if sub == nil {
		return nil
	}
	if d, err := sub.Dropped(); err == nil {
		b.dropped.Add(uint64(d))
	}
	if err := sub.Unsubscribe(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
		return fmt.Errorf("natsbroker: unsubscribe %q: %w", channel, err)
	}
	return nil
}

// Close implements switchboard.Broker: what was published is flushed (for
// up to 2s), then the connection is closed and every goroutine ends.
func (b *Broker) Close() error {
	b.closeOnce.Do(func() {
		b.closed.Store(true)
		b.mu.Lock()
		nc := b.nc
		b.mu.Unlock()
		if nc != nil {
			if nc.IsConnected() {
				_ = nc.FlushTimeout(closeFlushTimeout)
			}
			nc.Close()
		}
		close(b.done)
		b.wg.Wait()
		b.ready.Store(false)
	})
	return nil
}
