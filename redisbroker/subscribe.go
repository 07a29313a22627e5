package redisbroker

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// shard is one pub/sub connection and what it is subscribed to: the only
// one of a standalone broker, or one partition's in a cluster.
//
// Lock order: shard.cmdMu, then Broker.mu.
type shard struct {
	index int
	// anchor (cluster only) is a channel of the partition, subscribed
	// first: it makes the client open the connection to the master that
	// owns the partition's slot.
	anchor string
	kick   chan struct{} // wakes the shard's syncer
	// master (cluster only) is the node id of the master the last
	// connection reached; only the subscriber touches it.
	master string
	// cmdMu serializes the sending of (S)SUBSCRIBE and (S)UNSUBSCRIBE.
	cmdMu sync.Mutex
	ready atomic.Bool // connected, and every subscription confirmed

	// Guarded by Broker.mu.
	ps      *redis.PubSub       // nil while disconnected
	applied map[string]bool     // channels subscribed on ps
	acks    map[string]int      // SUBSCRIBEs on ps not yet confirmed
	unacks  map[string]int      // UNSUBSCRIBEs on ps not yet confirmed
	dirty   map[string]struct{} // channels whose wanted state changed
}

func newShard(index int, anchor string) *shard {
	return &shard{index: index, anchor: anchor, kick: make(chan struct{}, 1),
		applied: make(map[string]bool), acks: make(map[string]int),
		unacks: make(map[string]int), dirty: make(map[string]struct{})}
}

// errSlotMoved ends a shard's connection when the cluster moved its slot
// (Redis unsubscribed the connection by itself): the reconnection reaches
// the slot's new owner.
var errSlotMoved = errors.New("the partition's slot moved to another shard")

// shardOf is the shard that carries channel; nil before Start found the
// topology. b.mu need not be held.
func (b *Broker) shardOf(ch string) (*topology, *shard) {
	t := b.topo.Load()
	if t == nil {
		return nil, nil
	}
	return t, t.shards[partitionOf(ch, len(t.shards))]
}

// Subscribe implements switchboard.Broker. The subscription is recorded at
// once and sent by a background goroutine; while Redis is reachable,
// Subscribe waits (up to SubscribeTimeout) for Redis to confirm it, so that
// this node hears a publish made right after Subscribe returns. While Redis
// is unreachable it returns at once and the subscription is made on
// reconnection.
func (b *Broker) Subscribe(ctx context.Context, channel string) error {
	if b.closed.Load() {
		return ErrClosed
	}
	_, s := b.shardOf(channel)
	b.mu.Lock()
	w := b.wanted[channel]
	if w == nil {
		w = &wantState{}
		b.wanted[channel] = w
		if s != nil {
			// Wanted again before the syncer sent its UNSUBSCRIBE: the
			// connection still holds the confirmed subscription, and no
			// new SUBSCRIBE (so no new confirmation) will be sent for it.
			w.confirmed = s.ps != nil && s.applied[channel] && s.acks[channel] == 0
			s.touch(channel)
		}
	}
	if w.confirmed || s == nil || s.ps == nil || b.opts.SubscribeTimeout < 0 {
		b.mu.Unlock()
		return nil
	}
	done := make(chan struct{})
	w.waiters = append(w.waiters, done)
	b.mu.Unlock()
	t := time.NewTimer(b.opts.SubscribeTimeout)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		b.log.Warn("subscription not confirmed in time; it stays pending", "channel", channel)
	case <-ctx.Done():
	case <-b.ctx.Done():
	}
	return nil
}

// Unsubscribe implements switchboard.Broker. Payloads of the channel stop
// being delivered at once; the UNSUBSCRIBE is sent in the background.
func (b *Broker) Unsubscribe(_ context.Context, channel string) error {
	_, s := b.shardOf(channel)
	b.mu.Lock()
	if w := b.wanted[channel]; w != nil {
		w.release()
		delete(b.wanted, channel)
		if s != nil {
			s.touch(channel)
		}
	}
	b.mu.Unlock()
	return nil
}

// touch marks ch for the syncer and wakes it; Broker.mu is held.
func (s *shard) touch(ch string) {
	s.dirty[ch] = struct{}{}
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// syncer sends (S)SUBSCRIBE and (S)UNSUBSCRIBE so that what s's connection
// is subscribed to follows what is wanted, batching changes that pile up.
func (b *Broker) syncer(t *topology, s *shard) {
	defer b.wg.Done()
	for {
		select {
		case <-b.ctx.Done():
			return
		case <-s.kick:
		}
		s.cmdMu.Lock()
		b.mu.Lock()
		ps := s.ps
		var sub, unsub []string
		if ps != nil {
			for ch := range s.dirty {
				switch wanted := b.wanted[ch] != nil; {
				case wanted && !s.applied[ch]:
					s.applied[ch] = true
					s.acks[ch]++
					sub = append(sub, b.redisChannel(t, ch))
				case !wanted && s.applied[ch]:
					delete(s.applied, ch)
					s.unacks[ch]++
					unsub = append(unsub, b.redisChannel(t, ch))
				}
			}
		}
		// Without a connection, the next connect subscribes to all.
		clear(s.dirty)
		b.mu.Unlock()
		var err error
		if len(sub) > 0 {
			err = subscribe(t, ps, sub)
		}
		if len(unsub) > 0 && err == nil {
			if t.cluster {
				err = ps.SUnsubscribe(b.ctx, unsub...)
			} else {
				err = ps.Unsubscribe(b.ctx, unsub...)
			}
		}
		s.cmdMu.Unlock()
		if err != nil && b.ctx.Err() == nil {
			// The receiver sees the broken connection and reconnects; the
			// resubscription then covers these channels.
			b.log.Warn("subscription update failed", "error", err, "partition", s.index)
		}
	}
}

func subscribe(t *topology, ps *redis.PubSub, chans []string) error {
	if t.cluster {
		return ps.SSubscribe(context.Background(), chans...)
	}
	return ps.Subscribe(context.Background(), chans...)
}

// subscriber keeps s's pub/sub connection up and reads from it.
func (b *Broker) subscriber(t *topology, s *shard) {
	defer b.wg.Done()
	attempt := 0
	lost := false
	for b.ctx.Err() == nil {
		ps, err := b.connect(t, s)
		if err != nil {
			if b.ctx.Err() != nil {
				return
			}
			if attempt == 0 || attempt%10 == 0 {
				b.log.Warn("cannot reach Redis; retrying", "error", err, "attempt", attempt+1, "partition", s.index)
			}
			b.reloadSlots(t)
			if !b.sleep(b.backoff(attempt)) {
				return
			}
			attempt++
			continue
		}
		if lost {
			b.reconnects.Add(1)
			b.log.Info("reconnected to Redis", "after_attempts", attempt, "partition", s.index)
		}
		attempt = 0
		err = b.receive(t, s, ps)
		b.drop(t, s, ps)
		if b.ctx.Err() != nil {
			return
		}
		lost = true
		b.log.Warn("lost the Redis pub/sub connection", "error", err, "partition", s.index)
		b.reloadSlots(t)
	}
}

// reloadSlots asks a cluster client to fetch the slot map again, so that
// the next connection goes to the slot's current master (after a failover
// or a migration).
func (b *Broker) reloadSlots(t *topology) {
	if cc, ok := t.client.(*redis.ClusterClient); ok {
		cc.ReloadState(b.ctx)
	}
}

// connect dials s's pub/sub connection and subscribes it to every wanted
// channel of its partition.
func (b *Broker) connect(t *topology, s *shard) (*redis.PubSub, error) {
	var ps *redis.PubSub
	if cc, ok := t.client.(*redis.ClusterClient); ok {
		ps = cc.SSubscribe(b.ctx)
		if err := ps.SSubscribe(b.ctx, s.anchor); err != nil { // dials the slot's master
			_ = ps.Close()
			return nil, err
		}
		if err := b.followMaster(t, cc, s); err != nil {
			_ = ps.Close()
			return nil, err
		}
	} else {
		ps = t.client.Subscribe(b.ctx)
		if err := ps.Ping(b.ctx); err != nil { // dials
			_ = ps.Close()
			return nil, err
		}
	}
	s.cmdMu.Lock()
	defer s.cmdMu.Unlock()
	b.mu.Lock()
	if b.closed.Load() {
		b.mu.Unlock()
		_ = ps.Close()
		return nil, ErrClosed
	}
	clear(s.applied)
	clear(s.acks)
	clear(s.unacks)
	clear(s.dirty)
	var chans []string
	for ch := range b.wanted {
		if partitionOf(ch, len(t.shards)) != s.index {
			continue
		}
		s.applied[ch] = true
		s.acks[ch] = 1
		chans = append(chans, b.redisChannel(t, ch))
	}
	s.ps = ps
	b.mu.Unlock()
	if len(chans) == 0 {
		b.setReady(t, s)
		return ps, nil
	}
	if err := subscribe(t, ps, chans); err != nil {
		b.drop(t, s, ps)
		return nil, err
	}
	return ps, nil
}

// followMaster notes which master serves s's slot; when it is not the one
// the previous connection reached, it bumps the partition's history
// generation, so that every stream of the partition starts a new epoch
// instead of handing out again offsets whose messages the failover lost.
func (b *Broker) followMaster(t *topology, cc *redis.ClusterClient, s *shard) error {
	ctx, cancel := context.WithTimeout(b.ctx, b.ropts.DialTimeout+time.Second)
	defer cancel()
	m, err := cc.MasterForKey(ctx, s.anchor)
	if err != nil {
		return fmt.Errorf("find the partition's master: %w", err)
	}
	id, err := m.Do(ctx, "CLUSTER", "MYID").Text()
	if err != nil {
		return fmt.Errorf("ask the partition's master its id: %w", err)
	}
	if s.master != "" && s.master != id {
		if err := cc.Incr(ctx, b.generationKey(t, s.index)).Err(); err != nil {
			return fmt.Errorf("bump the history generation: %w", err)
		}
		b.log.Warn("partition served by a new master; its history starts new epochs", "partition", s.index)
	}
	s.master = id
	return nil
}

// drop forgets ps as s's connection and closes it.
func (b *Broker) drop(t *topology, s *shard, ps *redis.PubSub) {
	if s.ready.Swap(false) {
		b.readyShards.Add(-1)
	}
	b.mu.Lock()
	if s.ps == ps {
		s.ps = nil
		clear(s.applied)
		clear(s.acks)
		clear(s.unacks)
		for ch, w := range b.wanted {
			if partitionOf(ch, len(t.shards)) == s.index {
				w.confirmed = false
				w.release() // waiters return; the subscription is made on reconnection
			}
		}
	}
	b.mu.Unlock()
	_ = ps.Close()
}

// receive delivers what arrives on ps until the connection fails.
func (b *Broker) receive(t *topology, s *shard, ps *redis.PubSub) error {
	pinged := false
	for {
		msg, err := ps.ReceiveTimeout(b.ctx, b.opts.HealthInterval)
		if err != nil {
			if b.ctx.Err() != nil {
				return err
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && !pinged {
				pinged = true
				if err := ps.Ping(b.ctx); err != nil {
					return err
				}
				continue
			}
			return err
		}
		pinged = false
		switch m := msg.(type) {
		case *redis.Message:
			ch, ok := b.switchboardChannel(t, m.Channel)
			if !ok {
				continue
			}
			b.mu.RLock()
			wanted := b.wanted[ch] != nil
			deliver := b.deliver
			b.mu.RUnlock()
			if wanted && deliver != nil {
				b.delivered.Add(1)
				deliver(ch, []byte(m.Payload))
			}
		case *redis.Subscription:
			ch, ok := b.switchboardChannel(t, m.Channel)
			if !ok {
				continue
			}
			switch m.Kind {
			case "subscribe", "ssubscribe":
				b.confirm(t, s, ch)
			case "sunsubscribe", "unsubscribe":
				if b.unsubscribed(s, ch) {
					return errSlotMoved
				}
			}
		}
	}
}

// unsubscribed records an unsubscription of ch and reports whether Redis
// made it by itself while the channel is still wanted: in a cluster, the
// slot of the partition moved.
func (b *Broker) unsubscribed(s *shard, ch string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if n := s.unacks[ch]; n > 0 {
		if n == 1 {
			delete(s.unacks, ch)
		} else {
			s.unacks[ch] = n - 1
		}
		return false
	}
	return s.applied[ch] || ch == anchorChannel
}

// confirm records Redis's acknowledgement of one SUBSCRIBE.
func (b *Broker) confirm(t *topology, s *shard, ch string) {
	b.mu.Lock()
	if n, pending := s.acks[ch]; pending {
		if n > 1 {
			s.acks[ch] = n - 1
		} else {
			delete(s.acks, ch)
			if w := b.wanted[ch]; w != nil && s.applied[ch] {
				w.confirmed = true
				w.release()
			}
		}
	}
	all := len(s.acks) == 0
	b.mu.Unlock()
	if all {
		b.setReady(t, s)
	}
}

func (b *Broker) setReady(t *topology, s *shard) {
	if !s.ready.Swap(true) && b.readyShards.Add(1) == int64(len(t.shards)) {
		b.readyOnce.Do(func() { close(b.readyCh) })
	}
}

// backoff is the wait before reconnection attempt n: exponential from
// MinBackoff up to MaxBackoff, with jitter over its upper half.
func (b *Broker) backoff(n int) time.Duration {
	d := b.opts.MaxBackoff
	if n < 30 {
		d = min(b.opts.MinBackoff<<n, b.opts.MaxBackoff)
	}
	return d/2 + rand.N(d/2+1)
}

func (b *Broker) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-b.ctx.Done():
		return false
	}
}
