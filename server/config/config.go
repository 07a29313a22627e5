// Package config implements switchboard's operator-facing configuration
// contract: command-line flags, SWITCHBOARD_* environment variables and an
// optional strict YAML file, merged with the precedence
// flag > environment > file > default, then validated.
//
// It knows settings, not what they drive: it must not import any other
// package of the project, a broker client or nbio (internal/layers checks).
package config

import (
	"strings"
	"time"
)

// Config is the fully merged and defaulted server configuration.
type Config struct {
	Addr            string
	Auth            string
	JWTSecret       string
	JWTPublicKey    string
	JWKSFile        string
	JWTLeeway       time.Duration
	JWTIssuer       string
	JWTAudience     string
	TLSCert, TLSKey string
	APIKeys         []string
	AllowedOrigins  []string

	PingInterval, PongTimeout time.Duration
	MaxMessageBytes           int
	Rate                      float64
	Burst                     int

	MaxConnsPerUser int
	PerUserPolicy   string
	MaxConns        int
	MaxRooms        int
	MaxDataBytes    int
	ReadOnlyRooms   []string
	HistoryRooms    []string
	HistoryUsers    bool
	HistorySize     int
	HistoryTTL      time.Duration

	HandshakeRate    float64
	HandshakeBurst   int
	HandshakeTimeout time.Duration

	QueueBytes   int
	WriteTimeout time.Duration
	// Compression negotiates permessage-deflate; messages of at least
	// CompressionThreshold bytes then go compressed.
	Compression          bool
	CompressionThreshold int
	// SSE serves the server-sent-events fallback at /sse.
	SSE             bool
	ShutdownTimeout time.Duration

	Broker, RedisURL, NATSURL string
	HistoryReplicas           int
	ClusterName               string
	PresenceTTL               time.Duration
	NodeID                    string

	LogLevel, LogFormat string
	ConfigFile          string

	// PprofAddr serves net/http/pprof on a separate loopback listener.
	PprofAddr string

	// Admin serves the admin dashboard at /admin, reached with one of
	// AdminKeys, or of APIKeys when there are none.
	Admin     bool
	AdminKeys []string

	WebhookURL        string
	WebhookSecret     string
	WebhookMaxAge     time.Duration
	WebhookRoomEvents bool
}

// FlagInfo describes one flag for documentation: its name (without dashes),
// its environment variable, its default as shown to operators, and its meaning.
type FlagInfo struct{ Name, Env, Default, Usage string }

// Accepted values of the enumerated settings.
const (
	AuthNone = "none"
	AuthJWT  = "jwt"

	PolicyReject      = "reject"
	PolicyEvictOldest = "evict-oldest"

	BrokerMemory = "memory"
	BrokerRedis  = "redis"
	BrokerNATS   = "nats"
)

const envPrefix = "SWITCHBOARD_"

type kind int

const (
	kString   kind = iota
	kInt           // decimal integer
	kFloat         // floating point number
	kDuration      // Go duration string
	kRepeat        // list: repeatable flag, comma-separated in env and YAML scalars
	kCSV           // list: comma-separated everywhere, flag repeatable too
	kBool          // true/false (strconv.ParseBool); a bare flag means true
)

func (k kind) placeholder() string {
	switch k {
	case kInt:
		return "int"
	case kFloat:
		return "float"
	case kDuration:
		return "duration"
	case kRepeat, kCSV:
		return "list"
	case kBool:
		return "bool"
	}
	return "string"
}

// spec is one row of the flag table.
type spec struct {
	name   string
	kind   kind
	def    string // default applied by Load ("" = zero value or computed later)
	show   string // default shown to operators when it differs from def
	usage  string
	secret bool
	field  func(*Config) any // pointer to the Config field
}

func (s spec) env() string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(s.name, "-", "_"))
}

func (s spec) shownDefault() string {
	if s.show != "" {
		return s.show
	}
	return s.def
}

const configFlag = "config"

var specs = []spec{
	{name: "addr", def: "127.0.0.1:8080", usage: "listen address (host:port)",
		field: func(c *Config) any { return &c.Addr }},
	{name: "auth", show: "none on loopback, else jwt", usage: `authentication: "none" (identity from ?user=) or "jwt"`,
		field: func(c *Config) any { return &c.Auth }},
	{name: "jwt-secret", secret: true, usage: "HS256 shared secret for verifying tokens",
		field: func(c *Config) any { return &c.JWTSecret }},
	{name: "jwt-public-key", usage: "RS256 or ES256 public key (PEM) for verifying tokens",
		field: func(c *Config) any { return &c.JWTPublicKey }},
	{name: "jwks-file", usage: "JWKS file with token verification keys",
		field: func(c *Config) any { return &c.JWKSFile }},
	{name: "jwt-leeway", kind: kDuration, def: "30s", usage: "clock leeway for exp and nbf",
		field: func(c *Config) any { return &c.JWTLeeway }},
	{name: "jwt-issuer", show: "none (not checked)", usage: "required iss claim of tokens",
		field: func(c *Config) any { return &c.JWTIssuer }},
	{name: "jwt-audience", show: "none (not checked)", usage: "required aud claim of tokens (the token's aud must contain it)",
		field: func(c *Config) any { return &c.JWTAudience }},
	{name: "tls-cert", usage: "TLS certificate file (PEM); serve TLS together with --tls-key",
		field: func(c *Config) any { return &c.TLSCert }},
	{name: "tls-key", usage: "TLS private key file (PEM); serve TLS together with --tls-cert",
		field: func(c *Config) any { return &c.TLSKey }},
	{name: "api-key", kind: kRepeat, secret: true, show: "none (backend API off)",
		usage: "backend API key; repeat the flag for several (comma-separated in env)",
		field: func(c *Config) any { return &c.APIKeys }},
	{name: "allowed-origins", kind: kCSV, show: "the server's own host", usage: "allowed WebSocket Origins, comma-separated",
		field: func(c *Config) any { return &c.AllowedOrigins }},
	{name: "ping-interval", kind: kDuration, def: "25s", usage: "interval between liveness pings",
		field: func(c *Config) any { return &c.PingInterval }},
	{name: "pong-timeout", kind: kDuration, def: "10s", usage: "time to wait for a pong before closing",
		field: func(c *Config) any { return &c.PongTimeout }},
	{name: "max-message-bytes", kind: kInt, def: "65536", usage: "inbound frame size limit in bytes",
		field: func(c *Config) any { return &c.MaxMessageBytes }},
	{name: "rate", kind: kFloat, def: "20", usage: "inbound messages per second per connection",
		field: func(c *Config) any { return &c.Rate }},
	{name: "burst", kind: kInt, def: "40", usage: "inbound message burst per connection",
		field: func(c *Config) any { return &c.Burst }},
	{name: "max-conns-per-user", kind: kInt, def: "8", usage: "connections per user",
		field: func(c *Config) any { return &c.MaxConnsPerUser }},
	{name: "per-user-policy", def: PolicyReject, usage: `when a user is at the limit: "reject" or "evict-oldest"`,
		field: func(c *Config) any { return &c.PerUserPolicy }},
	{name: "max-conns", kind: kInt, def: "100000", usage: "total connections",
		field: func(c *Config) any { return &c.MaxConns }},
	{name: "max-rooms", kind: kInt, def: "64", usage: "rooms per connection",
		field: func(c *Config) any { return &c.MaxRooms }},
	{name: "max-data-bytes", kind: kInt, show: "max-message-bytes",
		usage: "largest data of a client publish or send (error too_large past it)",
		field: func(c *Config) any { return &c.MaxDataBytes }},
	{name: "read-only-rooms", kind: kCSV, show: "none",
		usage: "rooms (names or prefix* patterns, comma-separated) only the backend may publish to",
		field: func(c *Config) any { return &c.ReadOnlyRooms }},
	{name: "history-rooms", kind: kCSV, show: "none",
		usage: "rooms (names or prefix* patterns, comma-separated) that keep recent messages for clients coming back",
		field: func(c *Config) any { return &c.HistoryRooms }},
	{name: "history-users", kind: kBool, def: "false", usage: "also keep each user's direct messages (true or false)",
		field: func(c *Config) any { return &c.HistoryUsers }},
	{name: "history-size", kind: kInt, def: "100", usage: "messages kept per room (or user) with history",
		field: func(c *Config) any { return &c.HistorySize }},
	{name: "history-ttl", kind: kDuration, def: "5m", usage: "how long a kept message stays",
		field: func(c *Config) any { return &c.HistoryTTL }},
	{name: "handshake-rate", kind: kFloat, def: "20", usage: "new connections per second from one IP address (429 past it)",
		field: func(c *Config) any { return &c.HandshakeRate }},
	{name: "handshake-burst", kind: kInt, def: "50", usage: "burst of new connections from one IP address",
		field: func(c *Config) any { return &c.HandshakeBurst }},
	{name: "handshake-timeout", kind: kDuration, def: "10s",
		usage: "time a client has to send its complete handshake request (slow clients are cut)",
		field: func(c *Config) any { return &c.HandshakeTimeout }},
	{name: "queue-bytes", kind: kInt, def: "1048576", usage: "outbound queue bound per connection in bytes",
		field: func(c *Config) any { return &c.QueueBytes }},
	{name: "write-timeout", kind: kDuration, def: "5s", usage: "deadline for one outbound write",
		field: func(c *Config) any { return &c.WriteTimeout }},
	{name: "compression", kind: kBool, def: "false",
		usage: "negotiate permessage-deflate with clients that offer it (true or false): less bandwidth for more CPU",
		field: func(c *Config) any { return &c.Compression }},
	{name: "compression-threshold", kind: kInt, def: "256",
		usage: "smallest message in bytes sent compressed (with --compression); smaller ones gain too little",
		field: func(c *Config) any { return &c.CompressionThreshold }},
	{name: "sse", kind: kBool, def: "true",
		usage: "serve the server-sent-events fallback at /sse for clients whose WebSocket cannot get through (true or false)",
		field: func(c *Config) any { return &c.SSE }},
	{name: "shutdown-timeout", kind: kDuration, def: "10s", usage: "drain deadline on shutdown",
		field: func(c *Config) any { return &c.ShutdownTimeout }},
	{name: "broker", def: BrokerMemory, usage: `message broker: "memory", "redis" or "nats"`,
		field: func(c *Config) any { return &c.Broker }},
	{name: "redis-url", def: "redis://127.0.0.1:6379/0", usage: "Redis address (with --broker=redis)",
		field: func(c *Config) any { return &c.RedisURL }},
	{name: "nats-url", def: "nats://127.0.0.1:4222", usage: "NATS address (with --broker=nats), or the servers of a NATS cluster, comma-separated",
		field: func(c *Config) any { return &c.NATSURL }},
	{name: "history-replicas", kind: kInt, def: "1",
		usage: "NATS servers keeping each history message (with --broker=nats): 1 to 5, 3 in a NATS cluster of 3 or more",
		field: func(c *Config) any { return &c.HistoryReplicas }},
	{name: "cluster-name", def: "", usage: "separates clusters sharing one Redis or NATS server (letters, digits, - and _)",
		field: func(c *Config) any { return &c.ClusterName }},
	{name: "presence-ttl", kind: kDuration, def: "30s", usage: "how long a silent node's users stay present (nodes say they are alive every third of it)",
		field: func(c *Config) any { return &c.PresenceTTL }},
	{name: "node-id", show: "host name + random suffix", usage: "this node's name in the cluster",
		field: func(c *Config) any { return &c.NodeID }},
	{name: "pprof", show: "off", usage: "serve net/http/pprof at /debug/pprof/ on this separate address, which must be loopback (e.g. 127.0.0.1:6060)",
		field: func(c *Config) any { return &c.PprofAddr }},
	{name: "admin", kind: kBool, def: "false", usage: "serve the admin dashboard at /admin (true or false); it needs --admin-key or --api-key",
		field: func(c *Config) any { return &c.Admin }},
	{name: "admin-key", kind: kRepeat, secret: true, show: "none (the API keys open the dashboard)",
		usage: "key opening the admin dashboard; repeat the flag for several (comma-separated in env)",
		field: func(c *Config) any { return &c.AdminKeys }},
	{name: "webhook-url", show: "none (webhooks off)", usage: "URL that receives presence events (user.online, user.offline, room.join, room.leave) as signed POSTs",
		field: func(c *Config) any { return &c.WebhookURL }},
	{name: "webhook-secret", secret: true, usage: "HMAC-SHA256 key signing webhook requests (X-Switchboard-Signature); required with --webhook-url",
		field: func(c *Config) any { return &c.WebhookSecret }},
	{name: "webhook-max-age", kind: kDuration, def: "5m", usage: "how long a webhook event is retried before it is dropped",
		field: func(c *Config) any { return &c.WebhookMaxAge }},
	{name: "webhook-room-events", kind: kBool, def: "false", usage: "also send room.join and room.leave events (true or false)",
		field: func(c *Config) any { return &c.WebhookRoomEvents }},
	{name: "log-level", def: "info", usage: `log level: "debug", "info", "warn" or "error"`,
		field: func(c *Config) any { return &c.LogLevel }},
	{name: "log-format", def: "json", usage: `log format: "json" or "text"`,
		field: func(c *Config) any { return &c.LogFormat }},
	{name: configFlag, usage: "YAML file setting any of these flags by name (e.g. max-conns: 5000)",
		field: func(c *Config) any { return &c.ConfigFile }},
}

// Flags returns the flag table in documentation order.
func Flags() []FlagInfo {
	out := make([]FlagInfo, len(specs))
	for i, s := range specs {
		out[i] = FlagInfo{Name: s.name, Env: s.env(), Default: s.shownDefault(), Usage: s.usage}
	}
	return out
}

func lookupSpec(name string) (spec, bool) {
	for _, s := range specs {
		if s.name == name {
			return s, true
		}
	}
	return spec{}, false
}
