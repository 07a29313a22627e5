package switchboard

import (
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// handshakeLimiter bounds how fast one IP address may open connections, so
// that a reconnect storm or a flood from one host costs a 429 and nothing
// more: the check runs before authentication and before any upgrade.
type handshakeLimiter struct {
	rate     rate.Limit
	burst    int
	perShard int // most addresses tracked per shard
	shards   [shardCount]ipShard
}

type ipShard struct {
	mu  sync.Mutex
	ips map[string]*ipEntry
}

type ipEntry struct {
	lim      *rate.Limiter
	lastSeen int64 // unix nanoseconds, for pruning
}

func newHandshakeLimiter(perSecond float64, burst int) *handshakeLimiter {
	l := &handshakeLimiter{rate: rate.Limit(perSecond), burst: burst, perShard: maxTrackedPerShard}
	for i := range l.shards {
		l.shards[i].ips = make(map[string]*ipEntry)
	}
	return l
}

// maxTrackedPerShard bounds the table (64 shards: about 260,000 addresses)
// against a spray of source addresses.
const maxTrackedPerShard = 4096

func (l *handshakeLimiter) allow(ip string, now time.Time) bool {
	s := &l.shards[hashKey(ip)%shardCount]
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.ips[ip]
	if e == nil {
		if len(s.ips) >= l.perShard {
			l.pruneShard(s, now)
			if len(s.ips) >= l.perShard {
				// Full of recent addresses: the spray itself is the attack
				// and the per-connection limits still hold; do not grow.
				return true
			}
		}
		e = &ipEntry{lim: rate.NewLimiter(l.rate, l.burst)}
		s.ips[ip] = e
	}
	e.lastSeen = now.UnixNano()
	return e.lim.AllowN(now, 1)
}

// prune forgets addresses idle long enough for their bucket to be full
// again, so the table stays as small as the set of recent clients.
func (l *handshakeLimiter) prune(now time.Time) {
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		l.pruneShard(s, now)
		s.mu.Unlock()
	}
}

func (l *handshakeLimiter) pruneShard(s *ipShard, now time.Time) {
	refill := time.Duration(float64(l.burst) / float64(l.rate) * float64(time.Second))
	cutoff := now.Add(-max(refill, time.Minute)).UnixNano()
	for ip, e := range s.ips {
		if e.lastSeen < cutoff {
			delete(s.ips, ip)
		}
	}
}

// clientIP is the address the request came from, as the limiter keys it:
// IPv4 addresses whole, IPv6 addresses by their /64 (one host usually
// holds a whole /64). Forwarding headers are not trusted: anyone can set
// them.
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	addr, err := netip.ParseAddr(host)
	if err != nil || addr.Unmap().Is4() {
		return host
	}
	prefix, err := addr.Prefix(64)
	if err != nil {
		return host
	}
	return prefix.String()
}
