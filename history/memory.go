package history

import (
	"context"
	"sort"
	"strconv"
	"sync"
	"time"
)

// Memory keeps each stream's newest messages in a ring in memory, bounded
// in count and bytes; a stream whose newest message is older than the TTL
// is freed, and starts again with a new epoch. It is the store of a single
// node: it publishes through the function it is given, which must deliver
// to this node alone.
type Memory struct {
	size, maxBytes int
	ttl            time.Duration
	publish        func(ctx context.Context, channel string, payload []byte) error
	now            func() time.Time

	// mu guards streams. A stream's lock may be held while taking mu;
	// Sweep holds mu and only tries streams' locks, so neither order can
	// block.
	mu      sync.Mutex
	streams map[string]*memoryStream
}

type memoryStream struct {
	// mu is held across Append's publish, so that the stream's messages
	// reach the node's connections in offset order.
	mu      sync.Mutex
	epoch   string
	last    uint64 // newest offset given
	entries []memoryEntry
	bytes   int
	// newest is when the stream was last written or read: a stream that
	// someone follows keeps its epoch while it is quiet.
	newest time.Time
}

type memoryEntry struct {
	offset  uint64
	at      time.Time
	payload []byte
}

// NewMemory returns a store keeping at most size messages and maxBytes of
// payload per stream, each for ttl, that publishes each appended payload
// with publish while holding its stream's lock (so one stream's messages
// are delivered in offset order).
func NewMemory(size, maxBytes int, ttl time.Duration, publish func(ctx context.Context, channel string, payload []byte) error) *Memory {
	return &Memory{
		size: size, maxBytes: maxBytes, ttl: ttl, publish: publish, now: time.Now,
		streams: map[string]*memoryStream{},
	}
}

// stream returns the stream's ring, locked, making it if needed. A ring
// freed by Sweep between the lookup and the lock is looked up again.
func (m *Memory) stream(name string, create bool) *memoryStream {
	for {
		m.mu.Lock()
		s := m.streams[name]
		if s == nil && create {
			s = &memoryStream{epoch: NewEpoch(), newest: m.now()}
			m.streams[name] = s
		}
		m.mu.Unlock()
		if s == nil {
			return nil
		}
		s.mu.Lock()
		m.mu.Lock()
		current := m.streams[name] == s
		m.mu.Unlock()
		if current {
			return s
		}
		s.mu.Unlock()
	}
}

// Append keeps one message of stream and publishes it on channel: head,
// the offset in decimal, tail, then the trailer.
func (m *Memory) Append(ctx context.Context, stream, channel string, head, tail []byte) (uint64, string, error) {
	s := m.stream(stream, true)
	defer s.mu.Unlock()
	now := m.now()
	s.expire(now.Add(-m.ttl))
	s.last++
	payload := make([]byte, 0, len(head)+20+len(tail)+TrailerLen)
	payload = append(payload, head...)
	payload = strconv.AppendUint(payload, s.last, 10)
	payload = append(payload, tail...)
	payload = appendTrailer(payload, s.last, s.epoch)
	s.entries = append(s.entries, memoryEntry{offset: s.last, at: now, payload: payload})
	s.bytes += len(payload)
	s.newest = now
	for len(s.entries) > m.size || (s.bytes > m.maxBytes && len(s.entries) > 1) {
		s.bytes -= len(s.entries[0].payload)
		s.entries[0] = memoryEntry{}
		s.entries = s.entries[1:]
	}
	if err := m.publish(ctx, channel, payload); err != nil {
		return 0, "", err
	}
	return s.last, s.epoch, nil
}

// expire drops entries older than cutoff.
func (s *memoryStream) expire(cutoff time.Time) {
	i := sort.Search(len(s.entries), func(i int) bool { return s.entries[i].at.After(cutoff) })
	for _, e := range s.entries[:i] {
		s.bytes -= len(e.payload)
	}
	s.entries = s.entries[i:]
}

// Read implements Reader.
func (m *Memory) Read(_ context.Context, stream string, since uint64, limit int) (Page, error) {
	// Reading makes the stream: a client that joins before the first
	// message learns the epoch those messages will have.
	s := m.stream(stream, true)
	defer s.mu.Unlock()
	now := m.now()
	s.expire(now.Add(-m.ttl))
	s.newest = now
	page := Page{Offset: s.last, Epoch: s.epoch}
	if len(s.entries) > 0 {
		page.First = s.entries[0].offset
	}
	if limit <= 0 {
		return page, nil
	}
	i := sort.Search(len(s.entries), func(i int) bool { return s.entries[i].offset > since })
	for _, e := range s.entries[i:] {
		if len(page.Payloads) == limit {
			break
		}
		page.Payloads = append(page.Payloads, e.payload)
	}
	return page, nil
}

// Sweep frees the streams whose newest message is older than the TTL, so
// that a room used once does not hold memory for ever. The hub's sweeper
// calls it with its catch-up check (every 5 s, or a quarter of the TTL
// when that is shorter).
func (m *Memory) Sweep(now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for name, s := range m.streams {
		if s.mu.TryLock() {
			if now.Sub(s.newest) > m.ttl {
				delete(m.streams, name)
			}
			s.mu.Unlock()
		}
	}
}
