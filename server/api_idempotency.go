package server

import (
	"container/list"
	"context"
	"crypto/sha256"
	"sync"
	"time"
)

// Idempotency-Key handling for POST /api/publish.
const (
	idempotencyTTL     = 5 * time.Minute
	idempotencyMax     = 100000 // entries kept; past it the oldest go first
	idempotencyKeyMax  = 255    // bytes of an Idempotency-Key header
	idempotencyReplays = "Idempotent-Replayed"
)

// idemAnswer is a stored response.
type idemAnswer struct {
	status int
	body   []byte
}

// idemEntry is one key's first request: in flight until done is closed,
// then its answer.
type idemEntry struct {
	scope   string // API key index + route + Idempotency-Key
	request [sha256.Size]byte
	expires time.Time
	done    chan struct{}
	answer  idemAnswer
	elem    *list.Element
}

// idemStore remembers first answers per (API key, Idempotency-Key) for
// idempotencyTTL. Entries expire in insertion order (the TTL is fixed), so
// a FIFO list is both the expiry queue and the eviction order.
type idemStore struct {
	mu    sync.Mutex
	byKey map[string]*idemEntry
	order list.List // *idemEntry, oldest first
	ttl   time.Duration
	max   int
	now   func() time.Time
}

func newIdemStore() *idemStore {
	return &idemStore{byKey: make(map[string]*idemEntry), ttl: idempotencyTTL, max: idempotencyMax, now: time.Now}
}

// idemOutcome says what the caller of begin must do.
type idemOutcome int

const (
	idemFirst    idemOutcome = iota // do the work, then call finish
	idemReplay                      // answer with the stored answer
	idemMismatch                    // the key was used with another request: 422
)

// begin looks scope up. The first caller for a scope gets idemFirst and an
// entry to finish; concurrent and later callers with the same request wait
// for that first answer (or ctx) and get idemReplay.
func (s *idemStore) begin(ctx context.Context, scope string, request [sha256.Size]byte) (idemOutcome, *idemEntry, error) {
	s.mu.Lock()
	now := s.now()
	s.expire(now)
	if e, ok := s.byKey[scope]; ok {
		s.mu.Unlock()
		if e.request != request {
			return idemMismatch, nil, nil
		}
		select {
		case <-e.done:
			return idemReplay, e, nil
		case <-ctx.Done():
			return 0, nil, ctx.Err()
		}
	}
	// Full of live entries: forget the oldest finished one. One still in
	// flight is never forgotten (a retry of it would publish again); when
	// every entry is in flight the store grows past max until they finish.
	for el := s.order.Front(); el != nil && s.order.Len() >= s.max; {
		next := el.Next()
		if old := el.Value.(*idemEntry); finished(old) {
			s.remove(old)
		}
		el = next
	}
	e := &idemEntry{scope: scope, request: request, expires: now.Add(s.ttl), done: make(chan struct{})}
	e.elem = s.order.PushBack(e)
	s.byKey[scope] = e
	s.mu.Unlock()
	return idemFirst, e, nil
}

func finished(e *idemEntry) bool {
	select {
	case <-e.done:
		return true
	default:
		return false
	}
}

// finish records the first answer and releases the waiters. A failed
// request (5xx) is not kept, so that a retry can succeed; the requests
// already waiting for it get the failure.
func (s *idemStore) finish(e *idemEntry, status int, body []byte) {
	e.answer = idemAnswer{status: status, body: body}
	close(e.done)
	if status >= 500 {
		s.mu.Lock()
		if s.byKey[e.scope] == e {
			s.remove(e)
		}
		s.mu.Unlock()
	}
}

// expire drops entries past their time; s.mu is held.
func (s *idemStore) expire(now time.Time) {
	for f := s.order.Front(); f != nil; f = s.order.Front() {
		e := f.Value.(*idemEntry)
		if now.Before(e.expires) {
			return
		}
		s.remove(e)
	}
}

func (s *idemStore) remove(e *idemEntry) {
	s.order.Remove(e.elem)
	if s.byKey[e.scope] == e {
		delete(s.byKey, e.scope)
	}
}

func (s *idemStore) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.byKey)
}
