// Package redisbroker is a switchboard.Broker on Redis pub/sub, for running
// several Switchboard nodes as one cluster, on one Redis server or on a
// Redis Cluster (found out at Start; see topology.go).
//
// On a standalone Redis each node holds two connections: one pub/sub
// connection carrying every subscription (SUBSCRIBE and UNSUBSCRIBE are
// sent as local interest comes and goes) and one connection for PUBLISH.
// On a Redis Cluster it holds one sharded pub/sub connection per partition
// (SSUBSCRIBE, to the master owning the partition's slot) and the cluster
// client's connections for SPUBLISH. Publish never waits on the network:
// payloads go into a bounded queue that a single goroutine drains,
// pipelining whatever has queued up, so the publish order of one node is
// kept on every channel. When Redis (or one shard) goes away the node keeps
// serving its local connections, reconnects with backoff and jitter (to
// the slot's new master after a failover or a slot migration), and
// subscribes again to everything it is interested in. Like every
// switchboard broker it is at-most-once: what is published while Redis is
// unreachable is lost.
//
// It imports the root package (for Broker) and history; it must not import
// the server, metrics or another broker (internal/layers checks).
package redisbroker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboardhq/switchboard"
)

// Defaults for Options.
const (
	DefaultPrefix            = "switchboard:"
	DefaultQueueSize         = 16384
	DefaultMaxBatch          = 512
	DefaultSubscribeTimeout  = time.Second
	DefaultStartTimeout      = 5 * time.Second
	DefaultMinBackoff        = 100 * time.Millisecond
	DefaultMaxBackoff        = 5 * time.Second
	DefaultHealthInterval    = 5 * time.Second
	DefaultClusterPartitions = 16
	closeFlushTimeout        = 2 * time.Second
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
	// rediss:// for TLS; query parameters of redis.ParseURL apply. For a
	// Redis Cluster, the address of any member is enough (the client finds
	// the others); several seeds may be listed, comma-separated:
	// redis://:password@10.0.0.1:7000,10.0.0.2:7000. A cluster has only
	// database 0.
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
	// ClusterPartitions (Redis Cluster only) is how many partitions the
	// channels are spread over. Each partition's channels live on one
	// shard, and each node holds one pub/sub connection per partition. More
	// partitions spread the traffic more evenly over many shards; every
	// node of a cluster must use the same number. Default 16.
	ClusterPartitions int
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
	channel string // the Redis channel
	payload []byte
}

// Broker is a switchboard.Broker on Redis. Create it with New; the hub
// starts it and closes it.
type Broker struct {
	opts  Options
	log   *slog.Logger
	ropts *redis.Options // the first seed's
	seeds []string
	topo  atomic.Pointer[topology] // nil until Start found it

	queue     chan message
	stopPub   chan struct{} // closed by Close: the publisher flushes and ends
	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	startOnce sync.Once
	closeOnce sync.Once
	started   atomic.Bool
	closed    atomic.Bool
	// readyShards counts the shards connected with every subscription
	// confirmed; the broker is ready when all are.
	readyShards atomic.Int64
	readyCh     chan struct{} // closed when first ready
	readyOnce   sync.Once

	// mu guards what is wanted and each shard's connection state.
	mu      sync.RWMutex
	deliver func(channel string, payload []byte)
	wanted  map[string]*wantState // switchboard channel -> state

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
	ropts, seeds, err := clientOptions(opts.URL)
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
	if opts.ClusterPartitions <= 0 {
		opts.ClusterPartitions = DefaultClusterPartitions
	}
	if strings.ContainsAny(opts.Prefix, "{}") {
		// The partitions' hash tags follow the prefix; a brace in it would
		// make the prefix the tag and put every channel in one slot.
		return nil, errors.New("redisbroker: Prefix must not contain { or }")
	}
	b := &Broker{
		opts:    opts,
		log:     opts.Logger.With("broker", "redis"),
		ropts:   ropts,
		seeds:   seeds,
		queue:   make(chan message, opts.QueueSize),
		stopPub: make(chan struct{}),
		readyCh: make(chan struct{}),
		wanted:  make(map[string]*wantState),
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
		b.wg.Add(1)
		go b.run()
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

// run finds out what the URL names (retrying while Redis is unreachable),
// then starts the publisher and each shard's subscriber and syncer.
func (b *Broker) run() {
	defer b.wg.Done()
	var t *topology
	for attempt := 0; b.ctx.Err() == nil; attempt++ {
		client, cluster, err := probe(b.ctx, b.ropts, b.seeds)
		if err == nil {
			t = &topology{client: client, cluster: cluster}
			break
		}
		if b.ctx.Err() != nil {
			return
		}
		if errors.Is(err, errMisconfigured) {
			b.log.Error("cannot use this Redis; fix --redis-url", "error", err)
			return
		}
		if attempt == 0 || attempt%10 == 0 {
			b.log.Warn("cannot reach Redis; retrying", "error", err, "attempt", attempt+1)
		}
		if !b.sleep(b.backoff(attempt)) {
			return
		}
	}
	if t == nil {
		return
	}
	n := 1
	if t.cluster {
		n = b.opts.ClusterPartitions
		t.tags = partitionTags(n)
	}
	for i := range n {
		anchor := ""
		if t.cluster {
			anchor = b.opts.Prefix + t.tags[i] + anchorChannel
		}
		t.shards = append(t.shards, newShard(i, anchor))
	}
	b.mu.Lock()
	if b.closed.Load() {
		b.mu.Unlock()
		_ = t.client.Close()
		return
	}
	b.topo.Store(t)
	b.mu.Unlock()
	if t.cluster {
		b.log.Info("Redis Cluster found; using sharded pub/sub", "partitions", n)
	}
	b.wg.Add(1 + 2*n)
	go b.publisher(t)
	for _, s := range t.shards {
		go b.subscriber(t, s)
		go b.syncer(t, s)
	}
}

// anchorChannel names the channel each cluster partition subscribes first;
// no switchboard channel has this name.
const anchorChannel = "~anchor"

// Ready reports whether every pub/sub connection is up and subscribed.
func (b *Broker) Ready() bool {
	t := b.topo.Load()
	return t != nil && b.readyShards.Load() == int64(len(t.shards))
}

// Cluster reports whether the broker found a Redis Cluster (false until
// Start has reached Redis).
func (b *Broker) Cluster() bool {
	t := b.topo.Load()
	return t != nil && t.cluster
}

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
	t, s := b.shardOf(channel)
	if s == nil || !s.ready.Load() {
		b.publishErrors.Add(1)
		return ErrNotReady
	}
	m := message{channel: b.redisChannel(t, channel), payload: append([]byte(nil), payload...)}
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
func (b *Broker) publisher(t *topology) {
	defer b.wg.Done()
	batch := make([]message, 0, b.opts.MaxBatch)
	var lastErrLog time.Time
	send := func(ctx context.Context) {
		cmds, err := t.client.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, m := range batch {
				if t.cluster {
					p.SPublish(ctx, m.channel, m.payload)
				} else {
					p.Publish(ctx, m.channel, m.payload)
				}
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
		var conns []*redis.PubSub
		b.mu.Lock()
		// Read under mu: run stores the topology under it, after checking
		// closed, so either this sees it or run sees closed.
		t := b.topo.Load()
		if t != nil {
			for _, s := range t.shards {
				if s.ps != nil {
					conns = append(conns, s.ps)
					s.ps = nil
				}
			}
		}
		for _, w := range b.wanted {
			w.release()
		}
		b.mu.Unlock()
		for _, ps := range conns {
			_ = ps.Close() // unblocks the receiver
		}
		b.wg.Wait()
		if t != nil {
			for _, s := range t.shards {
				s.ready.Store(false)
			}
			b.readyShards.Store(0)
			err = t.client.Close()
		}
	})
	return err
}

func (w *wantState) release() {
	for _, c := range w.waiters {
		close(c)
	}
	w.waiters = nil
}
