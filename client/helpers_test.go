package client

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/switchboardhq/switchboard"
)

// wait bounds every wait of the tests.
const wait = 10 * time.Second

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// The hub's nbio engine keeps package-level pools and timers alive
		// for the life of the process.
		goleak.IgnoreTopFunction("github.com/lesismal/nbio/timer.(*Timer).loop"),
		goleak.IgnoreTopFunction("github.com/lesismal/nbio/taskpool.(*TaskPool).run"),
	)
}

// startHub runs a real hub behind a test server and returns it with the
// ws:// URL of its endpoint; both are closed when the test ends.
func startHub(t testing.TB, opts switchboard.Options) (*switchboard.Hub, string) {
	t.Helper()
	opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	hub, err := switchboard.New(opts)
	if err != nil {
		t.Fatalf("switchboard.New: %v", err)
	}
	srv := httptest.NewServer(hub.Handler())
	t.Cleanup(func() {
		_ = hub.Close()
		srv.Close()
	})
	return hub, "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws"
}

// states records a client's state changes.
type states chan StateChange

func (s states) on(sc StateChange) {
	select {
	case s <- sc:
	default: // a test that cares reads them
	}
}

// expect waits for a change to st and returns it.
func (s states) expect(t *testing.T, st State) StateChange {
	t.Helper()
	deadline := time.After(wait)
	for {
		select {
		case sc := <-s:
			if sc.State == st {
				return sc
			}
		case <-deadline:
			t.Fatalf("timed out waiting for state %v", st)
		}
	}
}

// dialTest connects as user with the test's defaults: short backoffs and
// the state changes recorded.
func dialTest(t *testing.T, url, user string, opts Options) (*Client, states) {
	t.Helper()
	st := make(states, 256)
	if opts.OnState == nil {
		opts.OnState = st.on
	}
	if opts.MinBackoff == 0 {
		opts.MinBackoff, opts.MaxBackoff = 10*time.Millisecond, 50*time.Millisecond
	}
	if user != "" {
		url += "?user=" + user
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	c, err := Dial(ctx, url, &opts)
	if err != nil {
		t.Fatalf("dial %s: %v", user, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	st.expect(t, StateConnected)
	return c, st
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	t.Cleanup(cancel)
	return ctx
}

// next returns the next message, failing the test after wait.
func next(t *testing.T, c *Client) Message {
	t.Helper()
	select {
	case m, ok := <-c.Messages():
		if !ok {
			t.Fatalf("Messages closed: %v", c.Err())
		}
		return m
	case <-time.After(wait):
		t.Fatal("timed out waiting for a message")
	}
	panic("unreachable")
}

// nextEvent skips events until one of type typ.
func nextEvent(t *testing.T, c *Client, typ EventType) Event {
	t.Helper()
	deadline := time.After(wait)
	for {
		select {
		case e, ok := <-c.Events():
			if !ok {
				t.Fatalf("Events closed: %v", c.Err())
			}
			if e.Type == typ {
				return e
			}
		case <-deadline:
			t.Fatalf("timed out waiting for event %s", typ)
		}
	}
}

// publish publishes data to room from the application side.
func publish(t *testing.T, hub *switchboard.Hub, room string, data string) {
	t.Helper()
	if _, err := hub.Publish(ctxT(t), room, json.RawMessage(data)); err != nil {
		t.Fatalf("hub.Publish: %v", err)
	}
}

// conns is an HTTP client whose dialer keeps every connection it made, so
// that a test can cut them as a network would, and can hold new dials
// back while it changes the world.
type conns struct {
	mu   sync.Mutex
	all  []net.Conn
	gate chan struct{} // nil: dials pass; else they wait until it is closed
	tr   *http.Transport
}

func newConns(t *testing.T) *conns {
	c := &conns{}
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
			c.all = append(c.all, nc)
			c.mu.Unlock()
		}
		return nc, err
	}}
	t.Cleanup(c.tr.CloseIdleConnections)
	return c
}

func (c *conns) client() *http.Client { return &http.Client{Transport: c.tr} }

// hold makes new dials wait until the returned function is called.
func (c *conns) hold() (release func()) {
	gate := make(chan struct{})
	c.mu.Lock()
	c.gate = gate
	c.mu.Unlock()
	return func() {
		c.mu.Lock()
		c.gate = nil
		c.mu.Unlock()
		close(gate)
	}
}

// cut closes every connection made so far, without a close frame.
func (c *conns) cut() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, nc := range c.all {
		_ = nc.Close()
	}
	c.all = nil
}

// proxy forwards TCP connections to a server until frozen: then it keeps
// the connections open but passes nothing more either way, like a server
// that hangs or a network path that silently drops packets.
type proxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	frozen chan struct{} // closed by freeze; connections made after it pass again
	conns  []net.Conn
	wg     sync.WaitGroup
}

func newProxy(t *testing.T, target string) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target, frozen: make(chan struct{})}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

func (p *proxy) accept() {
	defer p.wg.Done()
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		out, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = in.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, in, out)
		frozen := p.frozen
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(in, out, frozen)
		go p.pipe(out, in, frozen)
	}
}

// pipe copies from src to dst until frozen is closed; after that it reads
// and drops.
func (p *proxy) pipe(src, dst net.Conn, frozen chan struct{}) {
	defer p.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if err != nil {
			_ = dst.Close()
			return
		}
		select {
		case <-frozen:
			continue
		default:
		}
		if _, err := dst.Write(buf[:n]); err != nil {
			return
		}
	}
}

// freeze stops forwarding on every current connection.
func (p *proxy) freeze() {
	p.mu.Lock()
	defer p.mu.Unlock()
	close(p.frozen)
	p.frozen = make(chan struct{})
}

func (p *proxy) close() {
	_ = p.ln.Close()
	p.mu.Lock()
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// asError returns err as an *Error, failing the test otherwise.
func asError(t *testing.T, err error, code string) {
	t.Helper()
	var se *Error
	if !errors.As(err, &se) || se.Code != code {
		t.Fatalf("got error %v, want *Error with code %s", err, code)
	}
}
