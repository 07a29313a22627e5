package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// stableAfter is how long a connection must stay up before the backoff
// starts again from MinBackoff: a server that accepts and drops a client
// right away must not be hammered at the shortest delay.
const stableAfter = 10 * time.Second

// Client is a connection to a Switchboard server that reconnects by
// itself. Its methods are safe for concurrent use.
type Client struct {
	url  string
	opts Options
	log  *slog.Logger

	msgs   chan Message
	events chan Event

	// ctx ends with Close; every wait of the client's goroutines ends with it.
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{} // closed when the connection goroutine has exited

	nextID    atomic.Uint64
	closeOnce sync.Once

	evMu    sync.Mutex
	dropped int // events lost since the last one delivered

	mu      sync.Mutex
	cur     *session
	changed chan struct{} // closed and replaced whenever cur changes
	rooms   map[string]*room
	welcome Welcome
	closing bool  // Close was called
	final   bool  // the client has stopped
	err     error // why it stopped, when not by Close
}

// room is what the client remembers of a joined room, to rejoin it.
type room struct {
	echo   *bool
	pos    bool   // offset and epoch are a position to resume from
	offset uint64 // the last message delivered (or the join ack's offset)
	epoch  string
	own    bool // the room's own messages carry offsets (see track)
}

// Dial connects to the /ws endpoint at rawURL (ws:// or wss://) and waits
// for the welcome frame. ctx bounds this first connection only; the client
// then lives, reconnecting as needed, until Close or a close code that
// forbids reconnecting. A first connection that fails is not retried: the
// error (a *HandshakeError when the server refused) is returned and nothing
// keeps running. opts may be nil.
func Dial(ctx context.Context, rawURL string, opts *Options) (*Client, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	o = o.withDefaults()
	c := &Client{
		url:     rawURL,
		opts:    o,
		log:     o.Logger,
		msgs:    make(chan Message, o.MessageBuffer),
		events:  make(chan Event, o.EventBuffer),
		done:    make(chan struct{}),
		changed: make(chan struct{}),
		rooms:   map[string]*room{},
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.state(StateChange{State: StateConnecting})
	s, err := c.connect(ctx)
	if err != nil {
		c.cancel()
		c.state(StateChange{State: StateClosed, Err: err})
		close(c.done)
		return nil, fmt.Errorf("dial %s: %w", redact(rawURL), err)
	}
	c.welcome = s.welcome // Welcome answers as soon as Dial returns
	go c.run(s)
	return c, nil
}

// Messages delivers message frames in the order the server sent them, with
// messages recovered after a reconnect first. It is closed when the client
// stops. See Options.MessageBuffer for what happens when nobody reads it.
func (c *Client) Messages() <-chan Message { return c.msgs }

// Events delivers presence changes, rejoins after a reconnect and stray
// error frames. It is closed when the client stops. Reading it is
// optional: see Options.EventBuffer.
func (c *Client) Events() <-chan Event { return c.events }

// Done is closed when the client has stopped: after Close, or when the
// server closed the connection with a code that forbids reconnecting.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err says why the client stopped on its own: a *CloseError with code 4002
// (replaced by a newer connection of the user), 4003 (kicked by the
// application), 1002, 1003 or 1007 (a protocol fault reconnecting would
// repeat), 1008 token_expired without Options.TokenFunc, the close of the
// only connection with NoReconnect, or a
// *HandshakeError that retrying cannot cure (401 without TokenFunc, 403,
// 429 too_many_connections, 400). It is nil while running and after Close.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Welcome is what the server announced for the current connection, or the
// last one while reconnecting.
func (c *Client) Welcome() Welcome {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.welcome
}

// Close ends the connection with 1000 and stops reconnecting; pending
// requests fail with ErrDisconnected or ErrClosed. It returns once every
// goroutine of the client has exited and both channels are closed. The
// close handshake waits at most 5s for the server's answer; Shutdown
// bounds it with a context instead.
func (c *Client) Close() error {
	_ = c.Shutdown(context.Background())
	return nil
}

// Shutdown is Close bounded by ctx: if ctx ends before the server has
// answered the close handshake, the connection is dropped without waiting
// and Shutdown returns ctx's error once the client's goroutines have
// exited. Calls after the first wait for it and return nil.
func (c *Client) Shutdown(ctx context.Context) error {
	var err error
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.closing = true
		s := c.cur
		c.mu.Unlock()
		if s != nil {
			// A close handshake lets the server announce the leave at once;
			// the library bounds it by 5s, ctx perhaps by less.
			handshake := make(chan struct{})
			go func() {
				defer close(handshake)
				_ = s.ws.Close(websocket.StatusNormalClosure, "bye")
			}()
			select {
			case <-handshake:
			case <-ctx.Done():
				// Ending the read loop's context closes the connection,
				// which ends the handshake's wait (CloseNow would wait for
				// the handshake instead).
				err = ctx.Err()
				c.cancel()
				<-handshake
			}
		}
		c.cancel()
	})
	<-c.done
	return err
}

func (c *Client) stopping() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closing || c.ctx.Err() != nil
}

func (c *Client) state(sc StateChange) {
	if c.opts.OnState != nil {
		c.opts.OnState(sc)
	}
}

// run is the connection goroutine: it serves s, then reconnects until told
// to stop.
func (c *Client) run(s *session) {
	defer close(c.done)
	attempt := 0
	for {
		err := c.serve(s)
		if time.Since(s.started) >= stableAfter {
			attempt = 0
		}
		if c.stopping() {
			c.finish(nil)
			return
		}
		if c.opts.NoReconnect || !c.retryClose(err) {
			c.log.Warn("switchboard: not reconnecting", "error", err)
			c.finish(err)
			return
		}
		for {
			delay := backoff(attempt, c.opts.MinBackoff, c.opts.MaxBackoff, c.opts.rand)
			attempt++
			if he := (*HandshakeError)(nil); errors.As(err, &he) && he.RetryAfter > delay {
				delay = he.RetryAfter
			}
			c.log.Info("switchboard: reconnecting", "error", err, "delay", delay)
			c.state(StateChange{State: StateReconnecting, Err: err, Delay: delay})
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-c.ctx.Done():
				t.Stop()
				c.finish(nil)
				return
			}
			c.state(StateChange{State: StateConnecting})
			s, err = c.connect(c.ctx)
			if err == nil {
				break
			}
			if c.stopping() {
				c.finish(nil)
				return
			}
			if he := (*HandshakeError)(nil); errors.As(err, &he) && !retryHandshake(he, c.opts.TokenFunc != nil) {
				c.log.Warn("switchboard: handshake refused, not reconnecting", "error", err)
				c.finish(err)
				return
			}
		}
	}
}

// retryClose says whether the connection's end is worth a reconnect: not
// after a close code in stopCodes, nor after 1008 token_expired when the
// token cannot change (no TokenFunc): the server would only answer the
// same token with 401.
func (c *Client) retryClose(err error) bool {
	var ce *CloseError
	if !errors.As(err, &ce) {
		return true
	}
	if stopCodes[ce.Code] != "" {
		return false
	}
	return !(ce.Code == 1008 && ce.Reason == "token_expired" && c.opts.TokenFunc == nil)
}

// finish stops the client for good; err is why (nil after Close).
func (c *Client) finish(err error) {
	c.mu.Lock()
	c.final = true
	c.err = err
	close(c.changed)
	c.changed = make(chan struct{})
	c.mu.Unlock()
	c.cancel()
	close(c.msgs)
	close(c.events)
	c.state(StateChange{State: StateClosed, Err: err})
}

// connect makes one connection attempt, up to the welcome frame.
func (c *Client) connect(ctx context.Context) (*session, error) {
	ctx, cancel := context.WithTimeout(ctx, c.opts.DialTimeout)
	defer cancel()
	hdr := c.opts.HTTPHeader.Clone()
	if hdr == nil {
		hdr = http.Header{}
	}
	token := c.opts.Token
	if c.opts.TokenFunc != nil {
		t, err := c.opts.TokenFunc(ctx)
		if err != nil {
			return nil, fmt.Errorf("token: %w", err)
		}
		token = t
	}
	if token != "" {
		hdr.Set("Authorization", "Bearer "+token)
	}
	ws, resp, err := websocket.Dial(ctx, c.url, &websocket.DialOptions{
		HTTPClient:      c.opts.HTTPClient,
		HTTPHeader:      hdr,
		Subprotocols:    []string{Subprotocol},
		CompressionMode: websocket.CompressionDisabled,
	})
	if err != nil {
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			return nil, handshakeError(resp)
		}
		// net/http's errors quote the URL, query (and so a token) included.
		if ue := (*url.Error)(nil); errors.As(err, &ue) {
			return nil, fmt.Errorf("handshake with %s: %w", redact(c.url), ue.Err)
		}
		return nil, err
	}
	ws.SetReadLimit(c.opts.ReadLimit)
	_, b, err := ws.Read(ctx)
	if err != nil {
		_ = ws.CloseNow()
		return nil, fmt.Errorf("waiting for welcome: %w", err)
	}
	var f frame
	if err := json.Unmarshal(b, &f); err != nil || f.Type != "welcome" {
		_ = ws.CloseNow()
		return nil, fmt.Errorf("first frame is not a welcome: %.64q", b)
	}
	w := Welcome{
		Conn: f.Conn, User: f.User, MaxMessageBytes: f.MaxMessageBytes,
		PingInterval: seconds(f.PingInterval), PongTimeout: seconds(f.PongTimeout),
	}
	if w.PingInterval <= 0 {
		w.PingInterval = 25 * time.Second // the protocol's default
	}
	if w.PongTimeout < 0 {
		w.PongTimeout = 0
	}
	c.log.Info("switchboard: connected", "conn_id", w.Conn, "user_id", w.User)
	return newSession(ws, w), nil
}

func handshakeError(resp *http.Response) *HandshakeError {
	e := &HandshakeError{StatusCode: resp.StatusCode}
	if resp.Body != nil {
		var body struct {
			Error string `json:"error"`
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		if json.Unmarshal(b, &body) == nil {
			e.Code = body.Error
		}
	}
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
		e.RetryAfter = time.Duration(s) * time.Second
	}
	return e
}

// redact drops the query (which may hold a token) from a URL for messages.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(invalid URL)"
	}
	u.RawQuery, u.User = "", nil
	return u.String()
}

// serve runs one connection until it ends and says why.
func (c *Client) serve(s *session) error {
	c.mu.Lock()
	c.cur = s
	c.welcome = s.welcome
	close(c.changed)
	c.changed = make(chan struct{})
	c.mu.Unlock()

	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		s.writeLoop(c.opts.WriteTimeout)
	}()
	go func() {
		defer wg.Done()
		c.rejoin(s)
	}()
	err := c.readLoop(s)
	s.end()
	_ = s.ws.CloseNow()
	wg.Wait()

	c.mu.Lock()
	c.cur = nil
	close(c.changed)
	c.changed = make(chan struct{})
	c.mu.Unlock()
	c.log.Info("switchboard: disconnected", "conn_id", s.welcome.Conn, "error", err)
	return err
}

// readLoop reads frames until the connection ends. A server that sends
// nothing for ping_interval + pong_timeout plus a margin (the server's
// sweep may be up to a quarter late, and a second covers the network) is
// taken for dead.
func (c *Client) readLoop(s *session) error {
	bound := s.welcome.PingInterval + s.welcome.PongTimeout
	silence := bound + max(time.Second, bound/4)
	for {
		ctx, cancel := context.WithTimeout(c.ctx, silence)
		typ, b, err := s.ws.Read(ctx)
		cancel()
		if err != nil {
			switch {
			case c.ctx.Err() != nil:
				return ErrClosed
			case errors.Is(err, context.DeadlineExceeded):
				return &CloseError{Code: 1006, Reason: fmt.Sprintf("no frame from the server for %v", silence)}
			}
			return closeError(err)
		}
		if typ != websocket.MessageText {
			continue
		}
		var f frame
		if err := json.Unmarshal(b, &f); err != nil {
			c.log.Warn("switchboard: unreadable frame", "error", err, "bytes", len(b))
			continue
		}
		if !c.handle(s, &f) {
			if c.ctx.Err() != nil {
				return ErrClosed
			}
			_ = s.ws.Close(websocket.StatusCode(4001), "slow_consumer")
			return &CloseError{Code: 4001, Reason: "the application did not read Messages for " + c.opts.SlowConsumerTimeout.String()}
		}
	}
}

func closeError(err error) *CloseError {
	var ce websocket.CloseError
	if errors.As(err, &ce) {
		return &CloseError{Code: int(ce.Code), Reason: ce.Reason}
	}
	return &CloseError{Code: 1006, Reason: err.Error()}
}

// handle acts on one frame; false means the application stopped reading
// Messages and the connection must go.
func (c *Client) handle(s *session, f *frame) bool {
	switch f.Type {
	case "ping":
		s.trySend(pongFrame)
	case "message":
		return c.deliver(f.message(false))
	case "ack", "error":
		return c.answer(s, f)
	case "presence":
		s.presence(f)
	case "join":
		c.event(Event{Type: EventJoin, Room: f.Room, User: f.User})
	case "leave":
		c.event(Event{Type: EventLeave, Room: f.Room, User: f.User})
	case "presence_diff":
		c.event(Event{Type: EventPresenceDiff, Room: f.Room, Joins: f.Joins, Leaves: f.Leaves})
	}
	// Other types (pong, welcome, newer ones) are ignored, as the protocol asks.
	return true
}

var pongFrame = []byte(`{"type":"pong"}`)

// deliver hands m to the application, waiting up to SlowConsumerTimeout
// when the buffer is full. The resume position moves first, so that an
// application calling Position right after receiving m sees m counted;
// if m cannot be handed over, the position moves back and a reconnect
// asks for m again.
func (c *Client) deliver(m Message) bool {
	undo := c.track(m)
	select {
	case c.msgs <- m:
		return true
	default:
	}
	t := time.NewTimer(c.opts.SlowConsumerTimeout)
	defer t.Stop()
	select {
	case c.msgs <- m:
		return true
	case <-t.C:
	case <-c.ctx.Done():
	}
	undo()
	return false
}

// track advances the resume position of the room m counts in: its own
// room, or for a direct message the private room user:<to> when joined
// (direct messages are what such a room recovers, unless the room's own
// messages carry offsets: then those take precedence). The returned
// function puts the position back. Only the read loop moves positions
// from messages, so nothing else can have moved it meanwhile.
func (c *Client) track(m Message) (undo func()) {
	if m.Offset == 0 {
		return func() {}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var r *room
	switch {
	case m.Room != "":
		if r = c.rooms[m.Room]; r != nil {
			r.own = true
		}
	case m.To != "":
		if r = c.rooms["user:"+m.To]; r != nil && r.own {
			r = nil
		}
	}
	if r == nil {
		return func() {}
	}
	offset, pos := r.offset, r.pos
	r.offset, r.pos = m.Offset, true
	return func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if r.offset == m.Offset {
			r.offset, r.pos = offset, pos
		}
	}
}

// event hands e to the application without ever waiting.
func (c *Client) event(e Event) {
	c.evMu.Lock()
	defer c.evMu.Unlock()
	e.Dropped = c.dropped
	select {
	case c.events <- e:
		c.dropped = 0
	default:
		c.dropped++
	}
}
