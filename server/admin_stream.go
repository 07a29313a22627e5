package server

import (
	"bytes"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/lesismal/nbio/nbhttp"
)

const (
	// maxAdminStreams bounds the dashboards open on one node at once.
	maxAdminStreams = 64
	// streamWriteTimeout is how long one event may take to reach a
	// dashboard; a peer that stopped reading is cut after it.
	streamWriteTimeout = 10 * time.Second
)

// streamSet fans each snapshot out to the open dashboards. A dashboard
// that has not taken the previous snapshot skips it: it only ever wants
// the newest.
type streamSet struct {
	mu     sync.Mutex
	subs   map[*stream]struct{}
	closed bool
	wg     sync.WaitGroup
	last   []byte
}

type stream struct {
	ch   chan []byte // capacity 1: the newest snapshot not yet written
	done chan struct{}
}

func newStreamSet() *streamSet { return &streamSet{subs: map[*stream]struct{}{}} }

// add opens a stream, with the newest snapshot already waiting in it; it
// fails when the node is at maxAdminStreams or closing.
func (s *streamSet) add() (*stream, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || len(s.subs) >= maxAdminStreams {
		return nil, false
	}
	st := &stream{ch: make(chan []byte, 1), done: make(chan struct{})}
	if s.last != nil {
		st.ch <- s.last
	}
	s.subs[st] = struct{}{}
	s.wg.Add(1)
	return st, true
}

func (s *streamSet) remove(st *stream) {
	s.mu.Lock()
	_, ok := s.subs[st]
	delete(s.subs, st)
	s.mu.Unlock()
	if ok {
		s.wg.Done()
	}
}

// publish hands ev to every stream, replacing what one has not taken.
func (s *streamSet) publish(ev []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.last = ev
	for st := range s.subs {
		select {
		case <-st.ch:
		default:
		}
		st.ch <- ev
	}
}

func (s *streamSet) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.subs)
}

// close ends every stream and waits until their writers have returned.
func (s *streamSet) close() {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		for st := range s.subs {
			close(st.done)
		}
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// sseEvent frames one snapshot as a server-sent event.
func sseEvent(snapshot []byte) []byte {
	b := make([]byte, 0, len(snapshot)+32)
	b = append(b, "event: snapshot\ndata: "...)
	b = append(b, bytes.ReplaceAll(snapshot, []byte("\n"), nil)...) // JSON from encoding/json has none; be sure
	return append(b, "\n\n"...)
}

// stream serves GET /admin/stream: text/event-stream, one "snapshot"
// event per second. On nbio's engine, whose response writer keeps a
// handler's output until it returns, the socket is taken over and the
// events are written to it directly; on net/http (TLS, HTTP/2 included)
// they are flushed through the response writer.
func (a *admin) stream(w http.ResponseWriter, r *http.Request) {
	st, ok := a.streams.add()
	if !ok {
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, errUnavailableAdmin, "too many open dashboards on this node")
		return
	}
	if _, onNBIO := w.(*nbhttp.Response); onNBIO {
		conn, _, err := w.(http.Hijacker).Hijack()
		if err != nil {
			a.streams.remove(st)
			a.log.Warn("admin stream not started", "error", err)
			return
		}
		if hc, ok := conn.(*nbhttp.Conn); ok {
			conn = hc.Conn
		}
		// nbio armed an HTTP keep-alive read deadline; the stream ends by
		// a failed write instead.
		_ = conn.SetReadDeadline(time.Time{})
		go a.pumpConn(st, conn)
		return
	}
	a.pumpWriter(st, w, r)
}

// sseHeader is the response head written on a taken-over socket: the
// stream ends when the connection does.
const sseHeader = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\n" +
	"X-Content-Type-Options: nosniff\r\nX-Accel-Buffering: no\r\nConnection: close\r\n\r\n" +
	"retry: 2000\n\n"

// pumpConn writes events to a taken-over socket until a write fails or
// the node closes the stream. Each write has a deadline: on nbio the
// write returns at once and the deadline closes a socket whose bytes the
// peer does not take; elsewhere the write itself waits up to it.
func (a *admin) pumpConn(st *stream, conn net.Conn) {
	defer a.streams.remove(st)
	defer conn.Close()
	write := func(b []byte) bool {
		_ = conn.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
		_, err := conn.Write(b)
		return err == nil
	}
	if !write([]byte(sseHeader)) {
		return
	}
	for {
		select {
		case <-st.done:
			return
		case ev := <-st.ch:
			if !write(sseEvent(ev)) {
				return
			}
		}
	}
}

// pumpWriter streams through a net/http response writer until the client
// goes, a write fails or the node closes the stream.
func (a *admin) pumpWriter(st *stream, w http.ResponseWriter, r *http.Request) {
	defer a.streams.remove(st)
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Accel-Buffering", "no") // nginx: pass each event on at once
	w.WriteHeader(http.StatusOK)
	write := func(b []byte) bool {
		_ = rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
		if _, err := w.Write(b); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	if !write([]byte("retry: 2000\n\n")) {
		return
	}
	for {
		select {
		case <-r.Context().Done():
			return
		case <-st.done:
			return
		case ev := <-st.ch:
			if !write(sseEvent(ev)) {
				return
			}
		}
	}
}
