package redisbroker

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

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
	b.mu.Lock()
	w := b.wanted[channel]
	if w == nil {
		w = &wantState{}
		// Wanted again before the syncer sent its UNSUBSCRIBE: the
		// connection still holds the confirmed subscription, and no new
		// SUBSCRIBE (so no new confirmation) will be sent for it.
		w.confirmed = b.ps != nil && b.applied[channel] && b.acks[channel] == 0
		b.wanted[channel] = w
		b.wake()
	}
	if w.confirmed || b.ps == nil || b.opts.SubscribeTimeout < 0 {
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
	b.mu.Lock()
	if w := b.wanted[channel]; w != nil {
		w.release()
		delete(b.wanted, channel)
		b.wake()
	}
	b.mu.Unlock()
	return nil
}

// wake asks the syncer to reconcile; b.mu is held.
func (b *Broker) wake() {
	select {
	case b.kick <- struct{}{}:
	default:
	}
}

// syncer sends SUBSCRIBE and UNSUBSCRIBE so that what the connection is
// subscribed to follows what is wanted, batching changes that pile up.
func (b *Broker) syncer() {
	defer b.wg.Done()
	for {
		select {
		case <-b.ctx.Done():
			return
		case <-b.kick:
		}
		b.cmdMu.Lock()
		b.mu.Lock()
		ps := b.ps
		var sub, unsub []string
		if ps != nil {
			for ch := range b.wanted {
				if !b.applied[ch] {
					b.applied[ch] = true
					b.acks[ch]++
					sub = append(sub, b.opts.Prefix+ch)
				}
			}
			for ch := range b.applied {
				if b.wanted[ch] == nil {
					delete(b.applied, ch)
					unsub = append(unsub, b.opts.Prefix+ch)
				}
			}
		}
		b.mu.Unlock()
		var err error
		if len(sub) > 0 {
			err = ps.Subscribe(b.ctx, sub...)
		}
		if len(unsub) > 0 && err == nil {
			err = ps.Unsubscribe(b.ctx, unsub...)
		}
		b.cmdMu.Unlock()
		if err != nil && b.ctx.Err() == nil {
			// The receiver sees the broken connection and reconnects; the
			// resubscription then covers these channels.
			b.log.Warn("subscription update failed", "error", err)
		}
	}
}

// subscriber keeps a pub/sub connection up and reads from it.
func (b *Broker) subscriber() {
	defer b.wg.Done()
	attempt := 0
	lost := false
	for b.ctx.Err() == nil {
		ps, err := b.connect()
		if err != nil {
			if b.ctx.Err() != nil {
				return
			}
			if attempt == 0 || attempt%10 == 0 {
				b.log.Warn("cannot reach Redis; retrying", "error", err, "attempt", attempt+1)
			}
			if !b.sleep(b.backoff(attempt)) {
				return
			}
			attempt++
			continue
		}
		if lost {
			b.reconnects.Add(1)
			b.log.Info("reconnected to Redis", "after_attempts", attempt)
		}
		attempt = 0
		err = b.receive(ps)
		b.drop(ps)
		if b.ctx.Err() != nil {
			return
		}
		lost = true
		b.log.Warn("lost the Redis pub/sub connection", "error", err)
	}
}

// connect dials a pub/sub connection and subscribes it to every wanted
// channel.
func (b *Broker) connect() (*redis.PubSub, error) {
	ps := b.client.Subscribe(b.ctx)
	if err := ps.Ping(b.ctx); err != nil { // dials
		_ = ps.Close()
		return nil, err
	}
	b.cmdMu.Lock()
	defer b.cmdMu.Unlock()
	b.mu.Lock()
	if b.closed.Load() {
		b.mu.Unlock()
		_ = ps.Close()
		return nil, ErrClosed
	}
	clear(b.applied)
	clear(b.acks)
	chans := make([]string, 0, len(b.wanted))
	for ch := range b.wanted {
		b.applied[ch] = true
		b.acks[ch] = 1
		chans = append(chans, b.opts.Prefix+ch)
	}
	b.ps = ps
	b.mu.Unlock()
	if len(chans) == 0 {
		b.setReady()
		return ps, nil
	}
	if err := ps.Subscribe(b.ctx, chans...); err != nil {
		b.drop(ps)
		return nil, err
	}
	return ps, nil
}

// drop forgets ps as the current connection and closes it.
func (b *Broker) drop(ps *redis.PubSub) {
	b.ready.Store(false)
	b.mu.Lock()
	if b.ps == ps {
		b.ps = nil
		clear(b.applied)
		clear(b.acks)
		for _, w := range b.wanted {
			w.confirmed = false
			w.release() // waiters return; the subscription is made on reconnection
		}
	}
	b.mu.Unlock()
	_ = ps.Close()
}

// receive delivers what arrives on ps until the connection fails.
func (b *Broker) receive(ps *redis.PubSub) error {
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
			ch, ok := strings.CutPrefix(m.Channel, b.opts.Prefix)
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
			if m.Kind == "subscribe" {
				b.confirm(strings.TrimPrefix(m.Channel, b.opts.Prefix))
			}
		}
	}
}

// confirm records Redis's acknowledgement of one SUBSCRIBE.
func (b *Broker) confirm(ch string) {
	b.mu.Lock()
	if n := b.acks[ch] - 1; n > 0 {
		b.acks[ch] = n
	} else {
		delete(b.acks, ch)
		if w := b.wanted[ch]; w != nil && b.applied[ch] {
			w.confirmed = true
			w.release()
		}
	}
	all := len(b.acks) == 0
	b.mu.Unlock()
	if all {
		b.setReady()
	}
}

func (b *Broker) setReady() {
	if !b.ready.Swap(true) {
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
