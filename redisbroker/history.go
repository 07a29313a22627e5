package redisbroker

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboardhq/switchboard/history"
)

// History: each stream is a Redis stream (XADD, trimmed with MAXLEN ~) and
// a small hash holding its epoch and newest offset, both under one hash tag
// so that a script may touch them together (in a Redis Cluster the tag of
// the room's channel partition, so that the script's SPUBLISH is in the
// same slot), both expiring after the TTL
// of their newest message. A Lua script numbers, keeps and publishes a
// message in one step: no node can see a message live that history does
// not have, and offsets never skip or repeat across nodes. A stream whose
// hash is gone (expired, FLUSHDB, a Redis that lost its data) starts again
// at offset 1 with a new epoch.

// Defaults of the history bounds until the hub sets them.
const (
	defaultHistorySize = 100
	defaultHistoryTTL  = 5 * time.Minute
)

// Both scripts start a new epoch when the meta hash is gone, and also when
// its generation differs from the partition's generation key (KEYS[3]):
// a node that finds its partition's slot served by another master than
// before (a failover, whose replica may lack the newest writes) bumps that
// key before it publishes again, so offsets the lost writes had handed out
// are never handed out again under the same epoch.
//
// appendScript: KEYS stream, meta, generation; ARGV head, tail, channel, fresh epoch,
// size, ttl in ms, publish command (PUBLISH or SPUBLISH). Returns
// {offset, epoch}.
var appendScript = redis.NewScript(`
local gen = redis.call('GET', KEYS[3]) or '0'
local epoch = redis.call('HGET', KEYS[2], 'epoch')
if epoch and (redis.call('HGET', KEYS[2], 'gen') or '0') ~= gen then
  epoch = false
end
if not epoch then
  epoch = ARGV[4]
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[2], 'epoch', epoch, 'top', 0, 'gen', gen)
end
local top = redis.call('HINCRBY', KEYS[2], 'top', 1)
local offset = string.format('%d', top)
local payload = ARGV[1] .. offset .. ARGV[2] .. string.format('%020d', top) .. epoch
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[5], offset .. '-1', 'p', payload)
redis.call('PEXPIRE', KEYS[1], ARGV[6])
redis.call('PEXPIRE', KEYS[2], ARGV[6])
redis.call(ARGV[7], ARGV[3], payload)
return {top, epoch}
`)

// readScript: KEYS stream, meta, generation; ARGV since, limit, fresh epoch, ttl in ms.
// since stays below 2^52, where Lua numbers are exact.
// Returns {newest offset, epoch, oldest kept offset, {payloads...}}.
var readScript = redis.NewScript(`
local gen = redis.call('GET', KEYS[3]) or '0'
local epoch = redis.call('HGET', KEYS[2], 'epoch')
if epoch and (redis.call('HGET', KEYS[2], 'gen') or '0') ~= gen then
  epoch = false
end
if not epoch then
  epoch = ARGV[3]
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[2], 'epoch', epoch, 'top', 0, 'gen', gen)
end
-- A read keeps the epoch (not the messages) alive: a quiet room that
-- members follow must not start a new epoch under them.
redis.call('PEXPIRE', KEYS[2], ARGV[4])
local top = tonumber(redis.call('HGET', KEYS[2], 'top'))
local first = 0
local head = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
if #head > 0 then
  first = tonumber(string.match(head[1][1], '^(%d+)'))
end
local out = {}
if tonumber(ARGV[2]) > 0 then
  local from = string.format('%d', tonumber(ARGV[1]) + 1) .. '-0'
  for i, e in ipairs(redis.call('XRANGE', KEYS[1], from, '+', 'COUNT', ARGV[2])) do
    out[i] = e[2][2]
  end
end
return {top, epoch, first, out}
`)

func (b *Broker) historyKeys(t *topology, stream string) []string {
	base := b.opts.Prefix + "history:{" + stream + "}"
	if t.cluster {
		base = b.opts.Prefix + t.tags[partitionOf(stream, len(t.tags))] + "history:" + stream
	}
	return []string{base, base + ":meta", b.generationKey(t, partitionOf(stream, len(t.shards)))}
}

// generationKey is the key of partition i's history generation (in its
// slot, so the scripts may read it).
func (b *Broker) generationKey(t *topology, i int) string {
	if !t.cluster {
		return b.opts.Prefix + "history-generation"
	}
	return b.opts.Prefix + t.tags[i] + "history-generation"
}

// liveTopology is the topology for a history or idempotency call;
// ErrNotReady before Start has reached Redis.
func (b *Broker) liveTopology() (*topology, error) {
	if b.closed.Load() {
		return nil, ErrClosed
	}
	t := b.topo.Load()
	if t == nil {
		return nil, ErrNotReady
	}
	return t, nil
}

// BoundHistory implements switchboard.HistoryBounded.
func (b *Broker) BoundHistory(size int, ttl time.Duration) {
	b.historySize.Store(int64(size))
	b.historyTTL.Store(int64(ttl))
}

func (b *Broker) historyBounds() (size int64, ttlMillis int64) {
	size, ttl := b.historySize.Load(), time.Duration(b.historyTTL.Load())
	if size <= 0 {
		size = defaultHistorySize
	}
	if ttl <= 0 {
		ttl = defaultHistoryTTL
	}
	return size, max(ttl.Milliseconds(), 1)
}

// Append implements switchboard.History.
func (b *Broker) Append(ctx context.Context, stream, channel string, head, tail []byte) (uint64, string, error) {
	t, err := b.liveTopology()
	if err != nil {
		return 0, "", err
	}
	if _, s := b.shardOf(channel); !s.ready.Load() {
		// Until the shard's connection is back (and, after a failover, the
		// generation bumped) nothing is numbered.
		b.publishErrors.Add(1)
		return 0, "", ErrNotReady
	}
	size, ttl := b.historyBounds()
	publish := "PUBLISH"
	if t.cluster {
		publish = "SPUBLISH"
	}
	res, err := appendScript.Run(ctx, t.client, b.historyKeys(t, stream),
		head, tail, b.redisChannel(t, channel), history.NewEpoch(), size, ttl, publish).Slice()
	if err != nil {
		b.publishErrors.Add(1)
		return 0, "", fmt.Errorf("redisbroker: keep message: %w", err)
	}
	b.published.Add(1)
	offset, epoch, err := offsetEpoch(res)
	if err != nil {
		return 0, "", fmt.Errorf("redisbroker: keep message: %w", err)
	}
	return offset, epoch, nil
}

// Read implements switchboard.History.
func (b *Broker) Read(ctx context.Context, stream string, since uint64, limit int) (history.Page, error) {
	t, err := b.liveTopology()
	if err != nil {
		return history.Page{}, err
	}
	_, ttl := b.historyBounds()
	if since >= 1<<52 {
		// Beyond any real offset (the client is confused): state only.
		since, limit = 0, 0
	}
	res, err := readScript.Run(ctx, t.client, b.historyKeys(t, stream),
		strconv.FormatUint(since, 10), max(limit, 0), history.NewEpoch(), ttl).Slice()
	if err != nil {
		return history.Page{}, fmt.Errorf("redisbroker: read history: %w", err)
	}
	if len(res) != 4 {
		return history.Page{}, errors.New("redisbroker: read history: unexpected reply")
	}
	offset, epoch, err := offsetEpoch(res[:2])
	if err != nil {
		return history.Page{}, fmt.Errorf("redisbroker: read history: %w", err)
	}
	first, _ := res[2].(int64)
	page := history.Page{Offset: offset, Epoch: epoch, First: uint64(first)}
	entries, _ := res[3].([]any)
	for _, e := range entries {
		s, ok := e.(string)
		if !ok {
			return history.Page{}, errors.New("redisbroker: read history: unexpected entry")
		}
		page.Payloads = append(page.Payloads, []byte(s))
	}
	return page, nil
}

func offsetEpoch(res []any) (uint64, string, error) {
	if len(res) < 2 {
		return 0, "", errors.New("unexpected reply")
	}
	n, ok1 := res[0].(int64)
	epoch, ok2 := res[1].(string)
	if !ok1 || !ok2 || n < 0 {
		return 0, "", fmt.Errorf("unexpected reply %v", res)
	}
	return uint64(n), epoch, nil
}
