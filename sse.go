package switchboard

import (
	"crypto/subtle"
	"encoding/base64"
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

	// Requests forwarded by other nodes, handled in arrival order by one
	// goroutine at a time (never on the broker's delivery goroutine).
	inboxMu  sync.Mutex
	inbox    [][]byte
	draining bool
}

// maxForwardedBacklog bounds the forwarded POSTs waiting for one session;
// past it they are dropped (a client sends one POST at a time).
const maxForwardedBacklog = 64

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
	if !h.takesHandshake(w, r) {
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
				h.opts.Limits.MaxMessageBytes, sessionToken(c, sess.secret))
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

// A session token is "<conn>.<secret>.<user>", the user id in unpadded
// base64url: a node that does not hold the stream finds the node that does
// through the user's broker channel, which only nodes with a connection of
// the user hear. The secret is what proves the sender read the welcome.
func sessionToken(c *Conn, secret string) string {
	return c.id + "." + secret + "." + base64.RawURLEncoding.EncodeToString([]byte(c.user))
}

// sessionRef is a parsed session token.
type sessionRef struct{ conn, secret, user string }

func parseSession(token string) (sessionRef, bool) {
	conn, rest, ok1 := strings.Cut(token, ".")
	secret, u, ok2 := strings.Cut(rest, ".")
	user, err := base64.RawURLEncoding.DecodeString(u)
	if !ok1 || !ok2 || err != nil || conn == "" || secret == "" || len(user) == 0 {
		return sessionRef{}, false
	}
	return sessionRef{conn, secret, string(user)}, true
}

// local finds the open stream of ref on this node, or nil.
func (h *Hub) local(conn, secret string) *sseSession {
	v, ok := h.sseSessions.Load(conn)
	if !ok {
		return nil
	}
	s := v.(*sseSession)
	if subtle.ConstantTimeCompare([]byte(secret), []byte(s.secret)) != 1 || s.c.isClosed() {
		return nil
	}
	return s
}

// Forwarded request actions (the envelope's origin field).
const (
	forwardFrames = ""
	forwardTooBig = "too_big"
	forwardClose  = "close"
)

// bound finds where a POST or DELETE goes: the local stream, or (nil, true)
// when it is to be forwarded to the node that holds it. (nil, false) has
// been answered: 403 for a page of another origin, 404 for no such stream.
func (h *Hub) bound(w http.ResponseWriter, r *http.Request) (*sseSession, sessionRef, bool) {
	if !h.originAllowed(r) {
		writeHTTPError(w, http.StatusForbidden, "origin_not_allowed")
		return nil, sessionRef{}, false
	}
	ref, ok := parseSession(r.Header.Get(SessionHeader))
	if ok {
		if s := h.local(ref.conn, ref.secret); s != nil {
			return s, ref, true
		}
		if _, single := h.broker.(*MemoryBroker); !single {
			if _, here := h.sseSessions.Load(ref.conn); !here {
				return nil, ref, true // another node's, maybe
			}
		}
	}
	writeHTTPError(w, http.StatusNotFound, "unknown_session")
	return nil, ref, false
}

// forwardRequest hands a request to the node holding the stream. That node
// checks the secret; this one cannot, so a forwarded request is answered
// 202 whatever becomes of it.
func (h *Hub) forwardRequest(w http.ResponseWriter, r *http.Request, ref sessionRef, action string, body []byte) {
	env := envelope{kind: kindSSERequest, origin: action, target: ref.conn + "." + ref.secret, frame: body}
	if err := h.broker.Publish(r.Context(), userChannelPfx+ref.user, env.marshal()); err != nil {
		h.log.Warn("event-stream request not forwarded", "error", err, "conn_id", ref.conn)
		writeHTTPError(w, http.StatusServiceUnavailable, "unavailable")
		return
	}
	w.WriteHeader(http.StatusAccepted)
}

func (h *Hub) postSSE(w http.ResponseWriter, r *http.Request) {
	s, ref, ok := h.bound(w, r)
	if !ok {
		return
	}
	max := h.opts.Limits.MaxMessageBytes
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, int64(max)))
	if err != nil {
		var tooBig *http.MaxBytesError
		if !errors.As(err, &tooBig) {
			writeHTTPError(w, http.StatusBadRequest, "bad_request")
			return
		}
		// What a WebSocket frame over the limit gets.
		if s != nil {
			h.closeConn(s.c, CloseTooBig, "too_big")
		} else {
			env := envelope{kind: kindSSERequest, origin: forwardTooBig, target: ref.conn + "." + ref.secret}
			_ = h.broker.Publish(r.Context(), userChannelPfx+ref.user, env.marshal())
		}
		writeHTTPError(w, http.StatusRequestEntityTooLarge, "too_big")
		return
	}
	if s == nil {
		h.forwardRequest(w, r, ref, forwardFrames, body)
		return
	}
	h.sseRequests(s, body)
	w.WriteHeader(http.StatusNoContent)
}

func (h *Hub) deleteSSE(w http.ResponseWriter, r *http.Request) {
	s, ref, ok := h.bound(w, r)
	if !ok {
		return
	}
	if s == nil {
		h.forwardRequest(w, r, ref, forwardClose, nil)
		return
	}
	h.sseClose(s)
	w.WriteHeader(http.StatusNoContent)
}

// sseClose is the client's close frame.
func (h *Hub) sseClose(s *sseSession) {
	s.c.lastSeen.Store(time.Now().UnixNano())
	h.peerClosed(s.c, CloseNormal, "bye")
}

// sseForwarded carries out a request another node received for a stream
// of this node's.
func (h *Hub) sseForwarded(env *envelope) {
	conn, secret, _ := strings.Cut(env.target, ".")
	s := h.local(conn, secret)
	if s == nil {
		return // not ours (another connection of the user's), or gone
	}
	switch env.origin {
	case forwardTooBig:
		h.closeConn(s.c, CloseTooBig, "too_big")
	case forwardClose:
		h.sseClose(s)
	default:
		s.inboxMu.Lock()
		if len(s.inbox) >= maxForwardedBacklog {
			s.inboxMu.Unlock()
			h.counters.drop("rate_limited") // a client outrunning its own node
			return
		}
		s.inbox = append(s.inbox, env.frame)
		if s.draining {
			s.inboxMu.Unlock()
			return
		}
		s.draining = true
		s.inboxMu.Unlock()
		go h.drainForwarded(s)
	}
}

func (h *Hub) drainForwarded(s *sseSession) {
	for {
		s.inboxMu.Lock()
		if len(s.inbox) == 0 {
			s.draining = false
			s.inbox = nil
			s.inboxMu.Unlock()
			return
		}
		body := s.inbox[0]
		s.inbox = s.inbox[1:]
		s.inboxMu.Unlock()
		h.sseRequests(s, body)
	}
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
