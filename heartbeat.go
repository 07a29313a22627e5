package switchboard

import (
	"context"
	"errors"
	"time"

	"github.com/switchboardhq/switchboard/history"
)

// sweep is the one goroutine that watches every connection's liveness,
// write progress and token expiry, so an idle connection costs no timer and
// no goroutine wake-up of its own.
func (h *Hub) sweep() {
	defer h.wg.Done()
	t := time.NewTicker(h.sweepInterval())
	defer t.Stop()
	for {
		select {
		case <-h.ctx.Done():
			return
		case now := <-t.C:
			h.sweepOnce(now)
		}
	}
}

// sweepInterval is fine enough that the stated bounds (ping interval plus
// pong timeout, write timeout) are overshot by at most a quarter, and
// coarse enough that walking 100,000 connections stays cheap.
func (h *Hub) sweepInterval() time.Duration {
	d := min(h.opts.PingInterval, h.opts.PongTimeout, h.opts.Limits.WriteTimeout, h.opts.PresenceBatchInterval*4) / 4
	return max(10*time.Millisecond, min(d, time.Second))
}

type verdict struct {
	c      *Conn
	code   int
	reason string
}

func (h *Hub) sweepOnce(now time.Time) {
	n := now.UnixNano()
	silence := int64(h.opts.PingInterval + h.opts.PongTimeout)
	pingEvery := int64(h.opts.PingInterval)
	writeTimeout := int64(h.opts.Limits.WriteTimeout)
	var closes []verdict
	obs := h.opts.Observer
	var followers map[string][]history.Follower
	var directDue []*Conn
	if h.history != nil && n-h.lastCatchUp >= int64(h.catchUpInterval()) {
		h.lastCatchUp = n
		followers = map[string][]history.Follower{}
		if mem, ok := h.history.(*history.Memory); ok {
			mem.Sweep(now)
		}
	}
	h.reg.eachConn(func(c *Conn) {
		if followers != nil {
			c.addFollowed(followers)
		}
		if obs != nil {
			obs.QueueBytes(c.pending.Load())
		}
		if until := c.dmHoldUntil.Load(); until != 0 && n >= until {
			directDue = append(directDue, c)
		}
		switch {
		case n-c.lastSeen.Load() > silence:
			closes = append(closes, verdict{c, ClosePingTimeout, "ping_timeout"})
		case stalled(c, n, writeTimeout):
			closes = append(closes, verdict{c, CloseSlowConsumer, "slow_consumer"})
		case c.ident != nil && !c.ident.ExpiresAt.IsZero() && n >= c.ident.ExpiresAt.UnixNano():
			closes = append(closes, verdict{c, ClosePolicy, "token_expired"})
		case n-c.lastPing >= pingEvery:
			c.lastPing = n
			c.pingSent.CompareAndSwap(0, n) // an unanswered earlier ping keeps its time
			c.enqueue(pingWireFrame)
		}
	})
	for _, c := range directDue {
		c.releaseDirect()
	}
	if len(followers) > 0 {
		h.wg.Add(1)
		go h.catchUp(followers)
	}
	// Closing takes registry locks, so it happens after the walk.
	for _, v := range closes {
		h.closeConn(v.c, v.code, v.reason)
	}
	h.sweepClosing(n)
	if n-h.lastPrune >= int64(time.Minute) {
		h.lastPrune = n
		h.handshakes.prune(now)
	}
	if n-h.lastDiffFlush >= int64(h.opts.PresenceBatchInterval) {
		h.lastDiffFlush = n
		h.flushPresenceDiffs()
	}
}

func stalled(c *Conn, now, timeout int64) bool {
	since := c.stalledSince.Load()
	return since != 0 && c.pending.Load() > 0 && now-since > timeout
}

// sweepClosing shuts sockets whose close handshake is over: the peer never
// answered within the write timeout, or a final close frame has drained.
func (h *Hub) sweepClosing(now int64) {
	var done []*Conn
	h.closingMu.Lock()
	for c, deadline := range h.closing {
		if c.shutDone.Load() {
			delete(h.closing, c) // shut by another path meanwhile
			continue
		}
		c.mu.Lock()
		drained := c.shutAfterFlush && !c.flushing && c.pending.Load() <= 0
		c.mu.Unlock()
		if now >= deadline || drained {
			done = append(done, c)
		}
	}
	h.closingMu.Unlock()
	for _, c := range done {
		h.shut(c)
	}
}

// Shutdown drains the hub: new handshakes get 503 shutting_down, every
// connection is closed with 1001 after what is queued for it, and Shutdown
// waits for the sockets to close until ctx ends, then closes the rest.
func (h *Hub) Shutdown(ctx context.Context) error {
	h.draining.Store(true)
	var conns []*Conn
	h.reg.eachConn(func(c *Conn) { conns = append(conns, c) })
	for _, c := range conns {
		h.closeConn(c, CloseGoingAway, "shutting_down")
	}
	h.log.Info("draining", "connections", len(conns))
	var err error
	for h.total.Load() > 0 && err == nil {
		select {
		case <-h.idle:
		case <-ctx.Done():
			err = ctx.Err()
		case <-time.After(h.sweepInterval()):
			h.sweepClosing(time.Now().UnixNano())
		}
	}
	return errors.Join(err, h.Close())
}

// Close stops the hub at once: every socket is shut without a close
// handshake and the background goroutines end.
// Calling it again does nothing.
func (h *Hub) Close() error {
	var err error
	h.closeOnce.Do(func() { err = h.close() })
	return err
}

func (h *Hub) close() error {
	h.draining.Store(true)
	if h.cluster != nil {
		// The connections torn down below are announced by the goodbye,
		// not one delta each.
		h.cluster.Leaving()
	}
	h.cancel()
	h.wg.Wait()
	var conns []*Conn
	h.reg.eachConn(func(c *Conn) { conns = append(conns, c) })
	for _, c := range conns {
		h.transportClosed(c, errors.New("hub closed"))
	}
	h.closingMu.Lock()
	for c := range h.closing {
		conns = append(conns, c)
	}
	h.closingMu.Unlock()
	for _, c := range conns {
		h.shut(c)
	}
	h.writers.Close()
	// Presence says goodbye through the broker, so it closes first.
	err := errors.Join(h.presence.Close(), h.broker.Close())
	h.notifier.Stop() // after the last transitions of the connections closed above
	return err
}
