package server

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard/internal/rediscluster"
	"github.com/switchboardhq/switchboard/internal/testkit"
	"github.com/switchboardhq/switchboard/natsbroker"
	"github.com/switchboardhq/switchboard/redisbroker"
)

// The network brokers keep Idempotency-Keys for the cluster.
var (
	_ IdempotencyStore = (*redisbroker.Broker)(nil)
	_ IdempotencyStore = (*natsbroker.Broker)(nil)
)

// reachable says whether something listens on addr.
func reachable(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 500*time.Millisecond)
	if err == nil {
		_ = c.Close()
	}
	return err == nil
}

// idemNodes builds two nodes sharing one broker (args name it) as one
// cluster of their own, and waits until both brokers are ready.
func idemNodes(t *testing.T, args ...string) (a, b *Server) {
	t.Helper()
	cluster := "--cluster-name=idem" + strconv.FormatInt(time.Now().UnixNano(), 36)
	args = append(args, "--api-key=k1", "--api-key=k2", cluster)
	a, _ = testServer(t, append(args, "--node-id=a")...)
	// Another order of the same API keys: the stored key names must not
	// depend on it.
	b, _ = testServer(t, append(args, "--api-key=k2", "--api-key=k1", "--node-id=b")...)
	for _, s := range []*Server{a, b} {
		if s.api.(*api).shared == nil {
			t.Fatalf("--broker %s keeps no cluster-wide Idempotency-Keys", s.cfg.Broker)
		}
		testkit.Eventually(t, 10*time.Second, 10*time.Millisecond, "broker ready", func() bool { return brokerReady(s.broker) })
	}
	return a, b
}

// TestSharedIdempotency runs two nodes over Redis, a Redis Cluster and
// NATS: a key used on one node holds on the other.
func TestSharedIdempotency(t *testing.T) {
	brokers := map[string]func(t *testing.T) []string{
		"redis": func(t *testing.T) []string {
			if !reachable("127.0.0.1:6379") {
				t.Skip("no Redis at 127.0.0.1:6379")
			}
			return []string{"--broker=redis"}
		},
		"redis-cluster": func(t *testing.T) []string {
			if why := rediscluster.Available(); why != "" {
				t.Skip(why)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			c, err := rediscluster.Start(ctx, 3, 0)
			if err != nil {
				t.Fatalf("start a Redis Cluster: %v", err)
			}
			t.Cleanup(c.Stop)
			return []string{"--broker=redis", "--redis-url=" + c.URL()}
		},
		"nats": func(t *testing.T) []string {
			if !reachable("127.0.0.1:4222") {
				t.Skip("no NATS at 127.0.0.1:4222")
			}
			return []string{"--broker=nats"}
		},
	}
	for name, args := range brokers {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			testSharedIdempotency(t, args(t))
		})
	}
}

func testSharedIdempotency(t *testing.T, args []string) {
	a, b := idemNodes(t, args...)
	ha, hb := a.Handler(), b.Handler()
	ws := httptest.NewServer(hb)
	defer ws.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := dialWS(t, ctx, ws.URL, "alice")
	c.join(ctx, "r")
	// received reads messages until a sentinel published through each node
	// arrives, and counts them by data. One node's publishes arrive in
	// order, so every publish answered before the sentinels is counted.
	sentinels := 0
	received := func() map[string]int {
		t.Helper()
		sentinels++
		for _, h := range []http.Handler{ha, hb} {
			if rec := call(t, h, "POST", "/api/publish", "k1", fmt.Sprintf(`{"room":"r","data":"sentinel-%d"}`, sentinels)); rec.Code != 200 {
				t.Fatalf("sentinel: %d %s", rec.Code, rec.Body)
			}
		}
		got := map[string]int{}
		for seen := 0; seen < 2; {
			m := c.next(ctx, "message")
			d, _ := json.Marshal(m["data"])
			if string(d) == fmt.Sprintf(`"sentinel-%d"`, sentinels) {
				seen++
				continue
			}
			got[string(d)]++
		}
		return got
	}

	// On A, then retried on B: published once, B replays A's answer.
	body := `{"room":"r","data":{"n":1}}`
	first := call(t, ha, "POST", "/api/publish", "k1", body, "Idempotency-Key", "order-1")
	if first.Code != 200 || first.Header().Get(idempotencyReplays) != "" {
		t.Fatalf("first: %d %s", first.Code, first.Body)
	}
	again := call(t, hb, "POST", "/api/publish", "k1", body, "Idempotency-Key", "order-1")
	if again.Code != 200 || again.Body.String() != first.Body.String() || again.Header().Get(idempotencyReplays) != "true" {
		t.Fatalf("retry on the other node: %d %s (replayed %q), want %s", again.Code, again.Body,
			again.Header().Get(idempotencyReplays), first.Body)
	}
	if got := received(); got[`{"n":1}`] != 1 || len(got) != 1 {
		t.Fatalf("deliveries %v, want {\"n\":1} once", got)
	}

	// Another body under the key, on B: 422. Another API key: a new key.
	wantError(t, call(t, hb, "POST", "/api/publish", "k1", `{"room":"r","data":{"n":9}}`, "Idempotency-Key", "order-1"), 422, errIdemReused)
	if rec := call(t, hb, "POST", "/api/publish", "k2", body, "Idempotency-Key", "order-1"); rec.Code != 200 || rec.Header().Get(idempotencyReplays) != "" {
		t.Fatalf("the key under another API key: %d %s", rec.Code, rec.Body)
	}
	if got := received(); got[`{"n":1}`] != 1 || len(got) != 1 {
		t.Fatalf("deliveries %v, want the other API key's publish once", got)
	}

	// Concurrent first requests on both nodes: one publish, one answer.
	const n = 16
	answers := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		h := []http.Handler{ha, hb}[i%2]
		wg.Go(func() {
			rec := call(t, h, "POST", "/api/publish", "k1", `{"room":"r","data":{"n":2}}`, "Idempotency-Key", "order-2")
			answers[i] = fmt.Sprint(rec.Code, " ", rec.Body.String())
		})
	}
	wg.Wait()
	for i := range answers {
		if answers[i] != answers[0] || !strings.HasPrefix(answers[0], "200 ") {
			t.Fatalf("answer %d %q differs from %q", i, answers[i], answers[0])
		}
	}
	if got := received(); got[`{"n":2}`] != 1 || len(got) != 1 {
		t.Fatalf("deliveries %v after %d concurrent duplicates on two nodes, want one", got, n)
	}
}

// fakeStore is an IdempotencyStore in memory, for the cases a real broker
// cannot be made to produce on demand.
type fakeStore struct {
	mu      sync.Mutex
	values  map[string][]byte
	fail    error
	claims  int
	claimed chan string // receives each claimed-or-found key, if set
}

func newFakeStore() *fakeStore { return &fakeStore{values: map[string][]byte{}} }

func (f *fakeStore) ClaimIdempotency(_ context.Context, key string, value []byte, _ time.Duration) ([]byte, bool, error) {
	f.mu.Lock()
	defer func() {
		f.mu.Unlock()
		if f.claimed != nil {
			f.claimed <- key
		}
	}()
	if f.fail != nil {
		return nil, false, f.fail
	}
	f.claims++
	if v, ok := f.values[key]; ok {
		return v, false, nil
	}
	f.values[key] = value
	return nil, true, nil
}

func (f *fakeStore) SetIdempotency(_ context.Context, key string, value []byte, _ time.Duration) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return f.fail
	}
	f.values[key] = value
	return nil
}

func (f *fakeStore) DeleteIdempotency(_ context.Context, key string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return f.fail
	}
	delete(f.values, key)
	return nil
}

func (f *fakeStore) get(key string) ([]byte, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	v, ok := f.values[key]
	return v, ok
}

// withFakeStore is a memory-broker node whose API keeps its keys in a
// fakeStore, with a short wait for pending keys.
func withFakeStore(t *testing.T, args ...string) (*Server, *api, *fakeStore) {
	t.Helper()
	srv, _ := testServer(t, append([]string{"--api-key=k"}, args...)...)
	a := srv.api.(*api)
	if a.shared != nil {
		t.Fatal("the memory broker should keep Idempotency-Keys per node")
	}
	f := newFakeStore()
	a.shared = &sharedIdem{store: f, ttl: idempotencyTTL, wait: 100 * time.Millisecond}
	return srv, a, f
}

// pendingEntry is what a first request still in flight leaves in the store.
func pendingEntry(body string) []byte {
	sum := sha256.Sum256([]byte(body))
	v, _ := json.Marshal(sharedEntry{Request: fmt.Sprintf("%x", sum)})
	return v
}

func TestSharedIdempotencyPending(t *testing.T) {
	srv, a, f := withFakeStore(t)
	h := srv.Handler()
	body := `{"broadcast":true,"data":1}`
	key := a.sharedKey(0, routePublish, "slow")
	f.values[key] = pendingEntry(body)

	// Still pending after the wait: 409, nothing published.
	rec := call(t, h, "POST", "/api/publish", "k", body, "Idempotency-Key", "slow")
	wantError(t, rec, 409, errIdemInFlight)
	if rec.Header().Get("Retry-After") == "" {
		t.Error("409 without Retry-After")
	}
	if f.claims < 2 {
		t.Errorf("the pending key was asked for %d times, want polling", f.claims)
	}

	// Answered while a duplicate waits: the duplicate gets the answer.
	a.shared.wait = 10 * time.Second
	f.claimed = make(chan string, 100)
	done := make(chan *httptest.ResponseRecorder)
	go func() { done <- call(t, h, "POST", "/api/publish", "k", body, "Idempotency-Key", "slow") }()
	select {
	case <-f.claimed: // the duplicate found the key pending
	case <-time.After(10 * time.Second):
		t.Fatal("the duplicate never asked the store")
	}
	answer, _ := json.Marshal(sharedEntry{Request: sharedEntryOf(t, f, key).Request, Status: 200, Body: []byte(`{"id":"x"}` + "\n")})
	if err := f.SetIdempotency(context.Background(), key, answer, time.Minute); err != nil {
		t.Fatal(err)
	}
	select {
	case rec := <-done:
		if rec.Code != 200 || rec.Body.String() != `{"id":"x"}`+"\n" || rec.Header().Get(idempotencyReplays) != "true" {
			t.Fatalf("waiter got %d %s", rec.Code, rec.Body)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the waiter did not see the answer")
	}

	// A waiter whose client goes away gives up.
	f.claimed = nil
	f.values[key] = pendingEntry(body)
	ctx, cancel := context.WithCancel(context.Background())
	req := httptest.NewRequestWithContext(ctx, "POST", "/api/publish", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer k")
	req.Header.Set("Idempotency-Key", "slow")
	cancel()
	rr := httptest.NewRecorder()
	h.ServeHTTP(rr, req)
	if rr.Code != 503 {
		t.Fatalf("cancelled waiter: %d %s", rr.Code, rr.Body)
	}
}

func sharedEntryOf(t *testing.T, f *fakeStore, key string) sharedEntry {
	t.Helper()
	v, ok := f.get(key)
	var e sharedEntry
	if !ok || json.Unmarshal(v, &e) != nil {
		t.Fatalf("key %s: %q", key, v)
	}
	return e
}

// A 5xx first answer is not kept: the key is deleted and the retry runs
// again (here a closed hub answers 500).
func TestSharedIdempotencyFailureNotKept(t *testing.T) {
	srv, a, f := withFakeStore(t)
	_ = srv.Hub.Close()
	h := srv.Handler()
	body := `{"room":"r","data":1}`
	for i := range 2 {
		rec := call(t, h, "POST", "/api/publish", "k", body, "Idempotency-Key", "fails")
		wantError(t, rec, 500, errInternal)
		if rec.Header().Get(idempotencyReplays) != "" {
			t.Fatalf("attempt %d was replayed", i)
		}
		if _, ok := f.get(a.sharedKey(0, routePublish, "fails")); ok {
			t.Fatalf("attempt %d: the key is still stored after a 500", i)
		}
	}
	if f.claims != 2 {
		t.Errorf("%d claims, want one per attempt", f.claims)
	}
}

// A store that cannot be reached refuses the publish with 503.
func TestSharedIdempotencyStoreDown(t *testing.T) {
	srv, _, f := withFakeStore(t)
	f.fail = errors.New("connection refused")
	h := srv.Handler()
	first := decode(t, call(t, h, "POST", "/api/publish", "k", `{"broadcast":true,"data":1}`))["id"].(string)
	rec := call(t, h, "POST", "/api/publish", "k", `{"broadcast":true,"data":1}`, "Idempotency-Key", "down")
	wantError(t, rec, 503, errUnavailable)
	if rec.Header().Get("Retry-After") != "1" {
		t.Error("503 without Retry-After")
	}
	next := decode(t, call(t, h, "POST", "/api/publish", "k", `{"broadcast":true,"data":1}`))["id"].(string)
	if next != idAfter(t, first) {
		t.Errorf("message ids %s then %s: the refused request published", first, next)
	}
}

// The real thing: a node whose Redis is unreachable answers 503.
func TestSharedIdempotencyBrokerDown(t *testing.T) {
	t.Parallel()
	// Nothing listens on port 1: the node starts (after its 5 s wait).
	srv, _ := testServer(t, "--api-key=k", "--broker=redis", "--redis-url=redis://127.0.0.1:1/0")
	rec := call(t, srv.Handler(), "POST", "/api/publish", "k", `{"room":"r","data":1}`, "Idempotency-Key", "x")
	wantError(t, rec, 503, errUnavailable)
	if m := decode(t, rec)["message"].(string); !strings.Contains(m, "Idempotency-Key") {
		t.Errorf("503 does not say why: %s", m)
	}
}

// Stored names and values hold neither API keys nor Idempotency-Keys, and
// a name does not depend on where its API key is listed.
func TestSharedIdempotencyKeys(t *testing.T) {
	srv, a, f := withFakeStore(t, "--api-key=second-key")
	if rec := call(t, srv.Handler(), "POST", "/api/publish", "second-key", `{"broadcast":true,"data":1}`, "Idempotency-Key", "order-77"); rec.Code != 200 {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	other := newAPI(srv.Hub, []string{"second-key", "k"}, a.log, a.m)
	want := other.sharedKey(0, routePublish, "order-77")
	if got := a.sharedKey(1, routePublish, "order-77"); got != want {
		t.Errorf("the same API key at another index names %s, want %s", got, want)
	}
	v, ok := f.get(want)
	if !ok {
		t.Fatalf("nothing stored under %s: %v", want, f.values)
	}
	for _, secret := range []string{"second-key", "order-77"} {
		if strings.Contains(want, secret) || strings.Contains(string(v), secret) {
			t.Errorf("%q appears in the store: %s = %s", secret, want, v)
		}
	}
}

// BenchmarkSharedIdempotency is one POST /api/publish on a node over a
// local Redis or NATS: without a key, with a new key (claim, publish,
// answer), and replayed (claim, read).
func BenchmarkSharedIdempotency(b *testing.B) {
	for _, broker := range []struct{ name, addr string }{{"redis", "127.0.0.1:6379"}, {"nats", "127.0.0.1:4222"}} {
		b.Run(broker.name, func(b *testing.B) {
			if !reachable(broker.addr) {
				b.Skip("no " + broker.name + " at " + broker.addr)
			}
			srv, _ := testServer(b, "--api-key=k", "--broker="+broker.name,
				"--cluster-name=bench"+strconv.FormatInt(time.Now().UnixNano(), 36))
			h := srv.Handler()
			body := `{"room":"bench","data":1}`
			publish := func(hdr ...string) {
				if rec := call(b, h, "POST", "/api/publish", "k", body, hdr...); rec.Code != 200 {
					b.Fatalf("%d %s", rec.Code, rec.Body)
				}
			}
			publish("Idempotency-Key", "replayed") // the bucket or connection is warm
			b.Run("no-key", func(b *testing.B) {
				for b.Loop() {
					publish()
				}
			})
			b.Run("new-key", func(b *testing.B) {
				i := 0
				for b.Loop() {
					i++
					publish("Idempotency-Key", "bench-"+strconv.Itoa(i)+"-"+strconv.FormatInt(time.Now().UnixNano(), 36))
				}
			})
			b.Run("replay", func(b *testing.B) {
				for b.Loop() {
					publish("Idempotency-Key", "replayed")
				}
			})
		})
	}
}
