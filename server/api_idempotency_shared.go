package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/switchboardhq/switchboard"
)

// Idempotency-Keys shared by the nodes of a cluster.
//
// With one node (the memory broker) keys live in the node's idemStore. With
// several behind a load balancer, a retry may reach another node, which
// would publish again; so when the broker can keep keys for the cluster
// (it implements IdempotencyStore: Redis, NATS), every node uses it
// instead, with the same rules:
//
//   - the first request claims the key with a pending entry holding the
//     request's digest, publishes, then stores its answer for the TTL;
//   - a request with the same digest gets that answer (Idempotent-Replayed),
//     or, while the first is pending, polls until it is answered, for at
//     most idempotencyWait, then gets 409;
//   - a request with another digest gets 422;
//   - a 5xx first answer deletes the key, so that a retry publishes.
//
// When the store cannot be reached the request is refused with 503 rather
// than published without the key: a publish the store does not know of is
// a publish a retry would repeat.

// IdempotencyStore is what a broker implements to keep Idempotency-Keys
// for every node sharing it. Keys are opaque printable ASCII (the server
// passes hex digests); values are small and hold no secrets. The methods
// are safe for concurrent use and return an error when the store cannot
// be reached.
type IdempotencyStore interface {
	// ClaimIdempotency stores value under key for ttl unless key is
	// present, atomically across nodes. It reports whether it stored;
	// when it did not, it returns the value present.
	ClaimIdempotency(ctx context.Context, key string, value []byte, ttl time.Duration) (present []byte, claimed bool, err error)
	// SetIdempotency overwrites key's value; it is kept for ttl from now.
	SetIdempotency(ctx context.Context, key string, value []byte, ttl time.Duration) error
	// DeleteIdempotency removes key; an absent key is not an error.
	DeleteIdempotency(ctx context.Context, key string) error
}

const (
	errIdemInFlight = "idempotency_key_in_flight"
	// idempotencyWait bounds how long a duplicate waits for the first
	// request, which may run on another node, before it gets 409.
	idempotencyWait = 5 * time.Second
	// idemStoreTimeout bounds one store call, so that a broker that stopped
	// answering costs a request seconds, not the client's whole timeout.
	idemStoreTimeout = 3 * time.Second
	idemPollMin      = 5 * time.Millisecond
	idemPollMax      = 200 * time.Millisecond
)

// sharedIdem is the API's cluster-wide key store.
type sharedIdem struct {
	store IdempotencyStore
	ttl   time.Duration // idempotencyTTL; tests shorten it
	wait  time.Duration // idempotencyWait; tests shorten it
}

// sharedIdempotency returns the broker's key store, or nil if it keeps
// none (the memory broker: keys stay per node).
func sharedIdempotency(b switchboard.Broker) *sharedIdem {
	st, ok := b.(IdempotencyStore)
	if !ok {
		return nil
	}
	return &sharedIdem{store: st, ttl: idempotencyTTL, wait: idempotencyWait}
}

// sharedEntry is a key's value in the store. Status 0 means pending: the
// first request is still being handled.
type sharedEntry struct {
	Request string `json:"request"` // hex SHA-256 of the request body
	Status  int    `json:"status,omitempty"`
	Body    []byte `json:"body,omitempty"`
}

// sharedKey names a key in the store. It is a digest of the API key's
// digest, the route and the Idempotency-Key: the store never sees either
// in clear, and, unlike the API key's index in --api-key, the name is the
// same on nodes that list their keys in another order.
func (a *api) sharedKey(key int, route, idemKey string) string {
	h := sha256.New()
	h.Write([]byte("switchboard idempotency\x00"))
	h.Write(a.keys[key][:])
	h.Write([]byte(route + "\x00" + idemKey))
	return hex.EncodeToString(h.Sum(nil))
}

// publishShared is publish with an Idempotency-Key kept in the store.
func (a *api) publishShared(w http.ResponseWriter, r *http.Request, req *publishRequest, key int, idemKey string, body []byte) {
	s := a.shared
	name := a.sharedKey(key, routePublish, idemKey)
	sum := sha256.Sum256(body)
	request := hex.EncodeToString(sum[:])
	pending, _ := json.Marshal(sharedEntry{Request: request})
	deadline := time.Now().Add(s.wait)
	poll := idemPollMin
	for {
		ctx, cancel := context.WithTimeout(r.Context(), idemStoreTimeout)
		present, claimed, err := s.store.ClaimIdempotency(ctx, name, pending, s.ttl)
		cancel()
		switch {
		case err != nil && r.Context().Err() != nil:
			writeError(w, http.StatusServiceUnavailable, errInternal, "request cancelled")
			return
		case err != nil:
			a.storeUnavailable(w, fmt.Errorf("claim: %w", err))
			return
		case claimed:
			a.firstShared(w, r, req, name, request)
			return
		}
		var e sharedEntry
		if err := json.Unmarshal(present, &e); err != nil || e.Request == "" {
			a.storeUnavailable(w, errors.New("the stored entry is not one this version reads"))
			return
		}
		switch {
		case e.Request != request:
			writeError(w, http.StatusUnprocessableEntity, errIdemReused,
				"this Idempotency-Key was used with a different request in the last 5 minutes; use a new key")
			return
		case e.Status != 0:
			w.Header().Set(idempotencyReplays, "true")
			writeRaw(w, e.Status, e.Body)
			return
		}
		// Pending, here or on another node: ask again shortly. If the first
		// request fails meanwhile its key is deleted and this one claims it.
		left := time.Until(deadline)
		if left <= 0 {
			w.Header().Set("Retry-After", "1")
			writeError(w, http.StatusConflict, errIdemInFlight,
				"the first request with this Idempotency-Key is still in flight; retry later to get its answer")
			return
		}
		t := time.NewTimer(min(poll, left))
		select {
		case <-r.Context().Done():
			t.Stop()
			writeError(w, http.StatusServiceUnavailable, errInternal, "request cancelled")
			return
		case <-t.C:
		}
		poll = min(2*poll, idemPollMax)
	}
}

// firstShared publishes for the request that claimed the key. The answer is
// stored before it is sent, so that a retry sent on receiving it is
// replayed at once whichever node it reaches.
func (a *api) firstShared(w http.ResponseWriter, r *http.Request, req *publishRequest, name, request string) {
	settled := false
	defer func() {
		if !settled { // publishing panicked: free the key for a retry
			a.settleShared(name, request, http.StatusInternalServerError, internalAnswer)
		}
	}()
	status, answer := a.doPublish(r.Context(), req)
	a.settleShared(name, request, status, answer)
	settled = true
	retryLater(w, status)
	writeRaw(w, status, answer)
}

// settleShared stores the first answer, or deletes the key after a 5xx.
// It does not use the request's context: a client that went away must not
// leave the key pending. A failure leaves the key pending until the TTL:
// retries then get 409, which is safer than publishing twice.
func (a *api) settleShared(name, request string, status int, answer []byte) {
	s := a.shared
	ctx, cancel := context.WithTimeout(context.Background(), idemStoreTimeout)
	defer cancel()
	if status >= 500 {
		if err := s.store.DeleteIdempotency(ctx, name); err != nil {
			a.log.Error("idempotency key not released after a failed publish; its retries get 409 until it expires",
				"error", err, "ttl", s.ttl.String())
		}
		return
	}
	v, _ := json.Marshal(sharedEntry{Request: request, Status: status, Body: answer})
	if err := s.store.SetIdempotency(ctx, name, v, s.ttl); err != nil {
		a.log.Error("idempotency answer not stored; retries of this key get 409 until it expires",
			"error", err, "ttl", s.ttl.String())
	}
}

// storeUnavailable refuses a request whose key the store could not look
// up: publishing without it could publish twice.
func (a *api) storeUnavailable(w http.ResponseWriter, err error) {
	a.log.Error("idempotency store unavailable: publish refused", "error", err)
	w.Header().Set("Retry-After", "1")
	writeError(w, http.StatusServiceUnavailable, errUnavailable,
		"the broker, which keeps Idempotency-Keys for the cluster, is unreachable: the message was not published; retry")
}
