package switchboard

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/switchboardhq/switchboard/internal/protocol"
	"github.com/switchboardhq/switchboard/internal/sse"
	"github.com/switchboardhq/switchboard/internal/transport"
	"github.com/switchboardhq/switchboard/internal/wsframe"
)

// SessionHeader carries an event-stream session on the requests bound to
// it (POST and DELETE of SSEHandler).
const SessionHeader = "Switchboard-Session"

// SSEHandler returns the http.Handler of the server-sent-events transport,
// for clients that cannot open a WebSocket (a proxy that refuses the
// upgrade, say). Mount it at /sse beside Handler at /ws.
//
//   - GET opens a text/event-stream carrying the same frames as a
//     WebSocket, one event each (a "close" event ends the stream with the
//     code and reason a WebSocket would get). Admission is the same as for
//     /ws: token, origin, every limit, the same HTTP answers. Its welcome
//     frame carries "session". Query parameters room (repeatable) join
//     rooms at once; with a single room, Last-Event-ID (or since, and
//     epoch) resume it from history.
//   - POST sends requests: the body is one frame, or several one per line,
//     with the session in the Switchboard-Session header. Answers come on
//     the stream; the POST gets 204, 404 for a session that is not open,
//     413 (and the stream closes 1009) for a body over MaxMessageBytes.
//   - DELETE closes the stream as a client's close frame would (1000).
//
// Liveness is the WebSocket's: the client answers every ping event with a
// pong POST, and a stream with no request for PingInterval + PongTimeout
// is closed 4000. The socket must be HTTP/1.1 (no HTTP/2 to this
// handler), as for WebSocket upgrades.
func (h *Hub) SSEHandler() http.Handler { return http.HandlerFunc(h.serveSSE) }

// sseSession is what binds requests to an open stream: an unguessable
// secret that only the stream's reader learns (in its welcome), and the
// lock that makes the session's requests one reader, as a socket's frames
// are.
type sseSession struct {
	c      *Conn
	secret string
	mu     sync.Mutex
}

func (h *Hub) serveSSE(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet:
		h.openSSE(w, r)
	case http.MethodPost:
		h.postSSE(w, r)
	case http.MethodDelete:
		h.deleteSSE(w, r)
	default:
		w.Header().Set("Allow", "GET, POST, DELETE")
		writeHTTPError(w, http.StatusMethodNotAllowed, "method_not_allowed")
	}
}

func (h *Hub) openSSE(w http.ResponseWriter, r *http.Request) {
	if h.draining.Load() || h.ctx.Err() != nil {
		h.refuse(w, http.StatusServiceUnavailable, "shutting_down", "shutting_down")
		return
	}
	if !h.handshakes.allow(clientIP(r), time.Now()) {
		h.refuse(w, http.StatusTooManyRequests, "too_many_handshakes", "too_many_handshakes")
		return
	}
	if r.ProtoMajor != 1 {
		h.refuse(w, http.StatusHTTPVersionNotSupported, "bad_handshake", "http1_required")
		return
	}
	if !h.originAllowed(r) {
		h.refuse(w, http.StatusForbidden, "origin_not_allowed", "origin_not_allowed")
		return
	}
	joins, resume := sseJoins(r)
	var sess *sseSession
	h.accept(w, r, acceptSpec{
		hijack: func(c *Conn) (transport.Transport, func(), func(), error) {
			wire := &sseWire{c: c}
			t, attach, serve, err := transport.Hijack(w, wire, h.writers, h.opts.Limits.WriteTimeout)
			if err != nil {
				return nil, nil, nil, err
			}
			sess = &sseSession{c: c, secret: randomHex(16)}
			h.sseSessions.Store(c.id, sess)
			return newSSETransport(t, wire, resume), attach, serve, nil
		},
		first: func(c *Conn) []byte {
			welcome := protocol.WelcomeSession(c.id, c.user, h.opts.PingInterval, h.opts.PongTimeout,
				h.opts.Limits.MaxMessageBytes, c.id+"."+sess.secret)
			return wsframe.AppendFrame([]byte(sse.ResponseHead), wsframe.OpText, welcome)
		},
		opened: func(*Conn) {
			if len(joins) > 0 {
				h.sseRequests(sess, joins)
			}
		},
	})
}

// sseJoins builds the join requests of a stream's room parameters: for a
// plain EventSource (or curl) that cannot POST before it reads. Their acks
// come as ordinary events, with refs "sse-join-<room>".
func sseJoins(r *http.Request) (body []byte, resume string) {
	q := r.URL.Query()
	var rooms []string
	for _, v := range q["room"] {
		for _, room := range strings.Split(v, ",") {
			if room = strings.TrimSpace(room); room != "" {
				rooms = append(rooms, room)
			}
		}
	}
	var since *uint64
	epoch := q.Get("epoch")
	if len(rooms) == 1 {
		// Offsets are per room: a position means something for one room only.
		pos := r.Header.Get("Last-Event-ID")
		if pos == "" {
			pos = q.Get("since")
		}
		if n, e, ok := sse.ParsePosition(pos); ok {
			since = &n
			if e != "" {
				epoch = e
			}
		}
	}
	if len(rooms) == 1 {
		resume = rooms[0]
	}
	for _, room := range rooms {
		req := struct {
			Type  string  `json:"type"`
			ID    string  `json:"id"`
			Room  string  `json:"room"`
			Since *uint64 `json:"since,omitempty"`
			Epoch string  `json:"epoch,omitempty"`
		}{Type: "join", ID: sse.JoinRef(room), Room: room, Since: since}
		if since != nil {
			req.Epoch = epoch
		}
		b, _ := json.Marshal(req) // strings and numbers only: cannot fail
		body = append(append(body, b...), '\n')
	}
	return body, resume
}

// session finds the open stream a request is bound to, or nil.
func (h *Hub) session(r *http.Request) *sseSession {
	id, secret, ok := strings.Cut(r.Header.Get(SessionHeader), ".")
	if !ok {
		return nil
	}
	v, ok := h.sseSessions.Load(id)
	if !ok {
		return nil
	}
	s := v.(*sseSession)
	if subtle.ConstantTimeCompare([]byte(secret), []byte(s.secret)) != 1 || s.c.isClosed() {
		return nil
	}
	return s
}

func (h *Hub) postSSE(w http.ResponseWriter, r *http.Request) {
	if !h.originAllowed(r) {
		writeHTTPError(w, http.StatusForbidden, "origin_not_allowed")
		return
	}
	s := h.session(r)
	if s == nil {
		writeHTTPError(w, http.StatusNotFound, "unknown_session")
		return
	}
	max := h.opts.Limits.MaxMessageBytes
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, int64(max)))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			// What a WebSocket frame over the limit gets.
			h.counters.drop("too_big")
			h.closeConn(s.c, CloseTooBig, "too_big")
			writeHTTPError(w, http.StatusRequestEntityTooLarge, "too_big")
			return
		}
		writeHTTPError(w, http.StatusBadRequest, "bad_request")
		return
	}
	h.sseRequests(s, body)
	w.WriteHeader(http.StatusNoContent)
}

func (h *Hub) deleteSSE(w http.ResponseWriter, r *http.Request) {
	if !h.originAllowed(r) {
		writeHTTPError(w, http.StatusForbidden, "origin_not_allowed")
		return
	}
	s := h.session(r)
	if s == nil {
		writeHTTPError(w, http.StatusNotFound, "unknown_session")
		return
	}
	s.c.lastSeen.Store(time.Now().UnixNano())
	h.peerClosed(s.c, CloseNormal, "bye")
	w.WriteHeader(http.StatusNoContent)
}

// sseRequests handles the frames of one POST as a socket's reader handles
// frames: in order, one session at a time, each a sign of life. A panic
// closes only this connection with 1011.
func (h *Hub) sseRequests(s *sseSession, body []byte) {
	c := s.c
	s.mu.Lock()
	defer s.mu.Unlock()
	defer func() {
		if p := recover(); p != nil {
			h.panicked(c, "handler", p)
		}
	}()
	c.lastSeen.Store(time.Now().UnixNano()) // an empty POST is a sign of life too
	sse.Requests(body, func(frame []byte) bool {
		if c.isClosed() {
			return false
		}
		c.lastSeen.Store(time.Now().UnixNano())
		h.handleText(c, frame)
		return true
	})
}
