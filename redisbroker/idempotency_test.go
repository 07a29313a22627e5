package redisbroker

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard"
	"github.com/switchboardhq/switchboard/internal/brokertest"
	"github.com/switchboardhq/switchboard/internal/testkit"
)

func TestIdempotencyStore(t *testing.T) {
	t.Parallel()
	testIdempotencyStore(t, needRedis(t))
}

func TestClusterIdempotencyStore(t *testing.T) {
	t.Parallel()
	testIdempotencyStore(t, needCluster(t))
}

// startedNodes starts n brokers sharing one prefix.
func startedNodes(t *testing.T, url string, n int) []*Broker {
	t.Helper()
	prefix := uniquePrefix()
	var nodes []*Broker
	for range n {
		b := newBroker(t, url, prefix)
		if err := b.Start(context.Background(), func(string, []byte) {}); err != nil {
			t.Fatal(err)
		}
		if !b.Ready() {
			t.Fatal("broker not ready after Start")
		}
		nodes = append(nodes, b)
	}
	return nodes
}

func testIdempotencyStore(t *testing.T, url string) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	nodes := startedNodes(t, url, 2)
	a, b := nodes[0], nodes[1]
	const ttl = time.Minute

	// Claimed on one node, seen from the other, answered, deleted.
	brokertest.IdempotencyLifecycle(t, ctx, a, b, "k1", ttl)
	if err := a.DeleteIdempotency(ctx, "never-claimed"); err != nil {
		t.Fatalf("deleting an absent key: %v", err)
	}

	// Concurrent claims of many keys from both nodes: one winner each (in
	// a cluster the keys land on every shard).
	brokertest.OneClaimEach(t, ctx, []brokertest.IdempotencyStore{a, b}, 32, 8, ttl)

	// Expiry: a short TTL frees the key, both after a claim and after Set.
	short := 200 * time.Millisecond
	for _, set := range []bool{false, true} {
		key := fmt.Sprint("short-", set)
		if _, claimed, err := a.ClaimIdempotency(ctx, key, []byte("v"), short); err != nil || !claimed {
			t.Fatalf("claim %s: %v %v", key, claimed, err)
		}
		if set {
			must(t, a.SetIdempotency(ctx, key, []byte("answer"), short))
		}
		testkit.Eventually(t, 5*time.Second, 20*time.Millisecond, key+" expiring", func() bool {
			_, claimed, err := b.ClaimIdempotency(ctx, key, []byte("w"), time.Minute)
			return err == nil && claimed
		})
	}
	if ttl, err := a.topo.Load().client.PTTL(ctx, a.idemKey("k1")).Result(); err != nil || ttl <= 0 || ttl > time.Minute {
		t.Errorf("PTTL of a claimed key: %v %v, want within a minute", ttl, err)
	}
}

// Before Start has reached Redis, and after Close, the store says it is
// unavailable rather than answering.
func TestIdempotencyStoreUnavailable(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := newBroker(t, "redis://127.0.0.1:1/0", uniquePrefix())
	if _, _, err := b.ClaimIdempotency(ctx, "k", []byte("v"), time.Minute); !errors.Is(err, switchboard.ErrUnavailable) {
		t.Fatalf("claim before Start: %v, want ErrUnavailable", err)
	}
	if err := b.SetIdempotency(ctx, "k", []byte("v"), time.Minute); !errors.Is(err, ErrNotReady) {
		t.Fatalf("set before Start: %v", err)
	}
	c := newBroker(t, needRedis(t), uniquePrefix())
	must(t, c.Start(ctx, func(string, []byte) {}))
	must(t, c.Close())
	if err := c.DeleteIdempotency(ctx, "k"); !errors.Is(err, ErrClosed) {
		t.Fatalf("delete after Close: %v", err)
	}
	if _, _, err := c.ClaimIdempotency(ctx, "k", []byte("v"), 0); err == nil {
		t.Fatal("a zero TTL was accepted")
	}
}
