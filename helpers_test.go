package switchboard_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/lesismal/nbio/nbhttp"

	"github.com/switchboardhq/switchboard"
	"github.com/switchboardhq/switchboard/internal/testkit"
)

// wait is the deadline for any single expected event. Generous: the
// machine is shared and the race detector is slow; tests never wait this
// long unless something is broken.
const wait = 10 * time.Second

type testServer struct {
	hub  *switchboard.Hub
	addr string // host:port
	logs *syncBuffer
}

func (s *testServer) wsURL(query string) string { return "ws://" + s.addr + "/ws?" + query }

type starter func(t *testing.T, opts switchboard.Options) *testServer

// transports runs fn against both ways of serving the hub: net/http with
// goroutine-based connections, and nbio's event-driven engine.
func transports(t *testing.T, fn func(t *testing.T, start starter)) {
	t.Run("nethttp", func(t *testing.T) { fn(t, startStd) })
	t.Run("nbio", func(t *testing.T) {
		if raceEnabled {
			t.Skip("nbio runs without -race (see race_on_test.go)")
		}
		fn(t, startNBIO)
	})
}

func newHub(t *testing.T, opts switchboard.Options) (*switchboard.Hub, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	hub, err := switchboard.New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return hub, logs
}

func startStd(t *testing.T, opts switchboard.Options) *testServer {
	t.Helper()
	hub, logs := newHub(t, opts)
	mux := http.NewServeMux()
	mux.Handle("/ws", hub.Handler())
	mux.Handle("/sse", hub.SSEHandler())
	srv := httptest.NewServer(mux)
	t.Cleanup(func() {
		_ = hub.Close()
		srv.Close()
	})
	return &testServer{hub: hub, addr: strings.TrimPrefix(srv.URL, "http://"), logs: logs}
}

func startNBIO(t *testing.T, opts switchboard.Options) *testServer {
	t.Helper()
	if raceEnabled {
		t.Skip("nbio runs without -race (see race_on_test.go)")
	}
	hub, logs := newHub(t, opts)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/ws", hub.Handler())
	mux.Handle("/sse", hub.SSEHandler())
	engine := nbhttp.NewEngine(nbhttp.Config{
		Network: "tcp",
		Addrs:   []string{ln.Addr().String()},
		Listen:  func(string, string) (net.Listener, error) { return ln, nil },
		Handler: mux,
		NPoller: 1,
	})
	switchboard.ConfigureEngine(engine)
	if err := engine.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = hub.Close()
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		_ = engine.Shutdown(ctx)
	})
	return &testServer{hub: hub, addr: ln.Addr().String(), logs: logs}
}

// syncBuffer collects log output from many goroutines.
type syncBuffer = testkit.Buffer

// frame is one decoded server frame.
type frame map[string]any

func (f frame) str(k string) string { s, _ := f[k].(string); return s }

// client is a real WebSocket client (coder/websocket) whose frames are
// read in the background so tests can wait for them with deadlines.
type client struct {
	t      *testing.T
	conn   *websocket.Conn
	frames chan frame
	done   chan struct{}
	// quit, closed by close, frees a readLoop blocked on a full frames
	// (a test that stopped reading while the server goes on sending).
	quit     chan struct{}
	quitOnce sync.Once
	err      error // read error once done is closed
	welcome  frame
	autoPong atomic.Bool
}

func dial(t *testing.T, s *testServer, user string) *client {
	t.Helper()
	c, resp, err := dialRaw(s, "user="+user, nil)
	if err != nil {
		t.Fatalf("dial as %s: %v (status %v)", user, err, status(resp))
	}
	cl := newClient(t, c)
	cl.welcome = cl.expect("welcome")
	return cl
}

func status(resp *http.Response) any {
	if resp == nil {
		return nil
	}
	return resp.StatusCode
}

// noKeepAlive makes refused handshakes close their connection instead of
// parking it in a pool, so goroutine counts mean something.
var noKeepAlive = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}

func dialRaw(s *testServer, query string, hdr http.Header) (*websocket.Conn, *http.Response, error) {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, s.wsURL(query), &websocket.DialOptions{
		HTTPHeader: hdr, Subprotocols: []string{"switchboard.v1"}, HTTPClient: noKeepAlive,
	})
	if c != nil {
		c.SetReadLimit(8 << 20)
	}
	return c, resp, err
}

func newClient(t *testing.T, c *websocket.Conn) *client {
	cl := &client{t: t, conn: c, frames: make(chan frame, 4096), done: make(chan struct{}), quit: make(chan struct{})}
	cl.autoPong.Store(true)
	go cl.readLoop()
	t.Cleanup(cl.close)
	return cl
}

func (c *client) readLoop() {
	defer close(c.done)
	for {
		_, data, err := c.conn.Read(context.Background())
		if err != nil {
			c.err = err
			return
		}
		var f frame
		if jerr := json.Unmarshal(data, &f); jerr != nil {
			c.err = fmt.Errorf("server sent invalid JSON %q: %w", data, jerr)
			return
		}
		if f.str("type") == "ping" && c.autoPong.Load() {
			_ = c.conn.Write(context.Background(), websocket.MessageText, []byte(`{"type":"pong"}`))
			continue
		}
		select {
		case c.frames <- f:
		case <-c.quit:
			return
		}
	}
}

func (c *client) send(v any) {
	c.t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		c.t.Fatal(err)
	}
	c.sendRaw(string(data))
}

func (c *client) sendRaw(s string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := c.conn.Write(ctx, websocket.MessageText, []byte(s)); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// next returns the next frame, failing the test after the deadline.
func (c *client) next() frame {
	c.t.Helper()
	select {
	case f := <-c.frames:
		return f
	case <-c.done:
		select {
		case f := <-c.frames:
			return f
		default:
		}
		c.t.Fatalf("connection ended while waiting for a frame: %v", c.err)
	case <-time.After(wait):
		c.t.Fatalf("no frame within %v", wait)
	}
	return nil
}

// expect returns the next frame of the given type, failing on any other.
func (c *client) expect(typ string) frame {
	c.t.Helper()
	f := c.next()
	if f.str("type") != typ {
		c.t.Fatalf("got %v, want a %s frame", f, typ)
	}
	return f
}

// request sends a frame with an id and returns the ack or error for it,
// collecting other frames that arrived meanwhile.
func (c *client) request(v map[string]any) (answer frame, others []frame) {
	c.t.Helper()
	return requestOn(c.t, c.send, c.next, v)
}

func (c *client) mustAck(v map[string]any) frame {
	c.t.Helper()
	return mustAckOn(c.t, c.send, c.next, v)
}

// requestOn sends v with a fresh id through send and reads frames with
// next until the ack or error answering it, returning it and the frames
// that came first: the request of every kind of test connection.
func requestOn(t *testing.T, send func(any), next func() frame, v map[string]any) (answer frame, others []frame) {
	t.Helper()
	id := fmt.Sprintf("r%d", time.Now().UnixNano())
	v["id"] = id
	send(v)
	for {
		f := next()
		if (f.str("type") == "ack" || f.str("type") == "error") && f.str("ref") == id {
			return f, others
		}
		others = append(others, f)
	}
}

func mustAckOn(t *testing.T, send func(any), next func() frame, v map[string]any) frame {
	t.Helper()
	f, _ := requestOn(t, send, next, v)
	if f.str("type") != "ack" {
		t.Fatalf("request %v: got %v, want ack", v, f)
	}
	return f
}

func (c *client) join(room string) frame {
	c.t.Helper()
	return c.mustAck(map[string]any{"type": "join", "room": room})
}

// expectClose waits for the server to close the connection with code and
// returns the close reason.
func (c *client) expectClose(code websocket.StatusCode) string {
	c.t.Helper()
	deadline := time.After(wait)
	for {
		select {
		case <-c.frames:
		case <-c.done:
			var ce websocket.CloseError
			if !errors.As(c.err, &ce) || ce.Code != code {
				c.t.Fatalf("connection ended with %v, want close %d", c.err, code)
			}
			return ce.Reason
		case <-deadline:
			c.t.Fatalf("not closed with %d within %v", code, wait)
		}
	}
}

// noFrame asserts that nothing but the given marker arrives: it sends a
// ping with an id and requires the ack to be the next frame, which proves
// no other frame was queued before it.
func (c *client) noFrame() {
	c.t.Helper()
	f, others := c.request(map[string]any{"type": "ping"})
	var unexpected []frame
	for _, o := range others {
		if o.str("type") != "pong" {
			unexpected = append(unexpected, o)
		}
	}
	if f.str("type") != "ack" || len(unexpected) > 0 {
		c.t.Fatalf("unexpected frames before the ping's ack: %v (answer %v)", unexpected, f)
	}
}

// rawClient speaks WebSocket over a bare TCP socket so that a test can stop
// reading, or go silent, exactly as a vanished peer would.
type rawClient struct {
	t  *testing.T
	nc net.Conn
	br *bufio.Reader
}

func dialRawTCP(t *testing.T, s *testServer, query string) *rawClient {
	t.Helper()
	nc, err := net.DialTimeout("tcp", s.addr, wait)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nc.Close() })
	key := make([]byte, 16)
	_, _ = rand.Read(key)
	req := "GET /ws?" + query + " HTTP/1.1\r\nHost: " + s.addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + base64.StdEncoding.EncodeToString(key) + "\r\n\r\n"
	if _, err := nc.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	rc := &rawClient{t: t, nc: nc, br: bufio.NewReader(nc)}
	_ = nc.SetReadDeadline(time.Now().Add(wait))
	resp, err := http.ReadResponse(rc.br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake: status %d", resp.StatusCode)
	}
	return rc
}

// readFrame reads one server frame (unmasked, unfragmented).
func (r *rawClient) readFrame() (op byte, payload []byte, err error) {
	var hdr [2]byte
	if _, err = io.ReadFull(r.br, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := uint64(hdr[1] & 0x7f)
	switch n {
	case 126:
		var b [2]byte
		if _, err = io.ReadFull(r.br, b[:]); err != nil {
			return 0, nil, err
		}
		n = uint64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		if _, err = io.ReadFull(r.br, b[:]); err != nil {
			return 0, nil, err
		}
		n = binary.BigEndian.Uint64(b[:])
	}
	payload = make([]byte, n)
	_, err = io.ReadFull(r.br, payload)
	return hdr[0] & 0x0f, payload, err
}

// readUntilClose reads frames until a close frame and returns its code.
func (r *rawClient) readUntilClose() (code int, frames int) {
	r.t.Helper()
	_ = r.nc.SetReadDeadline(time.Now().Add(wait))
	for {
		op, p, err := r.readFrame()
		if err != nil {
			r.t.Fatalf("no close frame after %d frames: %v", frames, err)
		}
		if op == 0x8 {
			if len(p) < 2 {
				return 1005, frames
			}
			return int(binary.BigEndian.Uint16(p)), frames
		}
		frames++
	}
}

// writeFrame sends a masked client frame with the given first byte.
func (r *rawClient) writeFrame(b0 byte, payload []byte) error {
	hdr := []byte{b0, 0x80}
	switch {
	case len(payload) < 126:
		hdr[1] |= byte(len(payload))
	case len(payload) <= 0xffff:
		hdr[1] |= 126
		hdr = binary.BigEndian.AppendUint16(hdr, uint16(len(payload)))
	default:
		hdr[1] |= 127
		hdr = binary.BigEndian.AppendUint64(hdr, uint64(len(payload)))
	}
	mask := []byte{1, 2, 3, 4}
	hdr = append(hdr, mask...)
	masked := make([]byte, len(payload))
	for i := range payload {
		masked[i] = payload[i] ^ mask[i%4]
	}
	_, err := r.nc.Write(append(hdr, masked...))
	return err
}

// waitFor polls cond until it holds or the deadline passes. Used only for
// state with no event to wait on (counts in the registry).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testkit.Eventually(t, wait, 5*time.Millisecond, what, cond)
}

// close drops the connection at once, as a lost network would.
func (c *client) close() {
	c.quitOnce.Do(func() { close(c.quit) })
	_ = c.conn.CloseNow()
	<-c.done
}
