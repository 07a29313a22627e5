package switchboard

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/switchboardhq/switchboard/presence"
)

// Limits bound what one connection, one user and the whole hub may use.
// The zero value of every field means its documented default.
type Limits struct {
	// MaxMessageBytes is the largest inbound frame; a larger one closes the
	// connection with 1009 too_big. Default 65536.
	MaxMessageBytes int
	// MaxDataBytes is the largest data field of a publish or send accepted
	// from a client; larger data is refused with error too_large while the
	// connection stays open. Default MaxMessageBytes.
	MaxDataBytes int
	// MaxDataDepth bounds how deeply arrays and objects may nest in data;
	// deeper data is refused with error bad_request, so that no client can
	// make a recipient's JSON parser recurse without end. Default 32.
	MaxDataDepth int
	// HandshakeRate and HandshakeBurst limit new connections per second
	// from one IP address; past them the handshake is answered 429
	// too_many_handshakes before any work. Defaults 20 and 50.
	HandshakeRate  float64
	HandshakeBurst int
	// Rate is the sustained number of messages per second a connection may
	// send; Burst is how many it may send at once. Defaults 20 and 40.
	Rate  float64
	Burst int
	// MaxRateViolations is how many rate-limited frames in a row close the
	// connection with 1008 policy. Default 10.
	MaxRateViolations int
	// MaxConnsPerUser is how many connections one user may hold. Default 8.
	// With a multi-node Broker and the default cluster presence it counts
	// the user's connections on every node (as fresh as the broker carries
	// them: two nodes admitting the same user in the same instant may both
	// admit), and PolicyEvictOldest closes the oldest one wherever it is;
	// otherwise it counts this node's.
	MaxConnsPerUser int
	// PerUserPolicy says what happens to a connection past MaxConnsPerUser:
	// PolicyReject (the default) answers HTTP 429, PolicyEvictOldest accepts
	// it and closes the user's oldest connection with 4002 replaced.
	PerUserPolicy PerUserPolicy
	// MaxConns is the total number of connections; past it the handshake is
	// answered 503 server_full with Retry-After. Default 100000.
	MaxConns int
	// MaxRooms is how many rooms one connection may be in. Default 64.
	MaxRooms int
	// QueueBytes bounds the bytes queued for one connection and not yet
	// taken by the kernel; past it the connection is closed 4001
	// slow_consumer. Default 1 MiB.
	QueueBytes int
	// WriteTimeout is how long queued bytes may wait for the peer to read
	// them before the connection is closed as a slow consumer. Default 5s.
	WriteTimeout time.Duration
}

// PerUserPolicy chooses what happens when a user opens one connection too many.
type PerUserPolicy string

// Per-user connection policies.
const (
	PolicyReject      PerUserPolicy = "reject"
	PolicyEvictOldest PerUserPolicy = "evict-oldest"
)

// Default values, as documented on Limits and Options.
const (
	DefaultMaxMessageBytes       = 64 << 10
	DefaultMaxDataDepth          = 32
	DefaultHandshakeRate         = 20
	DefaultHandshakeBurst        = 50
	DefaultRate                  = 20
	DefaultBurst                 = 40
	DefaultMaxRateViolations     = 10
	DefaultMaxConnsPerUser       = 8
	DefaultMaxConns              = 100000
	DefaultMaxRooms              = 64
	DefaultQueueBytes            = 1 << 20
	DefaultWriteTimeout          = 5 * time.Second
	DefaultPingInterval          = 25 * time.Second
	DefaultPongTimeout           = 10 * time.Second
	DefaultShutdownTimeout       = 10 * time.Second
	DefaultPresenceBatchSize     = 100
	DefaultPresenceTTL           = presence.DefaultTTL
	DefaultPresenceBatchInterval = time.Second
	// Subprotocol is offered back to clients that ask for it.
	Subprotocol = "switchboard.v1"
)

func (l Limits) withDefaults() Limits {
	if l.MaxMessageBytes <= 0 {
		l.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if l.MaxDataBytes <= 0 {
		l.MaxDataBytes = l.MaxMessageBytes
	}
	if l.MaxDataDepth <= 0 {
		l.MaxDataDepth = DefaultMaxDataDepth
	}
	if l.HandshakeRate <= 0 {
		l.HandshakeRate = DefaultHandshakeRate
	}
	if l.HandshakeBurst <= 0 {
		l.HandshakeBurst = DefaultHandshakeBurst
	}
	if l.Rate <= 0 {
		l.Rate = DefaultRate
	}
	if l.Burst <= 0 {
		l.Burst = DefaultBurst
	}
	if l.MaxRateViolations <= 0 {
		l.MaxRateViolations = DefaultMaxRateViolations
	}
	if l.MaxConnsPerUser <= 0 {
		l.MaxConnsPerUser = DefaultMaxConnsPerUser
	}
	if l.PerUserPolicy == "" {
		l.PerUserPolicy = PolicyReject
	}
	if l.MaxConns <= 0 {
		l.MaxConns = DefaultMaxConns
	}
	if l.MaxRooms <= 0 {
		l.MaxRooms = DefaultMaxRooms
	}
	if l.QueueBytes <= 0 {
		l.QueueBytes = DefaultQueueBytes
	}
	if l.WriteTimeout <= 0 {
		l.WriteTimeout = DefaultWriteTimeout
	}
	return l
}

// Identity is who a connection belongs to, as established by authentication.
type Identity struct {
	// User is the user id; required.
	User string
	// Rooms limits which rooms the user may join and publish to: exact
	// names, or patterns ending in * that match by prefix. Nil allows every
	// room except other users' private rooms (user:<id>).
	Rooms []string
	// ExpiresAt, when set, closes the connection with 1008 at that time.
	ExpiresAt time.Time
}

// Authenticator establishes the identity of a handshake request before any
// upgrade. Returning an error answers 401 unauthorized; the error text is
// logged (so it must never contain the token) but not sent.
type Authenticator func(r *http.Request) (*Identity, error)

// Options configure a Hub. The zero value works: development authentication
// from the user query parameter, an in-memory broker and presence, and the
// documented default limits and intervals.
type Options struct {
	// Authenticate establishes identities. Default QueryUserAuth, which
	// trusts the user query parameter: for development only.
	Authenticate Authenticator
	// AllowedOrigins lists the browser origins that may connect: exact
	// origins ("https://app.example.com"), hosts ("app.example.com") or
	// host patterns ("*.example.com"). Default: the request's own host.
	// Requests without an Origin header (non-browser clients) are allowed.
	AllowedOrigins []string
	// ReadOnlyRooms lists rooms (exact names or prefix* patterns) where
	// clients may join and listen but not publish: only application code
	// (Hub.Publish, the backend API) does. Default none.
	ReadOnlyRooms []string
	// Limits bound connections and users; zero fields take their defaults.
	Limits Limits
	// PingInterval is how often the server pings (default 25s);
	// PongTimeout is how much longer it waits for any frame before closing
	// with 4000 ping_timeout (default 10s).
	PingInterval time.Duration
	PongTimeout  time.Duration
	// PresenceBatchSize is the room size (users, cluster-wide) past
	// which join and leave are no longer announced one frame per change:
	// the changes of each PresenceBatchInterval go out together as one
	// presence_diff frame, so filling a room of N costs O(N) frames, not
	// O(N^2). Defaults 100 and 1s.
	PresenceBatchSize     int
	PresenceBatchInterval time.Duration
	// Broker carries publishes between nodes. Default: in-memory, one node.
	Broker Broker
	// Presence answers who is online and in a room across nodes. Default:
	// this node's registry with the in-memory Broker; with any other Broker,
	// a replica of every node's share kept in step over the Broker.
	Presence Presence
	// PresenceTTL bounds how long a node that went silent (killed, cut off)
	// keeps its users present elsewhere: each node says it is alive every
	// PresenceTTL/3, and the others drop its users, announcing leave, once
	// they have heard nothing from it for PresenceTTL. Default 30s.
	PresenceTTL time.Duration
	// History keeps the recent messages of chosen rooms (and users) so
	// that a client coming back gets what it missed. Default: none.
	History HistoryOptions
	// Compression negotiates permessage-deflate with clients that offer
	// it. Default off (see CompressionOptions).
	Compression CompressionOptions
	// NodeID names this node in logs, stats and ids. Default: random.
	NodeID string
	// Observer, if set, receives ping round-trip times and outbound
	// backlog samples (for histograms); Hub.Counters has the totals.
	Observer Observer
	// OnNodeMessage receives what any node of the cluster, this one
	// included, sent with Hub.SendToNodes, with the sender's NodeID. It
	// runs on the broker's delivery goroutine (with the in-memory broker,
	// inside SendToNodes) and must not block; a panic in it is recovered
	// and counted. Default nil: such messages are ignored.
	OnNodeMessage func(node string, payload []byte)
	// Logger receives events with counts and ids, never payloads or
	// tokens. Default slog.Default().
	Logger *slog.Logger
	// Callbacks observe the life cycle; each runs on the connection's own
	// goroutine, must not block for long, and a panic in one closes only
	// that connection (1011).
	OnConnect    func(c *Conn)
	OnMessage    func(c *Conn, raw []byte)
	OnDisconnect func(c *Conn, code int, reason string)
	// OnPresence observes per-user transitions across the cluster: online
	// and offline (first and last connection anywhere), room join and leave
	// (first and last connection in the room anywhere). One node reports
	// each: the one whose connection caused it, or the oldest live node
	// for the users of a node that went silent; in two narrow races (two
	// devices on two nodes going, or coming, at the same moment) both
	// nodes do. It runs on a goroutine of its own, one event at a time in
	// order, and may call the hub; a slow callback delays later events.
	OnPresence func(PresenceEvent)
}

func (o Options) withDefaults() Options {
	if o.Authenticate == nil {
		o.Authenticate = QueryUserAuth
	}
	o.Limits = o.Limits.withDefaults()
	if o.PingInterval <= 0 {
		o.PingInterval = DefaultPingInterval
	}
	if o.PongTimeout <= 0 {
		o.PongTimeout = DefaultPongTimeout
	}
	o.History = o.History.withDefaults()
	o.Compression = o.Compression.withDefaults()
	if o.PresenceTTL <= 0 {
		o.PresenceTTL = DefaultPresenceTTL
	}
	if o.PresenceBatchSize <= 0 {
		o.PresenceBatchSize = DefaultPresenceBatchSize
	}
	if o.PresenceBatchInterval <= 0 {
		o.PresenceBatchInterval = DefaultPresenceBatchInterval
	}
	if o.NodeID == "" {
		o.NodeID = "node-" + randomHex(3)
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}
