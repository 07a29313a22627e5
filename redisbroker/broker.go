// Package redisbroker is a switchboard.Broker on Redis pub/sub, for running
// several Switchboard nodes as one cluster.
//
// Each node holds two connections: one pub/sub connection carrying every
// subscription (SUBSCRIBE and UNSUBSCRIBE are sent as local interest comes
// and goes) and one connection for PUBLISH. Publish never waits on the
// network: payloads go into a bounded queue that a single goroutine drains,
// pipelining whatever has queued up, so the publish order of one node is
// kept on every channel. When Redis goes away the node keeps serving its
// local connections, reconnects with backoff and jitter, and subscribes
// again to everything it is interested in. Like every switchboard broker it
// is at-most-once: what is published while Redis is unreachable is lost.
//
// It imports the root package (for Broker) and history; it must not import
// the server, metrics or another broker (internal/layers checks).
package redisbroker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/switchboardhq/switchboard"
)

// Defaults for Options.
const (
	DefaultPrefix           = "switchboard:"
	DefaultQueueSize        = 16384
	DefaultMaxBatch         = 512
	DefaultSubscribeTimeout = time.Second
	DefaultStartTimeout     = 5 * time.Second
	DefaultMinBackoff       = 100 * time.Millisecond
	DefaultMaxBackoff       = 5 * time.Second
	DefaultHealthInterval   = 5 * time.Second
	closeFlushTimeout       = 2 * time.Second
)

// Errors returned by Publish, Subscribe and Unsubscribe.
var (
	ErrQueueFull  = errors.New("redisbroker: publish queue full")
	ErrClosed     = errors.New("redisbroker: closed")
	ErrNotStarted = errors.New("redisbroker: not started")
	// ErrNotReady is returned by Publish while Redis is unreachable: the
	// message would be lost, and the caller (an API client) should know.
	ErrNotReady = fmt.Errorf("redisbroker: Redis is unreachable, not published: %w", switchboard.ErrUnavailable)
)

// Options configure a Broker. Only URL is required.
type Options struct {
	// URL is the Redis address, redis://[user:password@]host:port/db or
	// rediss:// for TLS; query parameters of redis.ParseURL apply.
	URL string
	// Prefix namespaces the Redis channels: switchboard channel "room:a"
	// is Redis channel Prefix+"room:a". Nodes of one cluster must use the
	// same prefix. Default "switchboard:".
	Prefix string
	// Logger receives connection state changes and errors. Default
	// slog.Default().
	Logger *slog.Logger
	// QueueSize bounds the publishes waiting to be sent; past it Publish
	// returns ErrQueueFull at once. Default 16384.
	QueueSize int
	// MaxBatch is the most PUBLISHes sent in one pipeline. Default 512.
	MaxBatch int
	// SubscribeTimeout is how long Subscribe waits for Redis to confirm a
	// new subscription, so that a publish made right after it is heard.
	// While Redis is unreachable Subscribe does not wait. Negative: never
	// wait. Default 1s.
	SubscribeTimeout time.Duration
	// StartTimeout is how long Start waits for the first connection. If
	// Redis cannot be reached by then Start still succeeds, logs a warning
	// and keeps trying in the background (Ready reports false). Default 5s.
	StartTimeout time.Duration
	// MinBackoff and MaxBackoff bound the wait between reconnection
	// attempts, which doubles from MinBackoff with full jitter. Defaults
	// 100ms and 5s.
	MinBackoff, MaxBackoff time.Duration
	// HealthInterval is how long the pub/sub connection may stay silent
	// before it is pinged; a ping unanswered for another interval counts
	// as a lost connection. Default 5s.
	HealthInterval time.Duration
}

// Stats are a broker's counters since New.
type Stats struct {
	Published     uint64 // payloads Redis accepted
	PublishErrors uint64 // payloads refused (queue full) or failed to send
	Delivered     uint64 // payloads received and handed to the hub
	Reconnects    uint64 // pub/sub connections re-established after a loss
	Subscriptions int    // channels this node is subscribed to (wanted)
}

type message struct {
	channel string // prefixed
	payload []byte
}

// Broker is a switchboard.Broker on Redis. Create it with New; the hub
// starts it and closes it.
type Broker struct {
	opts   Options
	log    *slog.Logger
	client *redis.Client

	queue     chan message
	stopPub   chan struct{} // closed by Close: the publisher flushes and ends
	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	startOnce sync.Once
	closeOnce sync.Once
	started   atomic.Bool
	closed    atomic.Bool
	ready     atomic.Bool
	readyCh   chan struct{} // closed when first connected

	readyOnce sync.Once
	// cmdMu serializes the sending of SUBSCRIBE and UNSUBSCRIBE.
	cmdMu sync.Mutex
	// mu guards the subscription state below and the current connection.
	mu      sync.RWMutex
	deliver func(channel string, payload []byte)
	wanted  map[string]*wantState // unprefixed channel -> state
	applied map[string]bool       // unprefixed channels subscribed on ps
	acks    map[string]int        // SUBSCRIBEs on ps not yet confirmed
	ps      *redis.PubSub         // nil while disconnected
	kick    chan struct{}         // wakes the syncer

	published, publishErrors, delivered, reconnects atomic.Uint64

	// history bounds, from BoundHistory (see history.go)
	historySize, historyTTL atomic.Int64
}

type wantState struct {
	confirmed bool
	waiters   []chan struct{}
}

// clientLog routes the Redis client library's own messages (it logs
// failed dials itself) into the broker's structured log, so that the
// process writes one JSON object per line. The library's logger is global:
// the first broker's logger serves.
type clientLog struct{ log *slog.Logger }

func (l clientLog) Printf(_ context.Context, format string, v ...any) {
	l.log.Warn("redis client", "detail", fmt.Sprintf(format, v...))
}

var clientLogOnce sync.Once

// New checks opts and prepares a Broker; nothing connects until Start.
func New(opts Options) (*Broker, error) {
	if opts.URL == "" {
		return nil, errors.New("redisbroker: URL is required")
	}
	ropts, err := redis.ParseURL(opts.URL)
	if err != nil {
		return nil, fmt.Errorf("redisbroker: %w", err)
	}
	if opts.Prefix == "" {
		opts.Prefix = DefaultPrefix
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	clientLogOnce.Do(func() { redis.SetLogger(clientLog{log: opts.Logger}) })
	if opts.QueueSize <= 0 {
		opts.QueueSize = DefaultQueueSize
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = DefaultMaxBatch
	}
	if opts.SubscribeTimeout == 0 {
		opts.SubscribeTimeout = DefaultSubscribeTimeout
	}
	if opts.StartTimeout <= 0 {
		opts.StartTimeout = DefaultStartTimeout
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = DefaultMinBackoff
	}
	if opts.MaxBackoff < opts.MinBackoff {
		opts.MaxBackoff = max(DefaultMaxBackoff, opts.MinBackoff)
	}
	if opts.HealthInterval <= 0 {
		opts.HealthInterval = DefaultHealthInterval
	}
	// A retried pipeline could publish twice; the broker is at-most-once.
	ropts.MaxRetries = -1
	if ropts.DialTimeout == 0 {
		ropts.DialTimeout = 2 * time.Second
	}
	ropts.DisableIdentity = true
	ropts.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	b := &Broker{
		opts:    opts,
		log:     opts.Logger.With("broker", "redis"),
		client:  redis.NewClient(ropts),
		queue:   make(chan message, opts.QueueSize),
		stopPub: make(chan struct{}),
		readyCh: make(chan struct{}),
		wanted:  make(map[string]*wantState),
		applied: make(map[string]bool),
		acks:    make(map[string]int),
		kick:    make(chan struct{}, 1),
	}
	b.ctx, b.cancel = context.WithCancel(context.Background())
	return b, nil
}

// Start implements switchboard.Broker: it connects and starts delivering
// subscribed channels to deliver. ctx bounds only the wait for the first
// connection; the broker runs until Close.
func (b *Broker) Start(ctx context.Context, deliver func(channel string, payload []byte)) error {
	if b.closed.Load() {
		return ErrClosed
	}
	first := false
	b.startOnce.Do(func() {
		first = true
		b.mu.Lock()
		b.deliver = deliver
		b.mu.Unlock()
		b.wg.Add(3)
		go b.publisher()
		go b.subscriber()
		go b.syncer()
		b.started.Store(true)
	})
	if !first {
		return errors.New("redisbroker: already started")
	}
	t := time.NewTimer(b.opts.StartTimeout)
	defer t.Stop()
	select {
	case <-b.readyCh:
	case <-t.C:
		b.log.Warn("Redis not reachable yet; serving locally and retrying", "timeout", b.opts.StartTimeout.String())
	case <-ctx.Done():
	}
	return nil
}

// Ready reports whether the pub/sub connection is up and subscribed.
func (b *Broker) Ready() bool { return b.ready.Load() }

// Stats returns the broker's counters.
func (b *Broker) Stats() Stats {
	b.mu.Lock()
	n := len(b.wanted)
	b.mu.Unlock()
	return Stats{
		Published:     b.published.Load(),
		PublishErrors: b.publishErrors.Load(),
		Delivered:     b.delivered.Load(),
		Reconnects:    b.reconnects.Load(),
		Subscriptions: n,
	}
}

// Publish implements switchboard.Broker. It copies payload into the
// publish queue and returns; ErrQueueFull if the queue is full.
func (b *Broker) Publish(_ context.Context, channel string, payload []byte) error {
	if b.closed.Load() {
		return ErrClosed
	}
	if !b.started.Load() {
		return ErrNotStarted
	}
	if !b.ready.Load() {
		b.publishErrors.Add(1)
		return ErrNotReady
	}
	m := message{channel: b.opts.Prefix + channel, payload: append([]byte(nil), payload...)}
	select {
	case b.queue <- m:
		return nil
	default:
		b.publishErrors.Add(1)
		return ErrQueueFull
	}
}

// publisher drains the queue, pipelining what has accumulated. It is the
// only sender, so one node's publishes keep their order.
func (b *Broker) publisher() {
	defer b.wg.Done()
	batch := make([]message, 0, b.opts.MaxBatch)
	var lastErrLog time.Time
	send := func(ctx context.Context) {
		cmds, err := b.client.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, m := range batch {
				p.Publish(ctx, m.channel, m.payload)
			}
			return nil
		})
		var failed uint64
		for _, c := range cmds {
			if c.Err() != nil {
				failed++
			}
		}
		if err != nil && len(cmds) == 0 {
			failed = uint64(len(batch))
		}
		b.published.Add(uint64(len(batch)) - failed)
		b.publishErrors.Add(failed)
		if err != nil && time.Since(lastErrLog) > 5*time.Second {
			lastErrLog = time.Now()
			b.log.Error("publish failed", "error", err, "dropped", failed)
		}
		clear(batch) // let payloads be collected
		batch = batch[:0]
	}
	fill := func() {
		for len(batch) < cap(batch) {
			select {
			case m := <-b.queue:
				batch = append(batch, m)
			default:
				return
			}
		}
	}
	for {
		select {
		case m := <-b.queue:
			batch = append(batch, m)
			fill()
			send(context.Background())
		case <-b.stopPub:
			// Send what was accepted before Close, within a bound.
			ctx, cancel := context.WithTimeout(context.Background(), closeFlushTimeout)
			defer cancel()
			for len(b.queue) > 0 && ctx.Err() == nil {
				fill()
				send(ctx)
			}
			return
		}
	}
}

// Close implements switchboard.Broker: publishes already queued are sent
// (for up to 2s), then every connection is closed and every goroutine
// ends. Calling it again does nothing.
func (b *Broker) Close() error {
	var err error
	b.closeOnce.Do(func() {
		b.closed.Store(true)
		close(b.stopPub)
		b.cancel()
		b.mu.Lock()
		ps := b.ps
		b.ps = nil
		for _, w := range b.wanted {
			w.release()
		}
		b.mu.Unlock()
		if ps != nil {
			_ = ps.Close() // unblocks the receiver
		}
		b.wg.Wait()
		b.ready.Store(false)
		err = b.client.Close()
	})
	return err
}

func (w *wantState) release() {
	for _, c := range w.waiters {
		close(c)
	}
	w.waiters = nil
}
