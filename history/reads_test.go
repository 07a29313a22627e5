package history

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard/internal/testkit"
)

// blockingStore counts reads and holds each until released.
type blockingStore struct {
	reads   atomic.Int32
	release chan struct{}
}

func (s *blockingStore) Read(ctx context.Context, stream string, since uint64, limit int) (Page, error) {
	s.reads.Add(1)
	<-s.release
	return Page{Offset: 7, Epoch: "e"}, nil
}

// Concurrent identical gap fills share one read of the store.
func TestHistoryFillsShareOneRead(t *testing.T) {
	store := &blockingStore{release: make(chan struct{})}
	r := NewSharedReader(store, time.Minute)
	const callers = 20
	var wg sync.WaitGroup
	for range callers {
		wg.Go(func() {
			if p, err := r.Shared(context.Background(), "r:kept", 3, 10); err != nil || p.Offset != 7 {
				t.Errorf("shared read: %+v %v", p, err)
			}
		})
	}
	sharers := func() int {
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, c := range r.calls {
			return c.sharers
		}
		return 0
	}
	testkit.Eventually(t, 10*time.Second, 5*time.Millisecond,
		fmt.Sprintf("%d callers waiting on the read", callers-1), func() bool { return sharers() == callers-1 })
	close(store.release)
	wg.Wait()
	if n := store.reads.Load(); n != 1 {
		t.Fatalf("%d reads of the store for %d identical fills, want 1", n, callers)
	}
}

// stuckStore answers only when its context ends.
type stuckStore struct{}

func (stuckStore) Read(ctx context.Context, _ string, _ uint64, _ int) (Page, error) {
	<-ctx.Done()
	return Page{}, ctx.Err()
}

// A read of a store that does not answer ends at the reader's timeout.
func TestSharedReaderBoundsReads(t *testing.T) {
	r := NewSharedReader(stuckStore{}, 20*time.Millisecond)
	if _, err := r.Read(context.Background(), "s", 0, 1); err != context.DeadlineExceeded {
		t.Fatalf("read of a stuck store: %v, want the deadline", err)
	}
}
