package natsbroker

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The JetStream stream that keeps history: its configuration, and making
// sure it exists as configured.

// historyConfig is the stream's configuration. Called with hist.mu held.
func (b *Broker) historyConfig() jetstream.StreamConfig {
	size, ttl := b.historyBounds()
	storage := jetstream.FileStorage
	if b.opts.HistoryMemory {
		storage = jetstream.MemoryStorage
	}
	return jetstream.StreamConfig{
		Name:              b.opts.HistoryStream,
		Description:       "switchboard history of " + b.opts.Prefix,
		Subjects:          []string{b.opts.Prefix + historyToken + ">"},
		Retention:         jetstream.LimitsPolicy,
		Discard:           jetstream.DiscardOld,
		MaxMsgsPerSubject: int64(size) + 2, // room for markers
		MaxAge:            ttl,
		// No message IDs are used; the window only has to fit in MaxAge.
		Duplicates:  min(ttl, 2*time.Minute),
		Storage:     storage,
		Replicas:    b.opts.HistoryReplicas,
		AllowDirect: true, // reads are direct gets
	}
}

// ensureHistory creates or updates the stream once, and again after it
// was found missing. Several nodes may do it at once: same config, same
// result.
func (b *Broker) ensureHistory(ctx context.Context, nc *nats.Conn) error {
	h := &b.hist
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.ready {
		return nil
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("history: %w", err)
	}
	cfg := b.historyConfig()
	var s jetstream.Stream
	for attempt := 1; ; attempt++ {
		s, err = js.CreateOrUpdateStream(ctx, cfg)
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			s, err = js.UpdateStream(ctx, cfg) // another node created it meanwhile
		}
		var apiErr *jetstream.APIError
		if err == nil || !errors.As(err, &apiErr) || apiErr.Code < 500 ||
			apiErr.ErrorCode == errCodeReplicasNotClustered || attempt == 5 {
			break
		}
		// A server error, such as the files of a stream just deleted
		// still being removed: try again shortly.
		select {
		case <-ctx.Done():
			return fmt.Errorf("history stream %s: %w", cfg.Name, err)
		case <-time.After(time.Duration(attempt) * 50 * time.Millisecond):
		}
	}
	if err != nil {
		return fmt.Errorf("history stream %s: %w", cfg.Name, replicasHint(err, cfg.Replicas))
	}
	if err := waitStreamLeader(ctx, s, cfg.Replicas); err != nil {
		return fmt.Errorf("history stream %s: %w", cfg.Name, err)
	}
	h.ready = true
	h.gen++
	if major, minor, ok := serverVersion(nc.ConnectedServerVersion()); ok {
		h.noBatch = major < 2 || major == 2 && minor < 11
	}
	return nil
}

// startHistory makes the stream at Start when the hub bounded history, so
// that a node without JetStream says so at once. It is not fatal: Append
// and Read make the stream when they first need it, and say why not.
func (b *Broker) startHistory(ctx context.Context, nc *nats.Conn) {
	b.hist.mu.Lock()
	bounded := b.hist.size > 0
	b.hist.mu.Unlock()
	if !bounded || !nc.IsConnected() {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, DefaultHistoryTimeout)
	defer cancel()
	if err := b.ensureHistory(ctx, nc); err != nil {
		b.log.Error("history stream not ready; retrying on first use", "error", err)
	}
}

// lostHistory notes that the stream is gone (deleted, or JetStream lost
// it): the next call creates it again.
func (b *Broker) lostHistory() {
	b.hist.mu.Lock()
	b.hist.ready = false
	b.hist.mu.Unlock()
}

func serverVersion(v string) (major, minor int, ok bool) {
	parts := strings.SplitN(v, ".", 3)
	if len(parts) < 2 {
		return 0, 0, false
	}
	major, err1 := strconv.Atoi(parts[0])
	minor, err2 := strconv.Atoi(parts[1])
	return major, minor, err1 == nil && err2 == nil
}

// waitStreamLeader waits until a replicated stream has a leader and all
// its peers. A stream just made, or given more replicas, has no leader for
// a moment (a fraction of a second), and a store sent meanwhile is never
// answered: the Append would wait for its whole deadline.
func waitStreamLeader(ctx context.Context, s jetstream.Stream, replicas int) error {
	info := s.CachedInfo()
	for {
		c := info.Cluster
		if replicas <= 1 || c == nil || c.Leader != "" && len(c.Replicas) >= replicas-1 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("no leader with %d replicas yet: %w", replicas, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
		var err error
		if info, err = s.Info(ctx); err != nil {
			return fmt.Errorf("waiting for a leader: %w", err)
		}
	}
}

// replicasHint explains the errors of asking for more replicas than the
// JetStream at hand can place, which the server words tersely.
func replicasHint(err error, replicas int) error {
	var apiErr *jetstream.APIError
	if replicas <= 1 || !errors.As(err, &apiErr) {
		return err
	}
	switch apiErr.ErrorCode {
	case errCodeReplicasNotClustered:
		return fmt.Errorf("%d history replicas need a clustered JetStream, and this NATS server runs alone: keep 1 replica, or run NATS as a cluster of at least %d servers: %w", replicas, replicas, err)
	case errCodeNoPeers, errCodeInsufficientResources:
		return fmt.Errorf("the NATS cluster cannot place %d history replicas: that needs %d JetStream servers up, with room for the stream; use fewer replicas or more servers: %w", replicas, replicas, err)
	}
	return err
}
