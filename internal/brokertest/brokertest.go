// Package brokertest holds the checks every cluster switchboard.Broker
// must pass, shared by the tests of redisbroker and natsbroker.
//
// Only tests import it. It imports the root package and testkit, never a
// broker client: each broker's tests hand it their own brokers.
package brokertest

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard"
	"github.com/switchboardhq/switchboard/internal/testkit"
)

// Wait bounds any single expected event: generous, the machine is shared
// and the race detector is slow.
const Wait = 15 * time.Second

// Quiet is how long a test waits to be confident nothing more arrives.
const Quiet = 300 * time.Millisecond

// Delivery is one payload handed to a node.
type Delivery struct {
	Channel string
	Payload []byte
}

// Collector records what a broker delivers.
type Collector struct {
	mu   sync.Mutex
	got  []Delivery
	cond chan struct{}
}

// NewCollector returns an empty Collector.
func NewCollector() *Collector { return &Collector{cond: make(chan struct{})} }

// Deliver is the function to pass to Broker.Start.
func (c *Collector) Deliver(channel string, payload []byte) {
	c.mu.Lock()
	c.got = append(c.got, Delivery{channel, bytes.Clone(payload)})
	close(c.cond)
	c.cond = make(chan struct{})
	c.mu.Unlock()
}

// On returns the payloads delivered on channel so far.
func (c *Collector) On(channel string) [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out [][]byte
	for _, d := range c.got {
		if d.Channel == channel {
			out = append(out, d.Payload)
		}
	}
	return out
}

// WaitN waits until at least n payloads arrived on channel and returns them.
func (c *Collector) WaitN(t testing.TB, channel string, n int) [][]byte {
	t.Helper()
	deadline := time.After(Wait)
	for {
		c.mu.Lock()
		ch := c.cond
		c.mu.Unlock()
		if got := c.On(channel); len(got) >= n {
			return got
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("timed out waiting for %d payloads on %q, have %d", n, channel, len(c.On(channel)))
		}
	}
}

// Eventually polls cond until it holds or Wait passes.
func Eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	testkit.Eventually(t, Wait, 10*time.Millisecond, what, cond)
}

// Node is a started broker and what it delivered.
type Node struct {
	B switchboard.Broker
	C *Collector
}

// Suite configures the shared checks.
type Suite struct {
	// Make returns a broker, not started, for the cluster namespace ns:
	// two calls with the same ns are two nodes of one cluster. It
	// registers Close with t.Cleanup (Close must be idempotent).
	Make func(t *testing.T, ns string) switchboard.Broker
	// Subscribers, if set, returns how many subscriptions the broker
	// server holds for channel in namespace ns (all nodes together).
	Subscribers func(t *testing.T, ns, channel string) int
}

// Node starts a node in namespace ns.
func (s Suite) Node(t *testing.T, ns string) Node {
	t.Helper()
	c := NewCollector()
	b := s.Make(t, ns)
	if err := b.Start(context.Background(), c.Deliver); err != nil {
		t.Fatalf("Start: %v", err)
	}
	return Node{B: b, C: c}
}

func (s Suite) expectSubscribers(t *testing.T, ns, channel string, want int) {
	t.Helper()
	if s.Subscribers == nil {
		return
	}
	var got int
	Eventually(t, fmt.Sprintf("%d subscribers on %q", want, channel), func() bool {
		got = s.Subscribers(t, ns, channel)
		return got == want
	})
}

// FanOut: a publish reaches subscribers on both nodes, including the
// publishing one; a node that unsubscribed gets nothing more.
func (s Suite) FanOut(t *testing.T, ns string) {
	ctx := context.Background()
	a, b := s.Node(t, ns), s.Node(t, ns)
	const ch = "room:fan.out:x@y/z-1_2*>"
	s.expectSubscribers(t, ns, ch, 0)
	must(t, a.B.Subscribe(ctx, ch))
	s.expectSubscribers(t, ns, ch, 1)
	must(t, b.B.Subscribe(ctx, ch))
	s.expectSubscribers(t, ns, ch, 2)

	must(t, a.B.Publish(ctx, ch, []byte("one")))
	for _, n := range []Node{a, b} {
		if got := n.C.WaitN(t, ch, 1); string(got[0]) != "one" {
			t.Fatalf("got %q, want one", got[0])
		}
	}
	must(t, b.B.Unsubscribe(ctx, ch))
	s.expectSubscribers(t, ns, ch, 1)
	must(t, b.B.Publish(ctx, ch, []byte("two"))) // B still publishes
	a.C.WaitN(t, ch, 2)
	time.Sleep(Quiet)
	if got := b.C.On(ch); len(got) != 1 {
		t.Fatalf("unsubscribed node got %d payloads, want 1", len(got))
	}
	must(t, a.B.Unsubscribe(ctx, ch))
	s.expectSubscribers(t, ns, ch, 0)
	must(t, a.B.Publish(ctx, ch, []byte("three")))
	time.Sleep(Quiet)
	if got := a.C.On(ch); len(got) != 2 {
		t.Fatalf("unsubscribed node got %d payloads, want 2", len(got))
	}
	// Other channels of the namespace are not delivered.
	must(t, a.B.Subscribe(ctx, "user:1"))
	must(t, b.B.Publish(ctx, "user:2", []byte("x")))
	must(t, b.B.Publish(ctx, "user:1", []byte("y")))
	a.C.WaitN(t, "user:1", 1)
	if got := a.C.On("user:2"); len(got) != 0 {
		t.Fatalf("unsubscribed channel delivered: %q", got)
	}
}

// Order: n publishes from one node arrive in order at the other.
func (s Suite) Order(t *testing.T, ns string, n int) {
	ctx := context.Background()
	a, b := s.Node(t, ns), s.Node(t, ns)
	const ch = "room:order"
	must(t, b.B.Subscribe(ctx, ch))
	s.expectSubscribers(t, ns, ch, 1)
	for i := range n {
		p := binary.BigEndian.AppendUint32(make([]byte, 0, 4), uint32(i))
		for {
			err := a.B.Publish(ctx, ch, p)
			if err == nil {
				break
			}
			time.Sleep(time.Millisecond) // queue full: the test outran the network
		}
	}
	got := b.C.WaitN(t, ch, n)
	if len(got) != n {
		t.Fatalf("got %d payloads, want %d", len(got), n)
	}
	for i, p := range got {
		if v := binary.BigEndian.Uint32(p); v != uint32(i) {
			t.Fatalf("payload %d is %d: order not kept", i, v)
		}
	}
}

// Binary: payloads arrive byte for byte, whatever the bytes, on channels
// whatever their characters.
func (s Suite) Binary(t *testing.T, ns string) {
	ctx := context.Background()
	a, b := s.Node(t, ns), s.Node(t, ns)
	all := make([]byte, 0, 512)
	for i := range 512 {
		all = append(all, byte(i))
	}
	big := bytes.Repeat([]byte{0, 0xff, 'x', 0}, 64<<10)
	payloads := [][]byte{{0}, {}, []byte("\x00a\x00b\r\n\x00"), all, big, []byte("héllo ✓")}
	channels := []string{"room:a.b", "room:a:b@c/d-e_f", "room:*", "room:>", "room:a b", "user:ü", "user:_5F", "all", ""}
	for _, ch := range channels {
		must(t, b.B.Subscribe(ctx, ch))
	}
	for _, ch := range channels {
		s.expectSubscribers(t, ns, ch, 1)
		for _, p := range payloads {
			must(t, a.B.Publish(ctx, ch, p))
		}
	}
	for _, ch := range channels {
		got := b.C.WaitN(t, ch, len(payloads))
		for i, p := range got {
			if !bytes.Equal(p, payloads[i]) {
				t.Fatalf("channel %q payload %d: got %d bytes, want %d (or content differs)", ch, i, len(p), len(payloads[i]))
			}
		}
	}
	time.Sleep(Quiet)
	for _, ch := range channels {
		if got := b.C.On(ch); len(got) != len(payloads) {
			t.Fatalf("channel %q: %d payloads, want %d (cross-talk between channels?)", ch, len(got), len(payloads))
		}
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
