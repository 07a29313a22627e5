package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"testing"

	"github.com/switchboardhq/switchboard/client"
)

// goClient is the project's Go client (package client) connected to a
// running binary, with what it received recorded for the test: every
// message in arrival order and every state change. Tests whose subject is
// the server's behaviour use it; tests of raw framing use wsClient.
type goClient struct {
	*client.Client

	mu      sync.Mutex
	msgs    []client.Message
	states  []client.StateChange
	events  []client.Event
	changed chan struct{} // closed and replaced whenever one of the above grows
	drained chan struct{} // closed when Messages and Events are closed
}

// dialGo dials url (ws://host:port/ws?user=…) with opts, which may be nil;
// the client is closed when the test ends. Messages and Events are read
// for the test; use waitMsgs, waitState and waitEvent.
func dialGo(t *testing.T, ctx context.Context, url string, opts *client.Options) *goClient {
	t.Helper()
	g := &goClient{changed: make(chan struct{}), drained: make(chan struct{})}
	var o client.Options
	if opts != nil {
		o = *opts
	}
	user := o.OnState
	o.OnState = func(sc client.StateChange) {
		if user != nil {
			user(sc)
		}
		g.mu.Lock()
		g.states = append(g.states, sc)
		g.wakeLocked()
		g.mu.Unlock()
	}
	c, err := client.Dial(ctx, url, &o)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	g.Client = c
	go g.read()
	t.Cleanup(func() {
		_ = c.Close()
		<-g.drained
	})
	return g
}

func (g *goClient) wakeLocked() {
	close(g.changed)
	g.changed = make(chan struct{})
}

func (g *goClient) read() {
	defer close(g.drained)
	msgs, events := g.Messages(), g.Events()
	for msgs != nil || events != nil {
		select {
		case m, ok := <-msgs:
			if !ok {
				msgs = nil
				continue
			}
			g.mu.Lock()
			g.msgs = append(g.msgs, m)
			g.wakeLocked()
			g.mu.Unlock()
		case e, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			g.mu.Lock()
			g.events = append(g.events, e)
			g.wakeLocked()
			g.mu.Unlock()
		}
	}
}

// wait re-evaluates cond, under the lock, whenever something arrives,
// until it holds or ctx ends.
func (g *goClient) wait(ctx context.Context, what string, cond func() bool) error {
	for {
		g.mu.Lock()
		ok, changed := cond(), g.changed
		g.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-changed:
		case <-g.drained:
			g.mu.Lock()
			ok = cond()
			g.mu.Unlock()
			if ok {
				return nil
			}
			return fmt.Errorf("client stopped (%v) while waiting for %s", g.Err(), what)
		case <-ctx.Done():
			return fmt.Errorf("no %s: %w", what, ctx.Err())
		}
	}
}

// waitMsg waits for a message that matches, among all received so far
// and to come, and returns it.
func (g *goClient) waitMsg(ctx context.Context, what string, match func(client.Message) bool) (client.Message, error) {
	var found client.Message
	err := g.wait(ctx, what, func() bool {
		for _, m := range g.msgs {
			if match(m) {
				found = m
				return true
			}
		}
		return false
	})
	return found, err
}

// waitMsgs waits until n messages that match have been received and
// returns them in arrival order.
func (g *goClient) waitMsgs(ctx context.Context, what string, n int, match func(client.Message) bool) ([]client.Message, error) {
	var got []client.Message
	err := g.wait(ctx, what, func() bool {
		got = got[:0]
		for _, m := range g.msgs {
			if match(m) {
				got = append(got, m)
			}
		}
		return len(got) >= n
	})
	return got, err
}

// waitState waits for the n-th change (counting from 1) to state st and
// returns it.
func (g *goClient) waitState(ctx context.Context, st client.State, n int) (client.StateChange, error) {
	var found client.StateChange
	err := g.wait(ctx, fmt.Sprintf("state %v (#%d)", st, n), func() bool {
		k := 0
		for _, sc := range g.states {
			if sc.State == st {
				if k++; k == n {
					found = sc
					return true
				}
			}
		}
		return false
	})
	return found, err
}

// waitEvent waits for an event that matches and returns it.
func (g *goClient) waitEvent(ctx context.Context, what string, match func(client.Event) bool) (client.Event, error) {
	var found client.Event
	err := g.wait(ctx, what, func() bool {
		for _, e := range g.events {
			if match(e) {
				found = e
				return true
			}
		}
		return false
	})
	return found, err
}

// stateChanges returns a copy of the state changes so far.
func (g *goClient) stateChanges() []client.StateChange {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]client.StateChange(nil), g.states...)
}

// messages returns a copy of the messages so far.
func (g *goClient) messages() []client.Message {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]client.Message(nil), g.msgs...)
}

// joinedGo dials user on node s and joins room.
func joinedGo(t *testing.T, ctx context.Context, s *server, user, room string) *goClient {
	t.Helper()
	g := dialGo(t, ctx, "ws://"+s.Addr+"/ws?user="+user, nil)
	if _, err := g.Join(ctx, room); err != nil {
		t.Fatal(err)
	}
	return g
}

// dataIs says whether m's data is the JSON encoding of v.
func dataIs(m client.Message, v any) bool {
	b, err := json.Marshal(v)
	return err == nil && string(b) == string(m.Data)
}

// dataInt decodes m's data as an integer; ok is false for other data.
func dataInt(m client.Message) (n int, ok bool) {
	return n, json.Unmarshal(m.Data, &n) == nil
}

// closeCode is the close code in err when it is a *client.CloseError.
func closeCode(err error) int {
	var ce *client.CloseError
	if errors.As(err, &ce) {
		return ce.Code
	}
	return 0
}

// waitStopped waits until g has stopped by itself and returns Err.
func (g *goClient) waitStopped(ctx context.Context) error {
	select {
	case <-g.Done():
		return g.Err()
	case <-ctx.Done():
		return fmt.Errorf("client still running: %w", ctx.Err())
	}
}

// cutter is an HTTP client whose dialer keeps the connections it made, so
// that a test can drop them the way a network does (no close frame), and
// can hold new dials back while it changes the world.
type cutter struct {
	mu    sync.Mutex
	conns []net.Conn
	gate  chan struct{} // nil: dials pass; else they wait until it is closed
	tr    *http.Transport
}

func newCutter() *cutter {
	c := &cutter{}
	var d net.Dialer
	c.tr = &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c.mu.Lock()
		gate := c.gate
		c.mu.Unlock()
		if gate != nil {
			select {
			case <-gate:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		nc, err := d.DialContext(ctx, network, addr)
		if err == nil {
			c.mu.Lock()
			c.conns = append(c.conns, nc)
			c.mu.Unlock()
		}
		return nc, err
	}}
	return c
}

func (c *cutter) client() *http.Client { return &http.Client{Transport: c.tr} }

// hold makes new dials wait until the returned function is called (which
// may be called again).
func (c *cutter) hold() (release func()) {
	gate := make(chan struct{})
	c.mu.Lock()
	c.gate = gate
	c.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			c.mu.Lock()
			c.gate = nil
			c.mu.Unlock()
			close(gate)
		})
	}
}

// cut closes every connection made so far.
func (c *cutter) cut() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, nc := range c.conns {
		_ = nc.Close()
	}
	c.conns = nil
}
