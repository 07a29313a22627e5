package client

import (
	"context"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// outQueue bounds the frames waiting for the writer; a request that finds
// it full waits (bounded by its ctx), a pong is skipped (any other frame
// going out proves liveness just as well).
const outQueue = 64

// session is one connection, from its welcome to its end.
type session struct {
	ws      *websocket.Conn
	welcome Welcome
	started time.Time
	out     chan outFrame
	ready   chan struct{} // closed once the rooms are rejoined: requests may go
	done    chan struct{} // closed when the connection has ended

	mu      sync.Mutex
	ended   bool
	pending map[string]*pending
	written uint64 // frames of requests written, to number them
}

// outFrame is a frame to write and the request it carries, if any.
type outFrame struct {
	b []byte
	p *pending
}

// pending is a request waiting for its ack or error.
type pending struct {
	id     uint64
	seq    uint64 // its place on the wire, once written (see presence)
	kind   string // the request's type
	room   string
	rejoin bool    // a join the client made itself after reconnecting
	since  *uint64 // join: the since it asked for
	echo   *bool   // join
	users  []string
	got    bool        // presence: the presence frame came
	ch     chan result // buffered: the read loop never waits on it
}

type result struct {
	f   *frame
	err error
}

func newSession(ws *websocket.Conn, w Welcome) *session {
	return &session{
		ws:      ws,
		welcome: w,
		started: time.Now(),
		out:     make(chan outFrame, outQueue),
		ready:   make(chan struct{}),
		done:    make(chan struct{}),
		pending: map[string]*pending{},
	}
}

// writeLoop writes queued frames one at a time; a write that fails or
// takes longer than timeout ends the connection (the read loop notices).
func (s *session) writeLoop(timeout time.Duration) {
	for {
		select {
		case o := <-s.out:
			if o.p != nil {
				s.mu.Lock()
				s.written++
				o.p.seq = s.written
				s.mu.Unlock()
			}
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			err := s.ws.Write(ctx, websocket.MessageText, o.b)
			cancel()
			if err != nil {
				_ = s.ws.CloseNow()
				return
			}
		case <-s.done:
			return
		}
	}
}

// trySend queues b unless the queue is full.
func (s *session) trySend(b []byte) {
	select {
	case s.out <- outFrame{b: b}:
	default:
	}
}

// add registers p under id; false once the connection has ended.
func (s *session) add(id string, p *pending) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return false
	}
	s.pending[id] = p
	return true
}

func (s *session) take(id string) *pending {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.pending[id]
	delete(s.pending, id)
	return p
}

// presence gives a presence frame to the presence request for its room
// written first among those still without one: the server answers
// requests in the order they arrive, the frame just before its ack, and
// the frame carries no ref.
func (s *session) presence(f *frame) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var first *pending
	for _, p := range s.pending {
		if p.kind == "presence" && p.room == f.Room && !p.got && p.seq != 0 && (first == nil || p.seq < first.seq) {
			first = p
		}
	}
	if first != nil {
		first.got, first.users = true, f.Users
	}
}

// end fails every pending request and marks the connection ended.
func (s *session) end() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return
	}
	s.ended = true
	for id, p := range s.pending {
		p.ch <- result{err: ErrDisconnected}
		delete(s.pending, id)
	}
	close(s.done)
}
