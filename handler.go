package switchboard

import (
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"golang.org/x/time/rate"

	"github.com/switchboardhq/switchboard/internal/protocol"
	"github.com/switchboardhq/switchboard/internal/transport"
	"github.com/switchboardhq/switchboard/internal/wsframe"
)

// Handler returns the http.Handler that accepts WebSocket connections.
// Mount it at /ws on any net/http server; under nbio's engine (see
// ConfigureEngine) idle connections cost no goroutine.
func (h *Hub) Handler() http.Handler { return http.HandlerFunc(h.serveWS) }

// QueryUserAuth takes the identity from the user query parameter. It
// trusts the client completely: for development and tests only.
func QueryUserAuth(r *http.Request) (*Identity, error) {
	user := r.URL.Query().Get("user")
	if user == "" {
		return nil, errors.New("missing user query parameter")
	}
	return &Identity{User: user}, nil
}

// BearerToken returns the token from the Authorization header or, for
// browsers that cannot set headers, the token query parameter.
func BearerToken(r *http.Request) string {
	if auth := r.Header.Get("Authorization"); len(auth) > 7 && strings.EqualFold(auth[:7], "bearer ") {
		return strings.TrimSpace(auth[7:])
	}
	return r.URL.Query().Get("token")
}

// retryAfterSeconds is what a full or draining server asks clients to wait.
const retryAfterSeconds = "5"

func writeHTTPError(w http.ResponseWriter, status int, code string) {
	w.Header().Set("Content-Type", "application/json")
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", retryAfterSeconds)
	}
	w.WriteHeader(status)
	_, _ = fmt.Fprintf(w, `{"error":%q}`, code)
}

// refuse answers a handshake with an HTTP error, counts it and logs it
// with its reason (never the request's query string).
func (h *Hub) refuse(w http.ResponseWriter, status int, reason, code string, attrs ...any) {
	h.counters.rejected(reason)
	h.log.Info("handshake refused", append([]any{"status", status, "reason", reason}, attrs...)...)
	writeHTTPError(w, status, code)
}

// takesHandshake refuses any new connection while draining, and those
// over the per-address handshake rate; it reports whether to go on.
func (h *Hub) takesHandshake(w http.ResponseWriter, r *http.Request) bool {
	if h.draining.Load() || h.ctx.Err() != nil {
		h.refuse(w, http.StatusServiceUnavailable, "shutting_down", "shutting_down")
		return false
	}
	if !h.handshakes.allow(clientIP(r), time.Now()) {
		h.refuse(w, http.StatusTooManyRequests, "too_many_handshakes", "too_many_handshakes")
		return false
	}
	return true
}

func (h *Hub) serveWS(w http.ResponseWriter, r *http.Request) {
	if !h.takesHandshake(w, r) {
		return
	}
	key, msg := checkUpgrade(r)
	if msg != "" {
		if v := r.Header.Get("Sec-WebSocket-Version"); v != "" && v != "13" {
			w.Header().Set("Sec-WebSocket-Version", "13")
			h.refuse(w, http.StatusUpgradeRequired, "bad_handshake", "unsupported_websocket_version")
			return
		}
		h.refuse(w, http.StatusBadRequest, "bad_handshake", "websocket_upgrade_required", "problem", msg)
		return
	}
	if !h.originAllowed(r) {
		h.refuse(w, http.StatusForbidden, "origin_not_allowed", "origin_not_allowed")
		return
	}
	sub := wantsSubprotocol(r)
	var extensions string
	h.accept(w, r, acceptSpec{
		prepare: func(c *Conn) { extensions = h.acceptDeflate(c, r) },
		hijack: func(c *Conn) (transport.Transport, func(), func(), error) {
			return transport.Hijack(w, c.wire(), h.writers, h.opts.Limits.WriteTimeout)
		},
		first: func(c *Conn) []byte {
			first := handshakeResponse(key, sub, extensions)
			welcome := protocol.Welcome(c.id, c.user, h.opts.PingInterval, h.opts.PongTimeout, h.opts.Limits.MaxMessageBytes)
			return wsframe.AppendFrame(first, wsframe.OpText, welcome)
		},
	})
}

// acceptSpec is what differs between transports when a connection is
// accepted: how its socket is taken over, and the first bytes it is sent.
type acceptSpec struct {
	// prepare, when set, settles the new connection's transport options
	// (compression) before anything can reach it.
	prepare func(c *Conn)
	// hijack takes the socket (see transport.Hijack).
	hijack func(c *Conn) (t transport.Transport, attach, serve func(), err error)
	// first returns the response head and the welcome frame, which go
	// first in the queue so that nothing published meanwhile overtakes
	// them.
	first func(c *Conn) []byte
	// opened, when set, runs once the connection is open, before serve.
	opened func(c *Conn)
}

// accept admits an authenticated client (total and per-user limits), takes
// its socket, registers it and opens it. The caller has checked the
// transport's own handshake and the origin.
func (h *Hub) accept(w http.ResponseWriter, r *http.Request, spec acceptSpec) {
	ident, err := h.opts.Authenticate(r)
	if err != nil || ident == nil || ident.User == "" {
		h.refuse(w, http.StatusUnauthorized, "unauthorized", "unauthorized", "error", errString(err))
		return
	}
	if h.total.Add(1) > int64(h.opts.Limits.MaxConns) {
		h.total.Add(-1)
		h.refuse(w, http.StatusServiceUnavailable, "server_full", "server_full", "user_id", ident.User)
		return
	}
	c := h.newConn(r, ident)
	if spec.prepare != nil {
		spec.prepare(c)
	}
	lim := h.opts.Limits
	// The user's stripe is held from the limit check until presence knows
	// the user is online, so that a concurrent last disconnect of the same
	// user cannot report offline after this connection reported online.
	unlockUser := h.lockUser(c.user)
	limit, remote, remoteOpened := h.userLimitHere(c.user, lim.PerUserPolicy == PolicyEvictOldest)
	evicted, firstOfUser, ok := h.reg.addUserConn(c, limit, lim.PerUserPolicy == PolicyEvictOldest)
	if !ok {
		unlockUser()
		h.total.Add(-1)
		h.refuse(w, http.StatusTooManyRequests, "too_many_connections", "too_many_connections", "user_id", c.user)
		return
	}
	t, attach, serve, err := spec.hijack(c)
	if err != nil {
		h.reg.removeUserConn(c)
		unlockUser()
		if evicted != nil {
			evicted.evicting.Store(false) // it stays: this connection never came
		}
		h.total.Add(-1)
		h.refuse(w, http.StatusInternalServerError, "internal", "internal", "error", err.Error(), "user_id", c.user)
		return
	}
	if firstOfUser {
		if err := h.presence.Connect(h.ctx, c.user); err != nil {
			h.log.Error("presence connect failed", "error", err, "user_id", c.user)
		}
	}
	h.reportUserConns(c.user)
	unlockUser()
	if remote != "" {
		// The user's oldest connection is on another node: it goes there.
		if err := h.cluster.EvictOldest(h.ctx, remote, c.user, remoteOpened); err != nil {
			h.log.Warn("eviction request not sent", "error", err, "user_id", c.user, "node_id", remote)
		}
	}

	// While starting, c is reachable through the user index (a kick or a
	// direct message may arrive) but writes nothing and defers any close.
	// The response head and the welcome frame go first in its queue, so
	// nothing published meanwhile can overtake them.
	first := spec.first(c)
	c.mu.Lock()
	c.t = t
	c.queue = append([][]byte{first}, c.queue...)
	c.mu.Unlock()
	c.pending.Add(int64(len(first)))
	h.interest(userChannelPfx+c.user, +1)
	h.reg.addConn(c)
	h.counters.connsOpened.Add(1)
	h.log.Info("connection opened", "conn_id", c.id, "user_id", c.user, "online_count", h.Count())
	if cb := h.opts.OnConnect; cb != nil {
		h.runCallback(c, func() { cb(c) }) // a panic is recorded as a deferred 1011
	}

	// Open: reads may start (attach), queued frames flow, and a close
	// requested while starting is carried out through the ordinary path.
	attach()
	c.mu.Lock()
	c.state.Store(stateOpen)
	deferred := c.closeWhenOpen
	c.startFlushLocked()
	c.mu.Unlock()
	if deferred != nil {
		h.closeConn(c, deferred.code, deferred.reason)
	}
	if evicted != nil {
		h.closeConn(evicted, CloseReplaced, "replaced")
	}
	if spec.opened != nil {
		spec.opened(c)
	}
	serve() // net/http: this goroutine reads until the socket closes
}

// runCallback runs application code for c, closing c with 1011 if it panics.
func (h *Hub) runCallback(c *Conn, fn func()) {
	defer func() {
		if p := recover(); p != nil {
			h.panicked(c, "callback", p)
		}
	}()
	fn()
}

// panicked counts and logs a recovered panic and closes only c, with 1011;
// cleanup runs as for any other close.
func (h *Hub) panicked(c *Conn, where string, p any) {
	n := h.counters.panics.Add(1)
	h.log.Error(where+" panicked; connection closed 1011", "conn_id", c.id, "user_id", c.user,
		"panic", fmt.Sprint(p), "panics_total", n)
	h.closeConn(c, CloseInternal, "internal")
}

func (h *Hub) newConn(r *http.Request, ident *Identity) *Conn {
	now := time.Now()
	lim := h.opts.Limits
	c := &Conn{
		hub:         h,
		id:          randomHex(8),
		user:        ident.User,
		ident:       ident,
		connectedAt: now,
		userAgent:   r.UserAgent(),
		remoteAddr:  r.RemoteAddr,
		limiter:     rate.NewLimiter(rate.Limit(lim.Rate), lim.Burst),
		lastPing:    now.UnixNano(),
	}
	c.reader.MaxMessage = lim.MaxMessageBytes
	c.lastSeen.Store(now.UnixNano())
	if stream := h.userStream(c.user); stream != "" {
		// Direct messages wait for the client's first request (or
		// dmHoldFor): a client resuming with a join of user:<id> since N
		// then gets them after its ack, in order, never before it.
		c.cursors.Hold(stream)
		c.dmHoldUntil.Store(now.Add(dmHoldFor).UnixNano())
	}
	return c
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// checkUpgrade validates an RFC 6455 opening handshake and returns the key.
func checkUpgrade(r *http.Request) (key, problem string) {
	if r.Method != http.MethodGet {
		return "", "method must be GET"
	}
	if !headerHasToken(r.Header, "Connection", "upgrade") || !headerHasToken(r.Header, "Upgrade", "websocket") {
		return "", "not a WebSocket upgrade"
	}
	if r.Header.Get("Sec-WebSocket-Version") != "13" {
		return "", "unsupported version"
	}
	key = r.Header.Get("Sec-WebSocket-Key")
	if b, err := base64.StdEncoding.DecodeString(key); err != nil || len(b) != 16 {
		return "", "bad Sec-WebSocket-Key"
	}
	return key, ""
}

func headerHasToken(hdr http.Header, name, token string) bool {
	for _, v := range hdr.Values(name) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

func wantsSubprotocol(r *http.Request) bool {
	return headerHasToken(r.Header, "Sec-WebSocket-Protocol", Subprotocol)
}

const acceptGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

func handshakeResponse(key string, subprotocol bool, extensions string) []byte {
	sum := sha1.Sum([]byte(key + acceptGUID))
	b := make([]byte, 0, 256)
	b = append(b, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "...)
	b = base64.StdEncoding.AppendEncode(b, sum[:])
	if subprotocol {
		b = append(b, "\r\nSec-WebSocket-Protocol: "+Subprotocol...)
	}
	if extensions != "" {
		b = append(append(b, "\r\nSec-WebSocket-Extensions: "...), extensions...)
	}
	return append(b, "\r\n\r\n"...)
}

// originAllowed guards against cross-site WebSocket hijacking: a browser
// page from another site must not open a connection with the user's
// cookies. Clients that send no Origin are not browsers and pass.
func (h *Hub) originAllowed(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false
	}
	if len(h.opts.AllowedOrigins) == 0 {
		return strings.EqualFold(u.Host, r.Host)
	}
	host := u.Hostname()
	for _, allowed := range h.opts.AllowedOrigins {
		switch {
		case allowed == "*":
			return true
		case strings.Contains(allowed, "://"):
			if strings.EqualFold(allowed, origin) {
				return true
			}
		case strings.HasPrefix(allowed, "*."):
			if suffix := allowed[1:]; len(host) > len(suffix) && strings.HasSuffix(strings.ToLower(host), strings.ToLower(suffix)) {
				return true
			}
		default:
			if strings.EqualFold(allowed, u.Host) || strings.EqualFold(allowed, host) {
				return true
			}
		}
	}
	return false
}
