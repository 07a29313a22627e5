package client

import (
	"context"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"time"
)

// Options configure a Client. The zero value works: no token (for a
// development server, put ?user= in the URL), automatic reconnection with
// the defaults below, and nothing logged.
type Options struct {
	// Token is sent as "Authorization: Bearer <token>" on every handshake,
	// the transport the server prefers for non-browser clients (it also
	// reads ?token= from the URL, which works too). Default none.
	Token string
	// TokenFunc, if set, is called before every connection attempt and its
	// token is used instead of Token: a reconnect after 1008 token_expired
	// or a 401 then presents a fresh one. An error from it counts as a
	// failed attempt. Without it, a connection closed with 1008
	// token_expired is not reconnected (Err says so): the same token would
	// only be refused.
	TokenFunc func(ctx context.Context) (string, error)
	// HTTPHeader is added to every handshake request.
	HTTPHeader http.Header
	// HTTPClient makes the handshake requests (proxies, TLS settings, a
	// custom dialer). Default http.DefaultClient.
	HTTPClient *http.Client

	// NoReconnect turns automatic reconnection off: the client then stops
	// (StateClosed, Messages closed) when its first connection ends. By
	// default it reconnects after every loss except the close codes that
	// say not to (see Err).
	NoReconnect bool
	// MinBackoff and MaxBackoff bound the wait before a reconnect: the
	// ceiling starts at MinBackoff, doubles after every failed attempt up to
	// MaxBackoff, and the wait is drawn uniformly from [0, ceiling) ("full
	// jitter", so that many clients dropped at once do not come back at
	// once). Defaults 500ms and 15s.
	MinBackoff time.Duration
	MaxBackoff time.Duration
	// DialTimeout bounds one connection attempt, up to the welcome frame.
	// Default 10s.
	DialTimeout time.Duration
	// WriteTimeout bounds writing one frame; a write that takes longer
	// drops the connection. Default 10s.
	WriteTimeout time.Duration

	// MessageBuffer is the capacity of the Messages channel. Default 256.
	// When it is full the client waits up to SlowConsumerTimeout for room;
	// after that it drops the connection and reconnects, as a server would
	// drop a slow reader: in rooms with history nothing is lost (the
	// messages not yet delivered are recovered on rejoining), elsewhere the
	// rejoin event says Recovered false.
	MessageBuffer int
	// SlowConsumerTimeout: see MessageBuffer. Default 5s, the server's own
	// default write timeout, after which it would drop this client anyway.
	SlowConsumerTimeout time.Duration
	// EventBuffer is the capacity of the Events channel. Default 256.
	// Events never hold up the connection: when the buffer is full an event
	// is dropped and counted in the next one's Dropped, so an application
	// that does not read Events loses nothing else.
	EventBuffer int
	// ReadLimit bounds one incoming frame. Default 16 MiB: a join ack
	// carrying recovered messages or a big room's users can be large.
	ReadLimit int64

	// OnState, if set, is called on every state change, in order, from
	// the client's connection goroutine: it must not block for long (it
	// holds up reading and reconnecting) and must not call Close.
	OnState func(StateChange)
	// Logger receives connection events (never tokens or payloads).
	// Default: discard.
	Logger *slog.Logger

	// rand, for tests: a number in [0, 1).
	rand func() float64
}

// Defaults of Options.
const (
	DefaultMinBackoff          = 500 * time.Millisecond
	DefaultMaxBackoff          = 15 * time.Second
	DefaultDialTimeout         = 10 * time.Second
	DefaultWriteTimeout        = 10 * time.Second
	DefaultMessageBuffer       = 256
	DefaultEventBuffer         = 256
	DefaultSlowConsumerTimeout = 5 * time.Second
	DefaultReadLimit           = 16 << 20
	// Subprotocol is offered on every handshake.
	Subprotocol = "switchboard.v1"
)

func (o Options) withDefaults() Options {
	if o.MinBackoff <= 0 {
		o.MinBackoff = DefaultMinBackoff
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = DefaultMaxBackoff
	}
	o.MaxBackoff = max(o.MaxBackoff, o.MinBackoff)
	if o.DialTimeout <= 0 {
		o.DialTimeout = DefaultDialTimeout
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = DefaultWriteTimeout
	}
	if o.MessageBuffer <= 0 {
		o.MessageBuffer = DefaultMessageBuffer
	}
	if o.EventBuffer <= 0 {
		o.EventBuffer = DefaultEventBuffer
	}
	if o.SlowConsumerTimeout <= 0 {
		o.SlowConsumerTimeout = DefaultSlowConsumerTimeout
	}
	if o.ReadLimit <= 0 {
		o.ReadLimit = DefaultReadLimit
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.rand == nil {
		o.rand = rand.Float64
	}
	return o
}

// backoff is the wait before reconnect attempt number attempt (0 for the
// first after a loss): uniform in [0, min(hi, lo*2^attempt)), with r giving
// a number in [0, 1).
func backoff(attempt int, lo, hi time.Duration, r func() float64) time.Duration {
	ceiling := lo
	for i := 0; i < attempt && ceiling < hi; i++ {
		ceiling *= 2
	}
	ceiling = min(ceiling, hi)
	return time.Duration(r() * float64(ceiling))
}

// stopCodes are the close codes after which reconnecting would only repeat
// the problem or fight another device (docs/protocol.md, section 11).
var stopCodes = map[int]string{
	1002: "protocol_error", // a client bug: it would recur
	1003: "binary_unsupported",
	1007: "invalid_utf8",
	4002: "replaced", // two devices would evict each other forever
	4003: "kicked",   // the application wants this user gone
}

// retryHandshake says whether a refused handshake is worth retrying:
// overload and draining are, bad requests and refusals of this client are
// not. A 401 is retried only with a TokenFunc, which may bring a fresh
// token.
func retryHandshake(e *HandshakeError, freshTokens bool) bool {
	switch e.StatusCode {
	case http.StatusServiceUnavailable, http.StatusInternalServerError, http.StatusBadGateway, http.StatusGatewayTimeout:
		return true
	case http.StatusTooManyRequests:
		return e.Code != "too_many_connections" // too_many_handshakes is transient
	case http.StatusUnauthorized:
		return freshTokens
	}
	return false
}
