package natsbroker

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboardhq/switchboard"
	"github.com/switchboardhq/switchboard/internal/brokertest"
	"github.com/switchboardhq/switchboard/internal/testkit"
)

// idemNodes starts n brokers on url sharing a fresh prefix, whose bucket
// is deleted when the test ends.
func idemNodes(t *testing.T, url string, n int) []*Broker {
	t.Helper()
	prefix := uniquePrefix()
	t.Cleanup(func() {
		jsAdmin(t, url, func(ctx context.Context, js jetstream.JetStream) error {
			err := js.DeleteKeyValue(ctx, "sb-idempotency-"+EncodeToken(prefix))
			if errors.Is(err, jetstream.ErrBucketNotFound) {
				return nil
			}
			return err
		})
	})
	var nodes []*Broker
	for range n {
		b := newBroker(t, url, prefix)
		if err := b.Start(context.Background(), func(string, []byte) {}); err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, b)
	}
	return nodes
}

func TestIdempotencyStore(t *testing.T) {
	forEachServer(t, func(t *testing.T, url string) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		nodes := idemNodes(t, url, 2)
		a, b := nodes[0], nodes[1]
		const ttl = time.Minute
		// Keys outside the KV alphabet are hashed.
		key := "api key 0/publish\x00order #1"

		brokertest.IdempotencyLifecycle(t, ctx, a, b, key, ttl)
		brokertest.OneClaimEach(t, ctx, []brokertest.IdempotencyStore{a, b}, 16, 8, ttl)

		// The bucket deleted under the nodes (an operator's act) is made
		// again by the next calls. The first may fail (nats-server 2.9
		// leaves a write to a deleted stream unanswered until its
		// deadline): each try gets a second.
		jsAdmin(t, url, func(ctx context.Context, js jetstream.JetStream) error {
			return js.DeleteKeyValue(ctx, a.idemBucketName())
		})
		testkit.Eventually(t, 5*time.Second, 20*time.Millisecond, "the bucket made again", func() bool {
			ctx, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			_, claimed, err := b.ClaimIdempotency(ctx, key, []byte("v"), ttl)
			return err == nil && claimed
		})
		if present, _, err := a.ClaimIdempotency(ctx, key, []byte("w"), ttl); err != nil || string(present) != "v" {
			t.Fatalf("other node after the bucket was made again: %q %v", present, err)
		}
	})
}

// A short TTL (the bucket's) frees a claimed key and an answered one.
func TestIdempotencyStoreExpiry(t *testing.T) {
	forEachServer(t, func(t *testing.T, url string) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		nodes := idemNodes(t, url, 2)
		a, b := nodes[0], nodes[1]
		const short = 300 * time.Millisecond
		for _, set := range []bool{false, true} {
			key := fmt.Sprint("short-", set)
			if _, claimed, err := a.ClaimIdempotency(ctx, key, []byte("v"), short); err != nil || !claimed {
				t.Fatalf("claim %s: %v %v", key, claimed, err)
			}
			if set {
				if err := a.SetIdempotency(ctx, key, []byte("answer"), short); err != nil {
					t.Fatal(err)
				}
			}
			testkit.Eventually(t, 10*time.Second, 20*time.Millisecond, key+" expiring", func() bool {
				_, claimed, err := b.ClaimIdempotency(ctx, key, []byte("w"), short)
				return err == nil && claimed
			})
		}
		jsAdmin(t, url, func(ctx context.Context, js jetstream.JetStream) error {
			kv, err := js.KeyValue(ctx, a.idemBucketName())
			if err != nil {
				return err
			}
			st, err := kv.Status(ctx)
			if err == nil && st.TTL() != short {
				err = fmt.Errorf("bucket TTL %v, want %v", st.TTL(), short)
			}
			return err
		})
	})
}

func TestIdempotencyStoreUnavailable(t *testing.T) {
	ctx := context.Background()
	b := newBroker(t, natsURL, uniquePrefix())
	if _, _, err := b.ClaimIdempotency(ctx, "k", []byte("v"), time.Minute); !errors.Is(err, ErrNotStarted) {
		t.Fatalf("claim before Start: %v", err)
	}
	if err := b.Start(ctx, func(string, []byte) {}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.ClaimIdempotency(ctx, "k", []byte("v"), 0); err == nil {
		t.Fatal("a zero TTL was accepted")
	}
	_ = b.Close()
	if err := b.SetIdempotency(ctx, "k", []byte("v"), time.Minute); !errors.Is(err, ErrClosed) {
		t.Fatalf("set after Close: %v", err)
	}
	if !errors.Is(ErrNotReady, switchboard.ErrUnavailable) {
		t.Fatal("ErrNotReady does not wrap ErrUnavailable")
	}
}

// On a NATS cluster the bucket gets HistoryReplicas copies and keys claimed
// through one server are seen through another.
func TestClusterIdempotencyStore(t *testing.T) {
	t.Parallel()
	c := runCluster(t, 3)
	prefix := uniquePrefix()
	var nodes []*Broker
	for i := range 2 {
		b := clusterBroker(t, c, i, Options{Prefix: prefix, HistoryReplicas: 3})
		if err := b.Start(context.Background(), func(string, []byte) {}); err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), clusterWait)
	defer cancel()
	if _, claimed, err := nodes[0].ClaimIdempotency(ctx, "k", []byte("pending"), time.Minute); err != nil || !claimed {
		t.Fatalf("claim: %v %v", claimed, err)
	}
	if present, claimed, err := nodes[1].ClaimIdempotency(ctx, "k", []byte("x"), time.Minute); err != nil || claimed || string(present) != "pending" {
		t.Fatalf("claim through another server: %q %v %v", present, claimed, err)
	}
	jsAdmin(t, c.servers[2].ClientURL(), func(ctx context.Context, js jetstream.JetStream) error {
		s, err := js.Stream(ctx, "KV_"+nodes[0].idemBucketName())
		if err == nil && s.CachedInfo().Config.Replicas != 3 {
			err = fmt.Errorf("bucket has %d replicas, want 3", s.CachedInfo().Config.Replicas)
		}
		return err
	})
}
