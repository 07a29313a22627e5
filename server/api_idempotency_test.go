package server

import (
	"context"
	"crypto/sha256"
	"fmt"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestIdempotentPublish(t *testing.T) {
	srv, _ := testServer(t, "--api-key=k1", "--api-key=k2")
	h := srv.Handler()
	deliveries := func() float64 { return float64(srv.Hub.Counters().Deliveries) }
	hs := httptest.NewServer(h)
	defer hs.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := dialWS(t, ctx, hs.URL, "alice")
	c.join(ctx, "r")

	body := `{"room":"r","data":{"n":1}}`
	first := call(t, h, "POST", "/api/publish", "k1", body, "Idempotency-Key", "order-1")
	if first.Code != 200 {
		t.Fatalf("first: %d %s", first.Code, first.Body)
	}
	c.next(ctx, "message")
	before := deliveries()
	again := call(t, h, "POST", "/api/publish", "k1", body, "Idempotency-Key", "order-1")
	if again.Code != 200 || again.Body.String() != first.Body.String() || again.Header().Get("Idempotent-Replayed") != "true" {
		t.Errorf("retry answered %d %s (replayed %q), want the first answer %s", again.Code, again.Body,
			again.Header().Get("Idempotent-Replayed"), first.Body)
	}
	if deliveries() != before {
		t.Error("the retry published again")
	}

	reused := call(t, h, "POST", "/api/publish", "k1", `{"room":"r","data":{"n":2}}`, "Idempotency-Key", "order-1")
	wantError(t, reused, 422, errIdemReused)

	// The same Idempotency-Key under another API key is another request.
	other := call(t, h, "POST", "/api/publish", "k2", body, "Idempotency-Key", "order-1")
	if other.Code != 200 || other.Body.String() == first.Body.String() {
		t.Errorf("other API key: %d %s, want a new message", other.Code, other.Body)
	}
	c.next(ctx, "message")

	for _, bad := range []string{"", strings.Repeat("x", 256), "has space", "tab\tkey"} {
		rec := call(t, h, "POST", "/api/publish", "k1", body, "Idempotency-Key", bad)
		if bad == "" { // httptest's Header.Set with "" still sends the header
			if rec.Code != 400 {
				t.Errorf("empty key: %d", rec.Code)
			}
			continue
		}
		wantError(t, rec, 400, errBadRequest)
	}
	// Invalid requests are answered before the key is looked at.
	wantError(t, call(t, h, "POST", "/api/publish", "k1", `{"room":"r"}`, "Idempotency-Key", "order-1"), 400, errBadRequest)
}

func TestIdempotentPublishConcurrent(t *testing.T) {
	srv, _ := testServer(t, "--api-key=k")
	h := srv.Handler()
	const n = 16
	var wg sync.WaitGroup
	answers := make([]string, n)
	for i := range n {
		wg.Go(func() {
			rec := call(t, h, "POST", "/api/publish", "k", `{"broadcast":true,"data":1}`, "Idempotency-Key", "same")
			answers[i] = fmt.Sprint(rec.Code, rec.Body.String())
		})
	}
	wg.Wait()
	for i := range answers {
		if answers[i] != answers[0] || !strings.HasPrefix(answers[0], "200") {
			t.Fatalf("answer %d %q differs from %q", i, answers[i], answers[0])
		}
	}
	if got := srv.Hub.Counters(); got.Deliveries != 0 { // nobody connected: check ids instead
		t.Fatalf("unexpected deliveries %d", got.Deliveries)
	}
	// One publish means one message id was used: the next id follows it.
	next := decode(t, call(t, h, "POST", "/api/publish", "k", `{"broadcast":true,"data":1}`))["id"].(string)
	firstID := strings.TrimSuffix(strings.TrimPrefix(answers[0], `200{"id":"`), "\"}\n")
	if want := idAfter(t, firstID); next != want {
		t.Errorf("after %d concurrent duplicates the next id is %s, want %s (published more than once)", n, next, want)
	}
}

// idAfter is the hub's message id that follows id (prefix + base-36 sequence).
func idAfter(t *testing.T, id string) string {
	t.Helper()
	i := strings.LastIndexByte(id, '-')
	v, err := strconv.ParseUint(id[i+1:], 36, 64)
	if err != nil {
		t.Fatalf("message id %q: %v", id, err)
	}
	return id[:i+1] + strconv.FormatUint(v+1, 36)
}

func TestIdemStoreExpiryAndBound(t *testing.T) {
	s := newIdemStore()
	now := time.Unix(1000, 0)
	s.now = func() time.Time { return now }
	s.max = 3
	ctx := context.Background()
	req := sha256.Sum256([]byte("a"))
	finish := func(key string) {
		out, e, err := s.begin(ctx, key, req)
		if err != nil || out != idemFirst {
			t.Fatalf("begin %s: %v %v", key, out, err)
		}
		s.finish(e, 200, []byte(key))
	}
	finish("x")
	if out, e, _ := s.begin(ctx, "x", req); out != idemReplay || string(e.answer.body) != "x" {
		t.Fatalf("replay: %v", out)
	}
	now = now.Add(idempotencyTTL - time.Second)
	if out, _, _ := s.begin(ctx, "x", sha256.Sum256([]byte("b"))); out != idemMismatch {
		t.Fatalf("mismatch within the TTL: %v", out)
	}
	now = now.Add(time.Second)
	finish("x") // expired: a first request again
	finish("y")
	finish("z")
	finish("w") // over the bound: the oldest (x) goes
	if s.len() != 3 {
		t.Fatalf("store holds %d, want 3", s.len())
	}
	finish("x")
	// A failed first answer is not kept: a retry runs again.
	out, e, _ := s.begin(ctx, "f", req)
	if out != idemFirst {
		t.Fatal(out)
	}
	s.finish(e, 500, []byte("boom"))
	if out, _, _ := s.begin(ctx, "f", req); out != idemFirst {
		t.Errorf("after a 500 the key should be free, got %v", out)
	}
	// A waiter gives up with its context.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, _, err := s.begin(cctx, "f", req); err == nil {
		t.Error("waiting on an unfinished entry ignored the cancelled context")
	}
}
