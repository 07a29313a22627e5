package server

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboardhq/switchboard"
)

// Webhook delivery tuning. The backoff doubles from webhookBackoffMin up to
// webhookBackoffMax; each wait is drawn from [d/2, d] (jitter).
const (
	webhookWorkers      = 4
	webhookQueueSize    = 10000 // events waiting, over all workers
	webhookBackoffMin   = 500 * time.Millisecond
	webhookBackoffMax   = 30 * time.Second
	webhookTimeout      = 10 * time.Second // one attempt
	webhookMaxRespBytes = 64 << 10
)

// webhookEvent is the JSON body of one webhook request.
type webhookEvent struct {
	ID   string `json:"id"`
	Type string `json:"type"`
	User string `json:"user"`
	Room string `json:"room,omitempty"`
	Node string `json:"node"`
	Time string `json:"time"`
}

// pendingEvent is an encoded event waiting for delivery. The body (and so
// the event id) is fixed once: every retry sends the same bytes.
type pendingEvent struct {
	id   string
	body []byte
	at   time.Time // when the transition happened; max age counts from here
}

// webhookOptions configure a dispatcher; the zero values of the tuning
// fields take the constants above (tests shorten them).
type webhookOptions struct {
	URL, Secret, Node string
	MaxAge            time.Duration
	RoomEvents        bool
	Log               *slog.Logger
	Count             func(result string) // metrics; called once per outcome
	Workers           int
	QueueSize         int
	BackoffMin        time.Duration
	BackoffMax        time.Duration
}

// webhooks delivers presence events to one URL, at least once. Events are
// sharded by user over a few workers, each delivering its events one at a
// time in order, so one user's transitions are never reordered. Enqueue
// never blocks: a full shard drops its oldest waiting event.
type webhooks struct {
	opt    webhookOptions
	client *http.Client
	shards []*webhookShard
	idPfx  string
	seq    atomic.Uint64
	cut    atomic.Int64 // events dropped at shutdown, for the log

	ctx    context.Context // cancelled when the shutdown deadline passes
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

type webhookShard struct {
	mu      sync.Mutex
	queue   []*pendingEvent
	limit   int
	closing bool
	wake    chan struct{}
}

func newWebhooks(opt webhookOptions) *webhooks {
	if opt.Workers <= 0 {
		opt.Workers = webhookWorkers
	}
	if opt.QueueSize <= 0 {
		opt.QueueSize = webhookQueueSize
	}
	if opt.BackoffMin <= 0 {
		opt.BackoffMin = webhookBackoffMin
	}
	if opt.BackoffMax <= 0 {
		opt.BackoffMax = webhookBackoffMax
	}
	if opt.Count == nil {
		opt.Count = func(string) {}
	}
	var pfx [6]byte
	_, _ = rand.Read(pfx[:])
	w := &webhooks{
		opt: opt,
		client: &http.Client{
			Timeout:   webhookTimeout,
			Transport: &http.Transport{Proxy: http.ProxyFromEnvironment, MaxIdleConnsPerHost: opt.Workers, IdleConnTimeout: time.Minute},
			// A redirect is a misconfiguration: it counts as a failure.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		idPfx: "evt_" + hex.EncodeToString(pfx[:]) + "_",
	}
	w.ctx, w.cancel = context.WithCancel(context.Background())
	per := max(1, opt.QueueSize/opt.Workers)
	for range opt.Workers {
		s := &webhookShard{limit: per, wake: make(chan struct{}, 1)}
		w.shards = append(w.shards, s)
		w.wg.Add(1)
		go w.run(s)
	}
	return w
}

// Enqueue implements the OnPresence callback: encode, queue, return.
func (w *webhooks) Enqueue(ev switchboard.PresenceEvent) {
	if !w.opt.RoomEvents && (ev.Kind == switchboard.RoomJoin || ev.Kind == switchboard.RoomLeave) {
		return
	}
	at := ev.Time
	if at.IsZero() {
		at = time.Now()
	}
	e := webhookEvent{
		ID: w.idPfx + strconv.FormatUint(w.seq.Add(1), 36), Type: ev.Kind, User: ev.User, Room: ev.Room,
		Node: w.opt.Node, Time: at.UTC().Format(time.RFC3339Nano),
	}
	body, err := json.Marshal(e)
	if err != nil { // cannot happen: strings only
		w.opt.Log.Error("webhook event not encoded", "error", err)
		return
	}
	h := fnv.New32a()
	_, _ = io.WriteString(h, ev.User)
	s := w.shards[h.Sum32()%uint32(len(w.shards))]
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		w.opt.Count(webhookShutdown)
		return
	}
	dropped := false
	if len(s.queue) >= s.limit {
		s.queue[0] = nil
		s.queue = s.queue[1:]
		dropped = true
	}
	s.queue = append(s.queue, &pendingEvent{id: e.ID, body: body, at: at})
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	if dropped {
		w.opt.Count(webhookOverflow)
		w.opt.Log.Warn("webhook queue full; oldest event dropped", "queue", s.limit)
	}
}

// run delivers one shard's events in order until Close.
func (w *webhooks) run(s *webhookShard) {
	defer w.wg.Done()
	for {
		s.mu.Lock()
		var ev *pendingEvent
		if len(s.queue) > 0 {
			ev = s.queue[0]
			s.queue[0] = nil
			s.queue = s.queue[1:]
		}
		closing := s.closing
		s.mu.Unlock()
		if ev != nil {
			w.deliver(w.ctx, ev)
			continue
		}
		if closing {
			return
		}
		select {
		case <-s.wake:
		case <-w.ctx.Done():
		}
	}
}

// deliver sends ev until the receiver answers 2xx, the event is older than
// MaxAge, or the shutdown deadline passes.
func (w *webhooks) deliver(ctx context.Context, ev *pendingEvent) {
	deadline := ev.at.Add(w.opt.MaxAge)
	backoff := w.opt.BackoffMin
	for attempt := 1; ; attempt++ {
		if ctx.Err() != nil {
			w.cut.Add(1)
			w.opt.Count(webhookShutdown)
			return
		}
		err := w.attempt(ctx, ev, deadline)
		if err == nil {
			w.opt.Count(webhookDelivered)
			return
		}
		if ctx.Err() != nil { // shutdown cut the attempt short: counted above
			continue
		}
		wait := backoff/2 + mrand.N(backoff/2+1)
		backoff = min(backoff*2, w.opt.BackoffMax)
		if time.Now().Add(wait).After(deadline) {
			w.opt.Count(webhookExpired)
			w.opt.Log.Warn("webhook event dropped after max age", "event_id", ev.id, "attempts", attempt,
				"max_age", w.opt.MaxAge.String(), "error", err.Error())
			return
		}
		w.opt.Count(webhookRetried)
		w.opt.Log.Debug("webhook attempt failed; retrying", "event_id", ev.id, "attempt", attempt,
			"retry_in", wait.String(), "error", err.Error())
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
	}
}

// attempt is one signed POST. Errors never carry the URL (it may hold
// credentials) or the secret.
func (w *webhooks) attempt(ctx context.Context, ev *pendingEvent, deadline time.Time) error {
	actx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodPost, w.opt.URL, bytes.NewReader(ev.body))
	if err != nil {
		return errors.New("cannot build the request")
	}
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "switchboard-webhook/1")
	req.Header.Set("X-Switchboard-Event-Id", ev.id)
	req.Header.Set("X-Switchboard-Timestamp", ts)
	req.Header.Set("X-Switchboard-Signature", signWebhook(w.opt.Secret, ts, ev.body))
	resp, err := w.client.Do(req)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return fmt.Errorf("request failed: %w", err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, webhookMaxRespBytes))
	_ = resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("receiver answered %d", resp.StatusCode)
	}
	return nil
}

// signWebhook is "v1=" + hex(HMAC-SHA256(secret, timestamp + "." + body)).
func signWebhook(secret, ts string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	_, _ = io.WriteString(m, ts)
	_, _ = m.Write([]byte{'.'})
	_, _ = m.Write(body)
	return "v1=" + hex.EncodeToString(m.Sum(nil))
}

// verifyWebhook checks a signature the way a receiver should (used by
// tests and shown in docs/api.md).
func verifyWebhook(secret, ts string, body []byte, sig string) bool {
	return strings.HasPrefix(sig, "v1=") && hmac.Equal([]byte(sig), []byte(signWebhook(secret, ts, body)))
}

// Close stops taking events and delivers what is queued until ctx ends;
// then in-flight attempts are abandoned and the rest is dropped (counted
// as shutdown). It returns once every worker has stopped.
func (w *webhooks) Close(ctx context.Context) {
	for _, s := range w.shards {
		s.mu.Lock()
		s.closing = true
		s.mu.Unlock()
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
	done := make(chan struct{})
	go func() { w.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		w.cancel()
		<-done
	}
	w.cancel()
	if n := w.cut.Load(); n > 0 {
		w.opt.Log.Warn("shutdown deadline reached; webhook events dropped", "events", n)
	}
	w.client.CloseIdleConnections()
}
