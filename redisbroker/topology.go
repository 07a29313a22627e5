package redisbroker

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// A broker finds out at Start whether its URL names a standalone Redis or a
// member of a Redis Cluster (INFO cluster), and sets itself up for that:
//
//   - Standalone: one pub/sub connection with SUBSCRIBE, PUBLISH, and
//     channel and key names as they always were.
//   - Cluster: channels are spread over Options.ClusterPartitions
//     partitions. Each partition has a hash tag whose slot is fixed, so all
//     of a partition's channels live on one shard, and each node holds one
//     sharded pub/sub connection (SSUBSCRIBE) per partition, to the master
//     that owns the slot. SPUBLISH then costs only that shard, where plain
//     PUBLISH in a cluster is copied to every shard. A room's history keys
//     carry its channel's tag, so the history script (which publishes too)
//     touches one slot.

// topology is what Start found: the client to use and how names are made.
type topology struct {
	client  redis.UniversalClient
	cluster bool
	tags    []string // cluster: partition hash tags, "{...}" included
	shards  []*shard // one per partition; one in all for standalone
}

// seedList splits the authority of a Redis URL holding several
// comma-separated host:port seeds: it returns the URL with only the first
// seed (for redis.ParseURL) and every seed's address.
func seedList(raw string) (first string, seeds []string, err error) {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return "", nil, errors.New("URL must start with redis:// or rediss://")
	}
	end := strings.IndexAny(rest, "/?")
	if end < 0 {
		end = len(rest)
	}
	authority, tail := rest[:end], rest[end:]
	userinfo, hosts := "", authority
	if at := strings.LastIndex(authority, "@"); at >= 0 {
		userinfo, hosts = authority[:at+1], authority[at+1:]
	}
	for _, h := range strings.Split(hosts, ",") {
		h = strings.TrimSpace(h)
		if h == "" {
			return "", nil, errors.New("empty address in the list of seeds")
		}
		if _, _, err := net.SplitHostPort(h); err != nil {
			h = net.JoinHostPort(h, "6379")
		}
		seeds = append(seeds, h)
	}
	return scheme + "://" + userinfo + seeds[0] + tail, seeds, nil
}

// clientOptions parses opts.URL into standalone options (for the first
// seed) and the seed list.
func clientOptions(url string) (*redis.Options, []string, error) {
	first, seeds, err := seedList(url)
	if err != nil {
		return nil, nil, err
	}
	o, err := redis.ParseURL(first)
	if err != nil {
		return nil, nil, err
	}
	// A retried pipeline could publish twice; the broker is at-most-once.
	o.MaxRetries = -1
	if o.DialTimeout == 0 {
		o.DialTimeout = 2 * time.Second
	}
	o.DisableIdentity = true
	o.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	return o, seeds, nil
}

// clusterOptions are the cluster client's options, from the standalone
// ones: same credentials, TLS and timeouts, every seed.
func clusterOptions(o *redis.Options, seeds []string) *redis.ClusterOptions {
	return &redis.ClusterOptions{
		Addrs:                    seeds,
		Username:                 o.Username,
		Password:                 o.Password,
		TLSConfig:                o.TLSConfig,
		DialTimeout:              o.DialTimeout,
		ReadTimeout:              o.ReadTimeout,
		WriteTimeout:             o.WriteTimeout,
		PoolSize:                 o.PoolSize,
		MaxRetries:               -1,
		DisableIdentity:          true,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	}
}

// probe asks the seeds, in order, whether they are cluster members. It
// returns the client to use: o's own for a standalone server, a cluster
// client otherwise.
func probe(ctx context.Context, o *redis.Options, seeds []string) (redis.UniversalClient, bool, error) {
	var errs []error
	for _, addr := range seeds {
		so := *o
		so.Addr = addr
		so.DB = 0 // a cluster member refuses SELECT: ask first, check DB after
		c := redis.NewClient(&so)
		pctx, cancel := context.WithTimeout(ctx, o.DialTimeout+time.Second)
		info, err := c.Info(pctx, "cluster").Result()
		cancel()
		_ = c.Close()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", addr, err))
			continue
		}
		if !strings.Contains(info, "cluster_enabled:1") {
			if len(seeds) > 1 {
				return nil, false, fmt.Errorf("%w: %s is not a Redis Cluster member, but several seeds were given", errMisconfigured, addr)
			}
			so.DB = o.DB
			return redis.NewClient(&so), false, nil
		}
		if o.DB != 0 {
			return nil, false, fmt.Errorf("%w: a Redis Cluster has only database 0: drop the /N from the URL", errMisconfigured)
		}
		return redis.NewClusterClient(clusterOptions(o, seeds)), true, nil
	}
	return nil, false, errors.Join(errs...)
}

// errMisconfigured marks a probe answer that no retry changes: the URL
// must be fixed.
var errMisconfigured = errors.New("the Redis URL does not fit the server")

// Slot numbering of Redis Cluster: CRC16 (XMODEM) of the key, or of its
// hash tag, modulo 16384.
const clusterSlots = 16384

var crc16tab = func() (t [256]uint16) {
	for i := range t {
		crc := uint16(i) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
		t[i] = crc
	}
	return
}()

func crc16(s string) uint16 {
	var crc uint16
	for i := 0; i < len(s); i++ {
		crc = crc<<8 ^ crc16tab[byte(crc>>8)^s[i]]
	}
	return crc
}

// partitionTags returns n hash tags whose slots are spread evenly over the
// slot space, the i-th in the i-th n-th of it: a cluster assigns slots to
// masters in ranges, so the partitions spread over the masters as evenly
// as the slots do. Every node computes the same tags.
func partitionTags(n int) []string {
	tags := make([]string, n)
	for i := range tags {
		lo, hi := i*clusterSlots/n, (i+1)*clusterSlots/n
		for j := 0; ; j++ {
			t := "sb" + strconv.Itoa(i) + "." + strconv.Itoa(j)
			if s := int(crc16(t)) % clusterSlots; s >= lo && s < hi {
				tags[i] = "{" + t + "}"
				break
			}
		}
	}
	return tags
}

// partitionOf picks the partition of a switchboard channel or history
// stream by what follows its kind ("room:lobby" and the stream "r:lobby"
// both by "lobby"), so that a room's channel and history share a slot.
func partitionOf(name string, n int) int {
	if n <= 1 {
		return 0
	}
	if _, rest, ok := strings.Cut(name, ":"); ok {
		name = rest
	}
	return int(crc32.ChecksumIEEE([]byte(name)) % uint32(n))
}

// redisChannel is the Redis channel of a switchboard channel.
func (b *Broker) redisChannel(t *topology, ch string) string {
	if !t.cluster {
		return b.opts.Prefix + ch
	}
	return b.opts.Prefix + t.tags[partitionOf(ch, len(t.tags))] + ch
}

// switchboardChannel undoes redisChannel; ok is false for a foreign name.
func (b *Broker) switchboardChannel(t *topology, rc string) (string, bool) {
	ch, ok := strings.CutPrefix(rc, b.opts.Prefix)
	if !ok || !t.cluster {
		return ch, ok
	}
	if !strings.HasPrefix(ch, "{") {
		return "", false
	}
	e := strings.IndexByte(ch, '}')
	if e < 0 {
		return "", false
	}
	return ch[e+1:], true
}
