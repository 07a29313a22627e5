// Package floor is the bench's lower bound: a bare broadcast loop on the
// same nbio engine the server uses, with nothing else. It accepts
// WebSocket connections at /ws, greets them, acknowledges any frame (the
// join) and, for each POST /api/publish, appends one pre-encoded frame to
// every connection's buffer and writes each buffer with one write, so that
// frames queued while a write was pending leave together. There is no
// registry, room, authentication, presence, heartbeat or limit.
//
// What the bench measures against it is what the machine's kernel and
// the engine cost at least for the same load; the server's figures are
// read as ratios to it. It is part of the bench command only and must
// not import any package of the project (internal/layers checks).
package floor

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"sync"

	"github.com/lesismal/nbio/nbhttp"
	"github.com/lesismal/nbio/nbhttp/websocket"
)

// flush writes what c has queued, with one write.
func (c *conn) flush() {
	// nbio's Write does not block: it writes at once and copies what the
	// kernel does not take. Holding the lock keeps frames in order.
	c.mu.Lock()
	_, _ = c.ws.Conn.Write(c.buf)
	c.buf = c.buf[:0]
	c.queued = false
	c.mu.Unlock()
}

// flusher writes queued connections, yielding every 32 writes as the
// server's writers do, so that publishes arriving meanwhile join the
// buffers still waiting.
func (s *Server) flusher() {
	n := 0
	for c := range s.pending {
		c.flush()
		if n++; n%32 == 0 {
			runtime.Gosched()
		}
	}
}

// conn is one subscriber and the frames waiting for its next write.
type conn struct {
	ws     *websocket.Conn
	mu     sync.Mutex
	buf    []byte // frames not yet handed to the socket
	queued bool   // pending holds this conn
}

// Server is a running floor. It is safe for concurrent use.
type Server struct {
	mu    sync.RWMutex
	conns map[*websocket.Conn]*conn
	list  []*conn // the same conns, rebuilt when it changes
	dirty bool
	eng   *nbhttp.Engine
	// pending holds connections with frames to write, each at most once.
	pending chan *conn
	up      *websocket.Upgrader
}

// Listen starts a floor on ln.
func Listen(ln net.Listener) (*Server, error) {
	s := &Server{conns: map[*websocket.Conn]*conn{}, pending: make(chan *conn, 1<<20)}
	for range runtime.GOMAXPROCS(0) {
		go s.flusher()
	}
	s.up = websocket.NewUpgrader()
	s.up.CheckOrigin = func(*http.Request) bool { return true }
	s.up.KeepaliveTime = 0 // no read deadline: connections stay until they close
	s.up.OnOpen(s.open)
	s.up.OnMessage(func(c *websocket.Conn, _ websocket.MessageType, _ []byte) {
		_ = c.WriteMessage(websocket.TextMessage, []byte(`{"type":"ack","ref":"j"}`))
	})
	s.up.OnClose(s.gone)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ws", func(w http.ResponseWriter, r *http.Request) {
		// OnOpen registers the connection; on failure the upgrader answers.
		_, _ = s.up.Upgrade(w, r, nil)
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, `{"status":"ok"}`) })
	mux.HandleFunc("GET /api/stats", s.stats)
	mux.HandleFunc("GET /stats", s.stats)
	mux.HandleFunc("POST /api/publish", s.publish)
	s.eng = nbhttp.NewEngine(nbhttp.Config{
		Network: "tcp", Addrs: []string{ln.Addr().String()},
		Listen:  func(string, string) (net.Listener, error) { return ln, nil },
		Handler: mux, MaxLoad: 1 << 20, ReleaseWebsocketPayload: true, ReadBufferSize: 4096,
	})
	if err := s.eng.Start(); err != nil {
		return nil, fmt.Errorf("start engine: %w", err)
	}
	return s, nil
}

// Shutdown stops the engine, closes every connection and then the
// flushers (no publish runs once the engine has stopped).
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.eng.Shutdown(ctx)
	close(s.pending)
	return err
}

func (s *Server) open(c *websocket.Conn) {
	s.mu.Lock()
	s.conns[c] = &conn{ws: c}
	s.dirty = true
	s.mu.Unlock()
	_ = c.WriteMessage(websocket.TextMessage, []byte(`{"type":"welcome"}`))
}

func (s *Server) gone(c *websocket.Conn, _ error) {
	s.mu.Lock()
	delete(s.conns, c)
	s.dirty = true
	s.mu.Unlock()
}

// members is a snapshot of the connections, rebuilt only after a change.
func (s *Server) members() []*conn {
	s.mu.RLock()
	if !s.dirty {
		l := s.list
		s.mu.RUnlock()
		return l
	}
	s.mu.RUnlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dirty {
		s.list = make([]*conn, 0, len(s.conns))
		for _, c := range s.conns {
			s.list = append(s.list, c)
		}
		s.dirty = false
	}
	return s.list
}

func (s *Server) stats(w http.ResponseWriter, _ *http.Request) {
	s.mu.RLock()
	n := len(s.conns)
	s.mu.RUnlock()
	_, _ = io.WriteString(w, `{"connections":`+strconv.Itoa(n)+`}`)
}

// publish broadcasts {"type":"message","room":R,"data":D} to every
// connection: one frame, encoded once, appended to each buffer, and the
// connections whose buffer was empty handed to the flushers. A buffer
// queued and not yet written takes the frame too.
func (s *Server) publish(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Room string          `json:"room"`
		Data json.RawMessage `json:"data"`
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err == nil {
		err = json.Unmarshal(body, &req)
	}
	if err != nil || len(req.Data) == 0 {
		http.Error(w, `{"error":"bad_request"}`, http.StatusBadRequest)
		return
	}
	payload := make([]byte, 0, len(req.Data)+len(req.Room)+40)
	payload = append(payload, `{"type":"message","room":`...)
	payload = strconv.AppendQuote(payload, req.Room)
	payload = append(payload, `,"data":`...)
	payload = append(payload, req.Data...)
	payload = append(payload, '}')
	frame := textFrame(payload)

	for _, c := range s.members() {
		c.mu.Lock()
		c.buf = append(c.buf, frame...)
		queue := !c.queued
		c.queued = true
		c.mu.Unlock()
		if queue {
			s.pending <- c
		}
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, `{"id":"floor"}`)
}

// textFrame is an unmasked, final WebSocket text frame (RFC 6455 5.2).
func textFrame(p []byte) []byte {
	var f []byte
	switch n := len(p); {
	case n < 126:
		f = append(make([]byte, 0, 2+n), 0x81, byte(n))
	case n <= 0xffff:
		f = append(make([]byte, 0, 4+n), 0x81, 126, 0, 0)
		binary.BigEndian.PutUint16(f[2:], uint16(n))
	default:
		f = append(make([]byte, 0, 10+n), 0x81, 127, 0, 0, 0, 0, 0, 0, 0, 0)
		binary.BigEndian.PutUint64(f[2:], uint64(n))
	}
	return append(f, p...)
}
