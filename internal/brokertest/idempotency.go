package brokertest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// IdempotencyStore is what a broker offers the server for Idempotency-Keys
// that hold across nodes.
type IdempotencyStore interface {
	ClaimIdempotency(ctx context.Context, key string, value []byte, ttl time.Duration) ([]byte, bool, error)
	SetIdempotency(ctx context.Context, key string, value []byte, ttl time.Duration) error
	DeleteIdempotency(ctx context.Context, key string) error
}

// IdempotencyLifecycle checks one key's life across two nodes: a claim on
// a is seen from b, a's answer replaces the pending value, and a deleted
// key (a failed first request) is claimed anew.
func IdempotencyLifecycle(t *testing.T, ctx context.Context, a, b IdempotencyStore, key string, ttl time.Duration) {
	t.Helper()
	if _, claimed, err := a.ClaimIdempotency(ctx, key, []byte("pending"), ttl); err != nil || !claimed {
		t.Fatalf("first claim: claimed %v, %v", claimed, err)
	}
	present, claimed, err := b.ClaimIdempotency(ctx, key, []byte("other"), ttl)
	if err != nil || claimed || string(present) != "pending" {
		t.Fatalf("second claim on another node: %q claimed %v, %v; want the first value", present, claimed, err)
	}
	if err := a.SetIdempotency(ctx, key, []byte("done"), ttl); err != nil {
		t.Fatal(err)
	}
	if present, _, _ := b.ClaimIdempotency(ctx, key, []byte("other"), ttl); string(present) != "done" {
		t.Fatalf("after the answer: %q", present)
	}
	if err := b.DeleteIdempotency(ctx, key); err != nil {
		t.Fatal(err)
	}
	if _, claimed, err := a.ClaimIdempotency(ctx, key, []byte("again"), ttl); err != nil || !claimed {
		t.Fatalf("claim after delete: claimed %v, %v", claimed, err)
	}
}

// OneClaimEach claims keys keys, tries times each, concurrently and spread
// over nodes, and fails unless every key is won exactly once.
func OneClaimEach(t *testing.T, ctx context.Context, nodes []IdempotencyStore, keys, tries int, ttl time.Duration) {
	t.Helper()
	wins := make([]int, keys)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range keys * tries {
		wg.Go(func() {
			_, claimed, err := nodes[i%len(nodes)].ClaimIdempotency(ctx, fmt.Sprint("c", i%keys), []byte("v"), ttl)
			if err != nil {
				t.Error(err)
			}
			if claimed {
				mu.Lock()
				wins[i%keys]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	for k, n := range wins {
		if n != 1 {
			t.Errorf("key c%d claimed %d times", k, n)
		}
	}
}
