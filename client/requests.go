package client

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"
)

// JoinOption changes a join.
type JoinOption func(*request)

// Echo says whether this client receives its own publishes to the room
// (default true). With Echo(false), messages recovered after a reconnect
// may still include this client's own publishes.
func Echo(on bool) JoinOption { return func(r *request) { r.Echo = &on } }

// Since asks the server for the messages after offset in epoch, in a room
// that keeps history: a position saved by the application (see Position).
// They are delivered on Messages, before any later live message, when
// JoinResult.Recovered says they were all found.
func Since(offset uint64, epoch string) JoinOption {
	return func(r *request) { r.Since, r.Epoch = &offset, epoch }
}

// Join enters room and returns its ack. The client rejoins the room after
// every reconnect until Leave, resuming rooms with history where it left
// off. Like every request, Join waits for a connection if the client is
// reconnecting. If ctx ends first, Join returns ctx's error, but the join
// may still take effect when the server answers later.
func (c *Client) Join(ctx context.Context, room string, opts ...JoinOption) (*JoinResult, error) {
	req := &request{Type: "join", Room: room}
	for _, o := range opts {
		o(req)
	}
	f, err := c.do(ctx, req, &pending{room: room, since: req.Since, echo: req.Echo})
	if err != nil {
		return nil, fmt.Errorf("join %s: %w", room, err)
	}
	res := &JoinResult{Users: f.Users, History: f.Offset != nil, Epoch: f.Epoch}
	if f.Offset != nil {
		res.Offset = *f.Offset
	}
	res.Recovered = f.Recovered != nil && *f.Recovered
	return res, nil
}

// Leave leaves room; it is no longer rejoined. Leaving a room the client
// joined succeeds while disconnected too: membership does not outlive a
// connection.
func (c *Client) Leave(ctx context.Context, room string) error {
	c.mu.Lock()
	_, had := c.rooms[room]
	delete(c.rooms, room)
	s := c.cur
	c.mu.Unlock()
	if had && !isReady(s) {
		return nil // a rejoin still on its way is undone when its ack comes
	}
	_, err := c.do(ctx, &request{Type: "leave", Room: room}, &pending{room: room})
	var se *Error
	if had && (errors.Is(err, ErrDisconnected) || errors.As(err, &se) && se.Code == CodeNotJoined) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("leave %s: %w", room, err)
	}
	return nil
}

// Publish sends data to everyone in room, which the client must have
// joined. data is marshalled with encoding/json; a json.RawMessage or
// []byte holding JSON goes as it is.
func (c *Client) Publish(ctx context.Context, room string, data any) error {
	raw, err := marshalData(data)
	if err == nil {
		_, err = c.do(ctx, &request{Type: "publish", Room: room, Data: raw}, &pending{room: room})
	}
	if err != nil {
		return fmt.Errorf("publish to %s: %w", room, err)
	}
	return nil
}

// Send sends data to every connection of user, wherever they are. A user
// who is not online simply gets nothing; that is not an error.
func (c *Client) Send(ctx context.Context, user string, data any) error {
	raw, err := marshalData(data)
	if err == nil {
		_, err = c.do(ctx, &request{Type: "send", To: user, Data: raw}, &pending{})
	}
	if err != nil {
		return fmt.Errorf("send to %s: %w", user, err)
	}
	return nil
}

// Presence asks who is in room (on the server node this client is
// connected to); the client need not be in it. The users are sorted.
func (c *Client) Presence(ctx context.Context, room string) ([]string, error) {
	f, err := c.do(ctx, &request{Type: "presence", Room: room}, &pending{room: room})
	if err != nil {
		return nil, fmt.Errorf("presence of %s: %w", room, err)
	}
	return f.Users, nil
}

// Rooms lists the rooms the client is in and rejoins after a reconnect.
func (c *Client) Rooms() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]string, 0, len(c.rooms))
	for name := range c.rooms {
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}

// Position is where a joined room with history stands for this client: the
// offset of the last message delivered on Messages and the epoch it counts
// in, what Since resumes from (for example after a restart of the
// application). ok is false for rooms without history or not joined.
func (c *Client) Position(room string) (offset uint64, epoch string, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.rooms[room]
	if r == nil || !r.pos {
		return 0, "", false
	}
	return r.offset, r.epoch, true
}

func marshalData(data any) (json.RawMessage, error) {
	switch d := data.(type) {
	case json.RawMessage:
		return d, nil
	case []byte:
		return d, nil
	}
	b, err := json.Marshal(data)
	if err != nil {
		return nil, fmt.Errorf("encoding data: %w", err)
	}
	return b, nil
}

func isReady(s *session) bool {
	if s == nil {
		return false
	}
	select {
	case <-s.ready:
		return true
	default:
		return false
	}
}

// do waits for a connection that is ready for requests, then sends req.
func (c *Client) do(ctx context.Context, req *request, p *pending) (*frame, error) {
	s, err := c.ready(ctx)
	if err != nil {
		return nil, err
	}
	return c.roundTrip(ctx, s, req, p)
}

// ready returns the current connection once its rooms are rejoined.
func (c *Client) ready(ctx context.Context) (*session, error) {
	for {
		c.mu.Lock()
		s, changed, stopped := c.cur, c.changed, c.closing || c.final
		c.mu.Unlock()
		if stopped {
			return nil, ErrClosed
		}
		if s != nil {
			select {
			case <-s.ready:
				return s, nil
			case <-s.done:
			case <-changed:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// roundTrip sends req on s with a fresh id and waits for its answer. A
// request whose ctx ends after it went out stays registered until its
// answer comes, so that later answers still find their requests.
func (c *Client) roundTrip(ctx context.Context, s *session, req *request, p *pending) (*frame, error) {
	p.id = c.nextID.Add(1)
	p.kind = req.Type
	p.ch = make(chan result, 1)
	req.ID = strconv.FormatUint(p.id, 10)
	b, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("encoding request: %w", err)
	}
	if limit := s.welcome.MaxMessageBytes; limit > 0 && len(b) > limit {
		return nil, fmt.Errorf("%w (%d bytes, limit %d)", ErrFrameTooLarge, len(b), limit)
	}
	if !s.add(req.ID, p) {
		return nil, ErrDisconnected
	}
	select {
	case s.out <- outFrame{b: b, p: p}:
	case <-s.done:
		return nil, ErrDisconnected
	case <-ctx.Done():
		s.take(req.ID)
		return nil, ctx.Err()
	}
	select {
	case r := <-p.ch:
		return r.f, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// answer hands an ack or error frame to its request (read loop).
func (c *Client) answer(s *session, f *frame) bool {
	var p *pending
	if f.Ref != "" {
		p = s.take(f.Ref)
	}
	if p == nil {
		if f.Type == "error" {
			c.event(Event{Type: EventError, Err: &Error{Code: f.Code, Message: f.Message}})
		}
		return true
	}
	if f.Type == "error" {
		p.ch <- result{err: &Error{Code: f.Code, Message: f.Message}}
		return true
	}
	ok := true
	switch p.kind {
	case "join":
		ok = c.joined(s, p, f)
	case "presence":
		f.Users = p.users
	}
	p.ch <- result{f: f}
	return ok
}

// joined records a join ack (read loop): the room's position, then for a
// join with since the recovered messages, delivered before anything read
// after the ack. False means the application stopped reading Messages.
func (c *Client) joined(s *session, p *pending, f *frame) bool {
	c.mu.Lock()
	r := c.rooms[p.room]
	if p.rejoin && r == nil {
		c.mu.Unlock()
		// Left while the rejoin was on its way: undo it.
		b, _ := json.Marshal(request{Type: "leave", Room: p.room})
		s.trySend(b)
		return true
	}
	if r == nil {
		r = &room{}
		c.rooms[p.room] = r
	}
	r.echo = p.echo
	var offset uint64
	if f.Offset != nil {
		offset = *f.Offset
	}
	recovered := f.Recovered != nil && *f.Recovered && p.since != nil
	switch {
	case recovered:
		r.pos, r.offset, r.epoch = true, *p.since, f.Epoch
	case f.Recovered != nil: // the gap cannot be filled: go on from here
		r.pos, r.offset, r.epoch = f.Offset != nil, offset, f.Epoch
	case f.Offset != nil: // a plain join of a room with history
		if !r.pos || r.epoch != f.Epoch || r.offset < offset {
			r.offset = offset
		}
		r.pos, r.epoch = true, f.Epoch
	default:
		r.pos = false
	}
	c.mu.Unlock()

	if p.rejoin {
		c.event(Event{Type: EventRejoin, Room: p.room, Users: f.Users, Recovered: recovered, Offset: offset, Epoch: f.Epoch})
	}
	if !recovered {
		return true
	}
	for _, raw := range f.Messages {
		var mf frame
		if json.Unmarshal(raw, &mf) != nil {
			continue
		}
		m := mf.message(true)
		if m.Offset != 0 && m.Offset <= *p.since {
			continue // had it already
		}
		if !c.deliver(m) {
			return false
		}
	}
	c.mu.Lock()
	if r := c.rooms[p.room]; r != nil && r.pos && r.offset < offset {
		r.offset = offset
	}
	c.mu.Unlock()
	return true
}

// rejoin joins the remembered rooms again on a new connection, resuming
// those with a position, then lets requests through. Rejoins go one at a
// time so that many rooms do not exceed the server's message burst; one
// refused with rate_limited is retried after a pause.
func (c *Client) rejoin(s *session) {
	c.mu.Lock()
	reqs := make([]*request, 0, len(c.rooms))
	for name, r := range c.rooms {
		req := &request{Type: "join", Room: name, Echo: r.echo}
		if r.pos {
			since := r.offset
			req.Since, req.Epoch = &since, r.epoch
		}
		reqs = append(reqs, req)
	}
	c.mu.Unlock()
	slices.SortFunc(reqs, func(a, b *request) int { return cmp.Compare(a.Room, b.Room) })

	ctx, cancel := context.WithCancel(c.ctx)
	defer cancel()
	go func() {
		select {
		case <-s.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	for _, req := range reqs {
		var err error
		for try := 0; ; try++ {
			_, err = c.roundTrip(ctx, s, req, &pending{room: req.Room, rejoin: true, since: req.Since, echo: req.Echo})
			var se *Error
			if !errors.As(err, &se) || se.Code != CodeRateLimited || try >= 10 {
				break
			}
			t := time.NewTimer(time.Second) // the bucket refills 20 a second
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return
			}
		}
		var se *Error
		if errors.As(err, &se) {
			if se.Code == CodeForbidden || se.Code == CodeBadRequest {
				c.mu.Lock()
				delete(c.rooms, req.Room)
				c.mu.Unlock()
			}
			c.event(Event{Type: EventRejoin, Room: req.Room, Err: err})
		} else if err != nil {
			return // the connection ended; the next one rejoins
		}
	}
	close(s.ready)
	c.state(StateChange{State: StateConnected})
}
