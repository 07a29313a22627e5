package redisbroker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Idempotency keys for the nodes sharing this broker (the server's
// IdempotencyStore): each is one Redis string, Prefix + "idempotency:" +
// key, with a TTL. Single keys only, so it works alike on a Redis Cluster.

const idemToken = "idempotency:"

// maxClaimAttempts bounds ClaimIdempotency when the key keeps vanishing
// between its SET and GET (it expires or is deleted in that instant).
const maxClaimAttempts = 5

func (b *Broker) idemKey(key string) string { return b.opts.Prefix + idemToken + key }

// ClaimIdempotency stores value under key for ttl unless the key exists
// (SET NX PX); if it exists, it returns its value. SET NX then GET rather
// than SET NX GET, which needs Redis 7.
func (b *Broker) ClaimIdempotency(ctx context.Context, key string, value []byte, ttl time.Duration) ([]byte, bool, error) {
	if ttl < time.Millisecond { // PX 0 would be refused, no TTL would keep it forever
		return nil, false, errors.New("redisbroker: idempotency TTL must be at least 1ms")
	}
	t, err := b.liveTopology()
	if err != nil {
		return nil, false, err
	}
	k := b.idemKey(key)
	for range maxClaimAttempts {
		ok, err := t.client.SetNX(ctx, k, value, ttl).Result()
		if err != nil {
			return nil, false, fmt.Errorf("redisbroker: claim idempotency key: %w", err)
		}
		if ok {
			return nil, true, nil
		}
		present, err := t.client.Get(ctx, k).Bytes()
		if errors.Is(err, redis.Nil) {
			continue // gone since the SET: claim again
		}
		if err != nil {
			return nil, false, fmt.Errorf("redisbroker: read idempotency key: %w", err)
		}
		return present, false, nil
	}
	return nil, false, errors.New("redisbroker: idempotency key kept vanishing while claimed")
}

// SetIdempotency overwrites key's value, kept for ttl from now.
func (b *Broker) SetIdempotency(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if ttl < time.Millisecond {
		return errors.New("redisbroker: idempotency TTL must be at least 1ms")
	}
	t, err := b.liveTopology()
	if err != nil {
		return err
	}
	if err := t.client.Set(ctx, b.idemKey(key), value, ttl).Err(); err != nil {
		return fmt.Errorf("redisbroker: store idempotency key: %w", err)
	}
	return nil
}

// DeleteIdempotency removes key.
func (b *Broker) DeleteIdempotency(ctx context.Context, key string) error {
	t, err := b.liveTopology()
	if err != nil {
		return err
	}
	if err := t.client.Del(ctx, b.idemKey(key)).Err(); err != nil {
		return fmt.Errorf("redisbroker: delete idempotency key: %w", err)
	}
	return nil
}
