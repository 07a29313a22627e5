package switchboard

import (
	"fmt"
	"net/http/httptest"
	"testing"
	"time"
)

func TestClientIPKeysIPv6ByPrefix(t *testing.T) {
	for remote, want := range map[string]string{
		"192.0.2.7:5000":              "192.0.2.7",
		"[2001:db8:1:2:3:4:5:6]:5000": "2001:db8:1:2::/64",
		"[2001:db8:1:2::9]:1":         "2001:db8:1:2::/64",
		"[::ffff:192.0.2.7]:5000":     "::ffff:192.0.2.7",
	} {
		r := httptest.NewRequest("GET", "/ws", nil)
		r.RemoteAddr = remote
		if got := clientIP(r); got != want {
			t.Errorf("clientIP(%s) = %s, want %s", remote, got, want)
		}
	}
}

// A spray of source addresses cannot grow the table past its bound.
func TestHandshakeLimiterIsBounded(t *testing.T) {
	l := newHandshakeLimiter(1, 1)
	l.perShard = 16 // the production bound works the same, only slower to fill
	now := time.Now()
	for i := 0; i < shardCount*l.perShard*4; i++ {
		l.allow(fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255), now)
	}
	total := 0
	for i := range l.shards {
		total += len(l.shards[i].ips)
	}
	if total > shardCount*l.perShard {
		t.Fatalf("%d addresses tracked, bound is %d", total, shardCount*l.perShard)
	}
	// Entries idle past the refill window are dropped.
	l.prune(now.Add(2 * time.Minute))
	for i := range l.shards {
		if n := len(l.shards[i].ips); n != 0 {
			t.Fatalf("shard %d keeps %d idle entries", i, n)
		}
	}
}
