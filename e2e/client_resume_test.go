package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard/client"
)

// postPublish is a backend's POST /api/publish to the node at addr; it
// returns the offset the room's history gave the message. Unlike apiCall
// it reports errors, so that it can run on any goroutine.
func postPublish(ctx context.Context, addr, room string, data any) (uint64, error) {
	body, err := json.Marshal(map[string]any{"room": room, "data": data})
	if err != nil {
		return 0, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/api/publish", bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer k")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("publish: %w", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var ans struct {
		Offset uint64 `json:"offset"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(b, &ans) != nil || ans.Offset == 0 {
		return 0, fmt.Errorf("publish answered %d %s", resp.StatusCode, b)
	}
	return ans.Offset, nil
}

// backend publishes numbered messages to a room through one node's API,
// one after the other, until stopped, and remembers which number got which
// offset.
type backend struct {
	mu      sync.Mutex
	sent    map[uint64]int // offset -> the number published with it
	last    uint64
	err     error
	changed chan struct{}

	stop     chan struct{}
	stopOnce sync.Once
	done     chan struct{}
}

func startBackend(ctx context.Context, addr, room string) *backend {
	b := &backend{sent: map[uint64]int{}, changed: make(chan struct{}), stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(b.done)
		pace := time.NewTicker(3 * time.Millisecond) // a steady stream, not a flood
		defer pace.Stop()
		for i := 0; ; i++ {
			select {
			case <-b.stop:
				return
			case <-pace.C:
			}
			off, err := postPublish(ctx, addr, room, i)
			b.mu.Lock()
			if err == nil {
				b.sent[off] = i
				b.last = max(b.last, off)
			} else {
				b.err = err
			}
			close(b.changed)
			b.changed = make(chan struct{})
			b.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	return b
}

// waitPublished waits until n more messages have been published.
func (b *backend) waitPublished(ctx context.Context, n int) error {
	b.mu.Lock()
	want := len(b.sent) + n
	b.mu.Unlock()
	for {
		b.mu.Lock()
		got, err, changed := len(b.sent), b.err, b.changed
		b.mu.Unlock()
		switch {
		case err != nil:
			return err
		case got >= want:
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("backend published %d of %d: %w", got, want, ctx.Err())
		}
	}
}

// halt stops publishing (it may be called again) and returns the offset
// of the last message.
func (b *backend) halt() (uint64, error) {
	b.stopOnce.Do(func() { close(b.stop) })
	<-b.done
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.last, b.err
}

// expectContiguous checks that the messages x received in keptRoom have
// every offset after from up to last, in order, once, each with the number
// the backend published under it, and returns how many were recovered.
func expectContiguous(t *testing.T, x *goClient, from, last uint64, sent map[uint64]int) (recovered int) {
	t.Helper()
	want := from + 1
	for _, m := range x.messages() {
		if m.Room != keptRoom {
			continue
		}
		if m.Offset != want {
			t.Fatalf("message at offset %d after %d: a gap or a duplicate", m.Offset, want-1)
		}
		if n, ok := dataInt(m); !ok || n != sent[m.Offset] {
			t.Fatalf("offset %d carries %s, the backend published %d there", m.Offset, m.Data, sent[m.Offset])
		}
		if m.Recovered {
			recovered++
		}
		want++
	}
	if want != last+1 {
		t.Fatalf("delivered up to offset %d, published up to %d", want-1, last)
	}
	return recovered
}

// The Go client against real binaries. Its node is killed with SIGKILL
// while a backend keeps publishing to a history room through another
// node's API, before, during and after the outage. The client notices at
// once, keeps retrying with growing, jittered delays while nothing
// listens, reconnects by itself when the node is back on its address, and
// resumes the room where it was: the offsets it delivers run contiguously
// from its join to the last publish, each once and with the data published
// under it, those published while it was away marked recovered.
func TestClientResumesAcrossNodeKill(t *testing.T) {
	needBroker(t, "redis")
	ctx := testContext(t, 90*time.Second)
	common := []string{
		"--broker=redis", "--cluster-name=" + fmt.Sprintf("f%x", rand.Uint64()), "--presence-ttl=3s",
		"--api-key=k", "--history-rooms=" + keptRoom, "--history-size=10000",
	}
	a := newRestartableServer(t, ctx, append(common, "--node-id=a")...)
	b := startServer(t, ctx, append(common, "--addr=127.0.0.3:0", "--node-id=b")...)
	addrA := strings.TrimPrefix(a.URL(), "ws://")

	const minBackoff, maxBackoff = 50 * time.Millisecond, 400 * time.Millisecond
	x := dialGo(t, ctx, a.URL()+"/ws?user=x", &client.Options{MinBackoff: minBackoff, MaxBackoff: maxBackoff})
	join, err := x.Join(ctx, keptRoom)
	if err != nil {
		t.Fatal(err)
	}
	if !join.History || join.Epoch == "" {
		t.Fatalf("join of %s: %+v, want a room with history", keptRoom, join)
	}
	pub := startBackend(ctx, b.Addr, keptRoom)
	defer func() { _, _ = pub.halt() }()
	inRoom := func(m client.Message) bool { return m.Room == keptRoom }
	if _, err := x.waitMsgs(ctx, "live messages before the kill", 30, inRoom); err != nil {
		t.Fatal(err)
	}

	if err := a.stop(); err != nil { // SIGKILL: no close frame, no drain
		t.Fatal(err)
	}
	lost, err := x.waitState(ctx, client.StateReconnecting, 1)
	if err != nil {
		t.Fatal(err)
	}
	if code := closeCode(lost.Err); code != 1006 {
		t.Fatalf("the connection ended with %v, want 1006 (no close frame from a killed node)", lost.Err)
	}
	// Nothing listens on a's address: attempts fail and are retried.
	if _, err := x.waitState(ctx, client.StateReconnecting, 4); err != nil {
		t.Fatal(err)
	}
	if err := pub.waitPublished(ctx, 100); err != nil {
		t.Fatal(err)
	}
	if err := a.start(addrA); err != nil {
		t.Fatal(err)
	}
	if _, err := x.waitState(ctx, client.StateConnected, 2); err != nil {
		t.Fatal(err)
	}
	rejoin, err := x.waitEvent(ctx, "the rejoin", func(e client.Event) bool { return e.Type == client.EventRejoin })
	if err != nil {
		t.Fatal(err)
	}
	if rejoin.Room != keptRoom || rejoin.Err != nil || !rejoin.Recovered || rejoin.Epoch != join.Epoch {
		t.Fatalf("rejoin %+v, want %s recovered in epoch %s", rejoin, keptRoom, join.Epoch)
	}
	if err := pub.waitPublished(ctx, 100); err != nil { // live again
		t.Fatal(err)
	}
	last, err := pub.halt()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := x.waitMsg(ctx, fmt.Sprintf("the last message (offset %d)", last), func(m client.Message) bool {
		return inRoom(m) && m.Offset == last
	}); err != nil {
		t.Fatal(err)
	}

	recovered := expectContiguous(t, x, join.Offset, last, pub.sent)
	if recovered < 100 {
		t.Fatalf("%d messages came back from history; at least the 100 published during the outage should", recovered)
	}

	// The retries: growing ceilings, full jitter under each, none past the
	// maximum, and not one fixed delay.
	var delays []time.Duration
	for _, sc := range x.stateChanges() {
		if sc.State == client.StateReconnecting {
			delays = append(delays, sc.Delay)
			if sc.Err != nil && errors.As(sc.Err, new(*client.HandshakeError)) {
				t.Fatalf("a retry was refused by HTTP (%v); nothing listened", sc.Err)
			}
		}
	}
	distinct := map[time.Duration]bool{}
	for k, d := range delays {
		ceiling := min(maxBackoff, minBackoff<<min(k, 16))
		if d < 0 || d >= ceiling {
			t.Fatalf("retry %d waited %v, outside [0, %v): delays %v", k, d, ceiling, delays)
		}
		distinct[d] = true
	}
	if len(delays) < 4 || len(distinct) < len(delays)/2 {
		t.Fatalf("delays %v: want at least 4 retries, jittered", delays)
	}
	t.Logf("%d retries with delays %v; %d of %d messages recovered from history", len(delays), delays, recovered, last-join.Offset)
}

// Two nodes on Redis behind Debian's nginx with deploy/nginx.conf, the Go
// client connected through it. The node holding the client is killed with
// SIGKILL while a backend publishes to a history room through the other
// node; the client's dials are held back until 100 more messages are out.
// It reconnects through nginx to the surviving node and resumes from the
// shared history: contiguous offsets, each once, the missed ones marked
// recovered.
func TestClientFailsOverBehindNginx(t *testing.T) {
	needBroker(t, "redis")
	ctx := testContext(t, 90*time.Second)
	cluster := fmt.Sprintf("n%x", rand.Uint64())
	a := startServer(t, ctx, historyArgs("redis", cluster, 2, "a")...)
	b := startServer(t, ctx, historyArgs("redis", cluster, 3, "b")...)
	front := startNginx(t, ctx, a, b)

	dials := newCutter()
	x := dialGo(t, ctx, "ws://"+front+"/ws?user=x", &client.Options{
		HTTPClient: dials.client(), MinBackoff: 20 * time.Millisecond, MaxBackoff: 100 * time.Millisecond,
	})
	join, err := x.Join(ctx, keptRoom)
	if err != nil {
		t.Fatal(err)
	}
	home, other := a, b
	if nodeConnections(t, ctx, a) == 0 {
		home, other = b, a
	}
	pub := startBackend(ctx, other.Addr, keptRoom)
	defer func() { _, _ = pub.halt() }()
	if _, err := x.waitMsgs(ctx, "live messages before the kill", 30, func(m client.Message) bool { return m.Room == keptRoom }); err != nil {
		t.Fatal(err)
	}

	release := dials.hold()
	defer release()
	killProcessGroup(home.cmd)
	lost, err := x.waitState(ctx, client.StateReconnecting, 1)
	if err != nil {
		t.Fatal(err)
	}
	if code := closeCode(lost.Err); code != 1006 {
		t.Fatalf("the connection ended with %v, want 1006 (nginx drops it without a close frame)", lost.Err)
	}
	if err := pub.waitPublished(ctx, 100); err != nil {
		t.Fatal(err)
	}
	release()
	if _, err := x.waitState(ctx, client.StateConnected, 2); err != nil {
		t.Fatal(err)
	}
	rejoin, err := x.waitEvent(ctx, "the rejoin", func(e client.Event) bool { return e.Type == client.EventRejoin })
	if err != nil {
		t.Fatal(err)
	}
	if rejoin.Room != keptRoom || rejoin.Err != nil || !rejoin.Recovered {
		t.Fatalf("rejoin %+v, want %s recovered", rejoin, keptRoom)
	}
	if n := nodeConnections(t, ctx, other); n != 1 {
		t.Fatalf("the surviving node holds %d connections, want the client's", n)
	}
	if err := pub.waitPublished(ctx, 50); err != nil {
		t.Fatal(err)
	}
	last, err := pub.halt()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := x.waitMsg(ctx, fmt.Sprintf("the last message (offset %d)", last), func(m client.Message) bool {
		return m.Room == keptRoom && m.Offset == last
	}); err != nil {
		t.Fatal(err)
	}
	if recovered := expectContiguous(t, x, join.Offset, last, pub.sent); recovered < 100 {
		t.Fatalf("%d messages came back from history; at least the 100 published while the client was held back should", recovered)
	}
}
