package config

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"time"
)

// Validate reports every problem with c, one per line. An empty Auth is
// checked as its address-dependent default. Error messages never contain the
// JWT secret, API keys or broker URLs (which may embed passwords).
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }

	host, _, err := net.SplitHostPort(c.Addr)
	if err != nil {
		bad("--addr must be host:port (e.g. 127.0.0.1:8080 or :8080), got %q", c.Addr)
	}

	auth := c.Auth
	if auth == "" && err == nil {
		auth = defaultAuth(c.Addr)
	}
	switch auth {
	case AuthNone:
		if err == nil && !isLoopback(host) {
			bad("--auth=none refuses to listen on %s (not loopback): use --auth=jwt with --jwt-secret, or listen on 127.0.0.1", c.Addr)
		}
	case AuthJWT:
		if c.JWTSecret == "" && c.JWTPublicKey == "" && c.JWKSFile == "" {
			bad("--auth=jwt needs a token verification key: set --jwt-secret (HS256), --jwt-public-key (RS256/ES256 PEM) or --jwks-file")
		}
		sources := 0
		for _, v := range []string{c.JWTSecret, c.JWTPublicKey, c.JWKSFile} {
			if v != "" {
				sources++
			}
		}
		if sources > 1 {
			// One source means one algorithm family: a server never accepts
			// HS256 next to RS256/ES256 (algorithm confusion).
			bad("--jwt-secret, --jwt-public-key and --jwks-file exclude each other: give exactly one")
		}
	case "":
		// only reachable with an invalid --addr, already reported
	default:
		bad("--auth must be %q or %q, got %q", AuthNone, AuthJWT, c.Auth)
	}

	if c.JWTLeeway < 0 {
		bad("--jwt-leeway must not be negative, got %s", c.JWTLeeway)
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		bad("--tls-cert and --tls-key must be given together")
	}
	for _, k := range c.APIKeys {
		if strings.TrimSpace(k) == "" {
			bad("--api-key must not be empty (is the variable holding it set?)")
			break
		}
	}
	for _, k := range c.AdminKeys {
		if strings.TrimSpace(k) == "" {
			bad("--admin-key must not be empty (is the variable holding it set?)")
			break
		}
	}
	switch {
	case c.Admin && len(c.AdminKeys) == 0 && len(c.APIKeys) == 0:
		bad("--admin needs a key to open the dashboard: set --admin-key (or --api-key, which then opens it too)")
	case !c.Admin && len(c.AdminKeys) > 0:
		bad("--admin-key is set but the dashboard is off: add --admin=true")
	}
	for _, r := range c.ClusterName {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			bad("--cluster-name may hold only letters, digits, - and _, got %q", c.ClusterName)
			break
		}
	}
	for _, o := range c.AllowedOrigins {
		if strings.TrimSpace(o) == "" {
			bad("--allowed-origins must not contain empty entries")
			break
		}
	}

	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"ping-interval", c.PingInterval},
		{"pong-timeout", c.PongTimeout},
		{"write-timeout", c.WriteTimeout},
		{"shutdown-timeout", c.ShutdownTimeout},
		{"presence-ttl", c.PresenceTTL},
		{"history-ttl", c.HistoryTTL},
		{"handshake-timeout", c.HandshakeTimeout},
	} {
		if d.v <= 0 {
			bad("--%s must be a positive duration (e.g. 10s), got %s", d.name, d.v)
		}
	}
	// Below these, heartbeats and history checks (run about every second)
	// cannot keep up: nodes would drop each other, quiet rooms lose epochs.
	if c.PresenceTTL > 0 && c.PresenceTTL < 3*time.Second {
		bad("--presence-ttl must be at least 3s, got %s", c.PresenceTTL)
	}
	if c.HistoryTTL > 0 && c.HistoryTTL < 10*time.Second {
		bad("--history-ttl must be at least 10s, got %s", c.HistoryTTL)
	}
	for _, n := range []struct {
		name string
		v    int
	}{
		{"max-message-bytes", c.MaxMessageBytes},
		{"burst", c.Burst},
		{"max-conns-per-user", c.MaxConnsPerUser},
		{"max-conns", c.MaxConns},
		{"max-rooms", c.MaxRooms},
		{"queue-bytes", c.QueueBytes},
		{"handshake-burst", c.HandshakeBurst},
		{"history-size", c.HistorySize},
		{"compression-threshold", c.CompressionThreshold},
	} {
		if n.v < 1 {
			bad("--%s must be at least 1, got %d", n.name, n.v)
		}
	}
	if !(c.Rate > 0) || math.IsInf(c.Rate, 1) {
		bad("--rate must be a positive number of messages per second, got %g", c.Rate)
	}
	if !(c.HandshakeRate > 0) || math.IsInf(c.HandshakeRate, 1) {
		bad("--handshake-rate must be a positive number of connections per second, got %g", c.HandshakeRate)
	}
	if c.MaxDataBytes < 0 || c.MaxDataBytes > c.MaxMessageBytes {
		bad("--max-data-bytes must be between 0 (same as --max-message-bytes) and --max-message-bytes (%d), got %d", c.MaxMessageBytes, c.MaxDataBytes)
	}
	for _, p := range c.ReadOnlyRooms {
		if strings.TrimSpace(p) == "" {
			bad("--read-only-rooms must not contain empty entries")
			break
		}
	}
	for _, p := range c.HistoryRooms {
		if strings.TrimSpace(p) == "" {
			bad("--history-rooms must not contain empty entries")
			break
		}
	}
	for _, l := range []struct {
		name     string
		patterns []string
	}{{"read-only-rooms", c.ReadOnlyRooms}, {"history-rooms", c.HistoryRooms}} {
		for _, p := range l.patterns {
			if p != "" && !validRoomPattern(p) {
				bad("--%s: %q is neither a room name (1 to 128 of A-Z a-z 0-9 _ . : @ / -) nor such a prefix followed by one *", l.name, p)
			}
		}
	}

	if c.PerUserPolicy != PolicyReject && c.PerUserPolicy != PolicyEvictOldest {
		bad("--per-user-policy must be %q or %q, got %q", PolicyReject, PolicyEvictOldest, c.PerUserPolicy)
	}
	switch c.Broker {
	case BrokerMemory:
	case BrokerRedis:
		if u, err := url.Parse(c.RedisURL); err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") || u.Host == "" {
			bad("--redis-url must be a redis:// or rediss:// URL (e.g. redis://127.0.0.1:6379/0)")
		}
	case BrokerNATS:
		validateNATSURL(c.NATSURL, bad)
	default:
		bad("--broker must be %q, %q or %q, got %q", BrokerMemory, BrokerRedis, BrokerNATS, c.Broker)
	}
	if c.HistoryReplicas < 1 || c.HistoryReplicas > 5 {
		bad("--history-replicas must be between 1 and 5, got %d: it is how many NATS servers keep each history message; use 1 with a single NATS server, 3 with a NATS cluster of 3 or more", c.HistoryReplicas)
	}
	if c.PprofAddr != "" {
		h, _, err := net.SplitHostPort(c.PprofAddr)
		switch {
		case err != nil:
			bad("--pprof must be host:port on a loopback address (e.g. 127.0.0.1:6060), got %q", c.PprofAddr)
		case !isLoopback(h):
			bad("--pprof refuses %s: profiles expose memory contents, so the address must be loopback (127.0.0.1, ::1 or localhost); reach it through SSH or kubectl port-forward", c.PprofAddr)
		}
	}
	c.validateWebhook(bad)
	if strings.TrimSpace(c.NodeID) == "" {
		bad("--node-id must not be empty")
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		bad(`--log-level must be "debug", "info", "warn" or "error", got %q`, c.LogLevel)
	}
	switch c.LogFormat {
	case "json", "text":
	default:
		bad(`--log-format must be "json" or "text", got %q`, c.LogFormat)
	}
	return errors.Join(errs...)
}

// validateNATSURL checks the NATS server list: one URL, or several
// comma-separated (the servers of a NATS cluster), each as the NATS client
// takes it. Entries are named by position: they may embed credentials.
func validateNATSURL(list string, bad func(string, ...any)) {
	if strings.TrimSpace(list) == "" {
		bad("--nats-url must not be empty with --broker=nats (e.g. nats://127.0.0.1:4222)")
		return
	}
	entries := strings.Split(list, ",")
	for i, e := range entries {
		e = strings.TrimSpace(e)
		if e == "" {
			bad("--nats-url has an empty entry: list the servers comma-separated (e.g. nats://n1:4222,nats://n2:4222)")
			return
		}
		if !strings.Contains(e, "://") {
			e = "nats://" + e // the NATS client's default scheme
		}
		u, err := url.Parse(e)
		if err != nil || u.Host == "" || u.Scheme != "nats" && u.Scheme != "tls" && u.Scheme != "ws" && u.Scheme != "wss" {
			bad("--nats-url: entry %d of %d is not a NATS URL such as nats://[user:password@]host:4222 (schemes nats, tls, ws, wss; not shown, as it may hold a password)", i+1, len(entries))
		}
	}
}

// validateWebhook checks the --webhook-* settings. The URL is never
// repeated in messages: it may embed credentials.
func (c *Config) validateWebhook(bad func(string, ...any)) {
	if c.WebhookMaxAge <= 0 {
		bad("--webhook-max-age must be a positive duration (e.g. 5m), got %s", c.WebhookMaxAge)
	}
	if c.WebhookURL == "" {
		return
	}
	if u, err := url.Parse(c.WebhookURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		bad("--webhook-url must be an http:// or https:// URL (e.g. https://app.example.com/hooks/switchboard)")
	}
	if c.WebhookSecret == "" {
		bad("--webhook-url needs --webhook-secret to sign the requests (pass it as SWITCHBOARD_WEBHOOK_SECRET)")
	}
}

// defaultAuth is "none" when addr's host is a loopback address, else "jwt".
func defaultAuth(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		// An --addr without a port is reported on its own; judge its host
		// as written, so that no second, misleading auth error follows.
		host = addr
	}
	if isLoopback(host) {
		return AuthNone
	}
	return AuthJWT
}

// isLoopback reports whether host is "localhost" or an IP in 127.0.0.0/8 or
// ::1. An empty host (":8080") listens on every interface, so it is not.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

// validRoomPattern accepts a room name, or a prefix of one followed by a
// single * (the prefix may be empty: every room).
func validRoomPattern(p string) bool {
	name, star := strings.CutSuffix(p, "*")
	if len(name) > 128 || (!star && name == "") {
		return false
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("_.:@/-", r)) {
			return false
		}
	}
	return true
}
