package server

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard"
)

// receiver records webhook requests; fail decides each attempt's status.
type receiver struct {
	mu       sync.Mutex
	requests []received
	arrived  chan struct{}
	fail     func(attempt int) int
	attempts atomic.Int64
}

type received struct {
	id, ts, sig string
	body        []byte
	event       map[string]any
}

func newReceiver(t *testing.T, fail func(int) int) (*receiver, *httptest.Server) {
	r := &receiver{arrived: make(chan struct{}, 100), fail: fail}
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		rec := received{id: req.Header.Get("X-Switchboard-Event-Id"), ts: req.Header.Get("X-Switchboard-Timestamp"),
			sig: req.Header.Get("X-Switchboard-Signature"), body: body}
		if req.Header.Get("Content-Type") != "application/json" {
			t.Errorf("Content-Type %q", req.Header.Get("Content-Type"))
		}
		_ = json.Unmarshal(body, &rec.event)
		r.mu.Lock()
		r.requests = append(r.requests, rec)
		r.mu.Unlock()
		w.WriteHeader(r.fail(int(r.attempts.Add(1))))
		r.arrived <- struct{}{}
	}))
	t.Cleanup(hs.Close)
	return r, hs
}

func (r *receiver) wait(t *testing.T, ctx context.Context, n int) []received {
	t.Helper()
	for {
		r.mu.Lock()
		got := append([]received(nil), r.requests...)
		r.mu.Unlock()
		if len(got) >= n {
			return got
		}
		select {
		case <-r.arrived:
		case <-ctx.Done():
			t.Fatalf("%d webhook requests arrived, want %d", len(got), n)
		}
	}
}

type outcomes struct {
	mu sync.Mutex
	n  map[string]int
	ch chan string
}

func (o *outcomes) count(r string) {
	o.mu.Lock()
	o.n[r]++
	o.mu.Unlock()
	o.ch <- r
}

func (o *outcomes) waitFor(t *testing.T, ctx context.Context, result string) {
	t.Helper()
	for {
		select {
		case r := <-o.ch:
			if r == result {
				return
			}
		case <-ctx.Done():
			t.Fatalf("no %s outcome", result)
		}
	}
}

func testHooks(t *testing.T, url string, maxAge time.Duration) (*webhooks, *outcomes) {
	o := &outcomes{n: map[string]int{}, ch: make(chan string, 1000)}
	w := newWebhooks(webhookOptions{URL: url, Secret: "hook-secret", Node: "n1", MaxAge: maxAge,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Count: o.count,
		BackoffMin: 20 * time.Millisecond, BackoffMax: 40 * time.Millisecond})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		w.Close(ctx)
	})
	return w, o
}

func TestWebhookRetriesUntilDelivered(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rcv, hs := newReceiver(t, func(n int) int {
		if n <= 2 {
			return 500
		}
		return 204
	})
	w, o := testHooks(t, hs.URL, time.Minute)
	w.Enqueue(switchboard.PresenceEvent{Kind: switchboard.UserOnline, User: "alice", Time: time.Now()})
	o.waitFor(t, ctx, webhookDelivered)
	got := rcv.wait(t, ctx, 3)
	for i, r := range got {
		if r.id != got[0].id || r.event["id"] != r.id || string(r.body) != string(got[0].body) {
			t.Errorf("attempt %d: id %q body %s; want the same event as attempt 1", i+1, r.id, r.body)
		}
		if !verifyWebhook("hook-secret", r.ts, r.body, r.sig) {
			t.Errorf("attempt %d: bad signature %q", i+1, r.sig)
		}
		if ts, err := strconv.ParseInt(r.ts, 10, 64); err != nil || time.Since(time.Unix(ts, 0)) > time.Minute {
			t.Errorf("attempt %d: timestamp %q", i+1, r.ts)
		}
	}
	ev := got[0].event
	if ev["type"] != "user.online" || ev["user"] != "alice" || ev["node"] != "n1" {
		t.Errorf("event %v", ev)
	}
	if _, has := ev["room"]; has {
		t.Errorf("user event with a room: %v", ev)
	}
	if _, err := time.Parse(time.RFC3339Nano, ev["time"].(string)); err != nil {
		t.Errorf("time %v: %v", ev["time"], err)
	}
	if verifyWebhook("other-secret", got[0].ts, got[0].body, got[0].sig) {
		t.Error("signature verifies with another secret")
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.n[webhookRetried] != 2 || o.n[webhookDelivered] != 1 {
		t.Errorf("outcomes %v, want 2 retried and 1 delivered", o.n)
	}
}

func TestWebhookDroppedAfterMaxAge(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	hs := httptest.NewServer(http.NotFoundHandler())
	url := hs.URL
	hs.Close() // the receiver is down: connections are refused
	w, o := testHooks(t, url, 150*time.Millisecond)
	w.Enqueue(switchboard.PresenceEvent{Kind: switchboard.UserOffline, User: "bob", Time: time.Now()})
	o.waitFor(t, ctx, webhookExpired)
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.n[webhookRetried] < 1 || o.n[webhookDelivered] != 0 {
		t.Errorf("outcomes %v", o.n)
	}
}

func TestWebhookOrderOverflowAndRoomFilter(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	release := make(chan struct{})
	arrived := make(chan struct{}, 16) // one signal per request reaching the receiver
	var got []string
	var mu sync.Mutex
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-release
		var ev map[string]any
		_ = json.NewDecoder(r.Body).Decode(&ev)
		mu.Lock()
		got = append(got, ev["type"].(string)+" "+ev["user"].(string))
		mu.Unlock()
	}))
	defer hs.Close()
	o := &outcomes{n: map[string]int{}, ch: make(chan string, 1000)}
	w := newWebhooks(webhookOptions{URL: hs.URL, Secret: "s", Node: "n", MaxAge: time.Minute, Workers: 1, QueueSize: 3,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Count: o.count})
	// The first event is taken by the worker and blocks in the receiver;
	// then the queue (3) fills and the oldest waiting event is dropped.
	w.Enqueue(switchboard.PresenceEvent{Kind: switchboard.UserOnline, User: "a"})
	w.Enqueue(switchboard.PresenceEvent{Kind: switchboard.RoomJoin, User: "a", Room: "r"}) // filtered
	select {                                                                               // the worker has taken the first event and is blocked in the receiver
	case <-arrived:
	case <-ctx.Done():
		t.Fatal("worker did not take the first event")
	}
	for _, u := range []string{"b", "c", "d", "e"} {
		w.Enqueue(switchboard.PresenceEvent{Kind: switchboard.UserOnline, User: u})
	}
	o.waitFor(t, ctx, webhookOverflow)
	close(release)
	for range 4 {
		o.waitFor(t, ctx, webhookDelivered)
	}
	w.Close(ctx)
	mu.Lock()
	defer mu.Unlock()
	want := []string{"user.online a", "user.online c", "user.online d", "user.online e"}
	if len(got) != len(want) {
		t.Fatalf("delivered %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("delivered %v, want %v (in order, b dropped)", got, want)
		}
	}
}

// hsPending reports whether the shard still holds queued events.

// Two devices of one user: one user.online, one user.offline, in order,
// through the real hub and the server's wiring.
func TestWebhookOneEventPerTransition(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rcv, hook := newReceiver(t, func(int) int { return 200 })
	srv, _ := testServer(t, "--webhook-url="+hook.URL, "--webhook-secret=s3")
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()
	laptop := dialWS(t, ctx, hs.URL, "carol")
	phone := dialWS(t, ctx, hs.URL, "carol")
	laptop.join(ctx, "room-a") // room events are off by default
	_ = laptop.c.CloseNow()
	_ = phone.c.CloseNow()
	got := rcv.wait(t, ctx, 2)
	if got[0].event["type"] != "user.online" || got[1].event["type"] != "user.offline" {
		t.Fatalf("events %s then %s", got[0].body, got[1].body)
	}
	for _, r := range got {
		if r.event["user"] != "carol" || r.event["node"] != "test-node" || !verifyWebhook("s3", r.ts, r.body, r.sig) {
			t.Errorf("event %s", r.body)
		}
	}
	// Shutdown delivers what is pending; nothing more arrives.
	cctx, ccancel := context.WithTimeout(ctx, 2*time.Second)
	defer ccancel()
	if err := srv.Close(cctx); err != nil {
		t.Fatal(err)
	}
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	if len(rcv.requests) != 2 {
		t.Errorf("%d events, want exactly 2", len(rcv.requests))
	}
	if v, _ := seriesValue(t, srv, "switchboard_webhook_deliveries_total", map[string]string{"result": "delivered"}); v != 2 {
		t.Errorf("delivered metric %v, want 2", v)
	}
}

func TestWebhookShutdownDeadline(t *testing.T) {
	block := make(chan struct{})
	hs := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { <-block }))
	defer hs.Close()
	defer close(block)
	w, o := testHooks(t, hs.URL, time.Minute)
	w.Enqueue(switchboard.PresenceEvent{Kind: switchboard.UserOnline, User: "a"})
	w.Enqueue(switchboard.PresenceEvent{Kind: switchboard.UserOffline, User: "a"})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	w.Close(ctx)
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Close took %v past its deadline", d)
	}
	w.Enqueue(switchboard.PresenceEvent{Kind: switchboard.UserOnline, User: "late"}) // after Close: counted, not queued
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.n[webhookShutdown] != 3 || o.n[webhookRetried] != 0 {
		t.Errorf("outcomes %v, want 3 dropped at shutdown (2 pending, 1 late)", o.n)
	}
}
