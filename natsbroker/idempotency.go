package natsbroker

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Idempotency keys for the nodes sharing this broker (the server's
// IdempotencyStore), in a JetStream key-value bucket named
// "sb-idempotency-" + EncodeToken(Prefix). The bucket is made on first use,
// kept like history (files unless HistoryMemory, HistoryReplicas copies),
// and expires every entry one TTL after it was last written: JetStream
// before 2.11 has no per-key TTL, so the bucket's TTL is the one the calls
// give (they all give the same), and a call with another changes it.

// maxClaimAttempts bounds ClaimIdempotency when the key keeps vanishing
// between the create and the read (it expires or is deleted in that
// instant).
const maxClaimAttempts = 5

// idemBucket is the broker's handle on the bucket: nil until first use,
// and again after a failure, so that a bucket deleted meanwhile is made
// again.
type idemBucket struct {
	mu  sync.Mutex
	kv  jetstream.KeyValue
	ttl time.Duration
}

func (b *Broker) idemBucketName() string { return "sb-idempotency-" + EncodeToken(b.opts.Prefix) }

// idemKey maps a key onto the restricted alphabet of KV keys.
func idemKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// idemKV returns the bucket, made or updated so that it keeps entries for
// ttl.
func (b *Broker) idemKV(ctx context.Context, ttl time.Duration) (jetstream.KeyValue, error) {
	if ttl <= 0 {
		return nil, errors.New("natsbroker: idempotency TTL must be positive")
	}
	nc, err := b.conn()
	if err != nil {
		return nil, err
	}
	if !nc.IsConnected() {
		return nil, ErrNotReady
	}
	bk := &b.idem
	bk.mu.Lock()
	defer bk.mu.Unlock()
	if bk.kv != nil && bk.ttl == ttl {
		return bk.kv, nil
	}
	storage := jetstream.FileStorage
	if b.opts.HistoryMemory {
		storage = jetstream.MemoryStorage
	}
	cfg := jetstream.KeyValueConfig{
		Bucket:      b.idemBucketName(),
		Description: "switchboard Idempotency-Keys of " + b.opts.Prefix,
		History:     1,
		TTL:         ttl,
		Storage:     storage,
		Replicas:    b.opts.HistoryReplicas,
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("natsbroker: idempotency bucket %s: %w", cfg.Bucket, err)
	}
	// Several nodes may do this at once: same config, same result.
	kv, err := js.CreateOrUpdateKeyValue(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("natsbroker: idempotency bucket %s: %w", cfg.Bucket, replicasHint(err, cfg.Replicas))
	}
	if cfg.Replicas > 1 {
		// As for history: a replicated stream just made has no leader for
		// a moment, and a write sent meanwhile waits for its whole deadline.
		s, err := js.Stream(ctx, "KV_"+cfg.Bucket)
		if err == nil {
			err = waitStreamLeader(ctx, s, cfg.Replicas)
		}
		if err != nil {
			return nil, fmt.Errorf("natsbroker: idempotency bucket %s: %w", cfg.Bucket, err)
		}
	}
	bk.kv, bk.ttl = kv, ttl
	return kv, nil
}

// lostIdem forgets the bucket after a failure: the next call makes sure
// of it again.
func (b *Broker) lostIdem() {
	b.idem.mu.Lock()
	b.idem.kv = nil
	b.idem.mu.Unlock()
}

// ClaimIdempotency stores value under key unless the key exists (a KV
// create, which fails if it does); if it exists, it returns its value.
func (b *Broker) ClaimIdempotency(ctx context.Context, key string, value []byte, ttl time.Duration) ([]byte, bool, error) {
	kv, err := b.idemKV(ctx, ttl)
	if err != nil {
		return nil, false, err
	}
	k := idemKey(key)
	for range maxClaimAttempts {
		_, err := kv.Create(ctx, k, value)
		if err == nil {
			return nil, true, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			b.lostIdem()
			return nil, false, fmt.Errorf("natsbroker: claim idempotency key: %w", err)
		}
		e, err := kv.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
			continue // gone since the create: claim again
		}
		if err != nil {
			b.lostIdem()
			return nil, false, fmt.Errorf("natsbroker: read idempotency key: %w", err)
		}
		return e.Value(), false, nil
	}
	return nil, false, errors.New("natsbroker: idempotency key kept vanishing while claimed")
}

// SetIdempotency overwrites key's value, kept for ttl from now.
func (b *Broker) SetIdempotency(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	kv, err := b.idemKV(ctx, ttl)
	if err != nil {
		return err
	}
	if _, err := kv.Put(ctx, idemKey(key), value); err != nil {
		b.lostIdem()
		return fmt.Errorf("natsbroker: store idempotency key: %w", err)
	}
	return nil
}

// DeleteIdempotency removes key. It follows a claim, so the bucket is
// normally known; if not (it was lost since), it is bound as it is.
func (b *Broker) DeleteIdempotency(ctx context.Context, key string) error {
	nc, err := b.conn()
	if err != nil {
		return err
	}
	if !nc.IsConnected() {
		return ErrNotReady
	}
	b.idem.mu.Lock()
	kv := b.idem.kv
	b.idem.mu.Unlock()
	if kv == nil {
		js, err := jetstream.New(nc)
		if err == nil {
			kv, err = js.KeyValue(ctx, b.idemBucketName())
		}
		if errors.Is(err, jetstream.ErrBucketNotFound) {
			return nil // no bucket, no key
		}
		if err != nil {
			return fmt.Errorf("natsbroker: idempotency bucket %s: %w", b.idemBucketName(), err)
		}
	}
	if err := kv.Delete(ctx, idemKey(key)); err != nil {
		b.lostIdem()
		return fmt.Errorf("natsbroker: delete idempotency key: %w", err)
	}
	return nil
}
