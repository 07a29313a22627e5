package history

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"time"
)

// SharedReader reads a store with a deadline and shares gap fills of one
// stream from one offset between the connections that want them at once:
// a message lost on the way, or a catch-up after a broker outage, leaves
// every member of a room behind at the same offset, and one read serves
// them all. (A fill that shares a read begun a moment before is still
// whole: anything newer reached it live, or reveals a gap that is filled
// again.) A join never shares: its read must begin after its connection
// started holding live messages.
type SharedReader struct {
	store   Reader
	timeout time.Duration

	mu    sync.Mutex // a leaf: nothing is taken under it
	calls map[string]*sharedRead
}

type sharedRead struct {
	done    chan struct{}
	page    Page
	err     error
	sharers int // callers waiting on this read, under SharedReader.mu
}

// NewSharedReader reads store, each read bounded by timeout: bytes held
// for a connection while history is read count against its stall timeout,
// so a read must end well before it.
func NewSharedReader(store Reader, timeout time.Duration) *SharedReader {
	return &SharedReader{store: store, timeout: timeout}
}

// Read reads stream after since, bounded in time.
func (r *SharedReader) Read(ctx context.Context, stream string, since uint64, limit int) (Page, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	return r.store.Read(ctx, stream, since, limit)
}

// Shared is Read, shared with concurrent identical reads.
func (r *SharedReader) Shared(ctx context.Context, stream string, since uint64, limit int) (Page, error) {
	key := stream + "\x00" + strconv.FormatUint(since, 10) + "\x00" + strconv.Itoa(limit)
	r.mu.Lock()
	if call, ok := r.calls[key]; ok {
		call.sharers++
		r.mu.Unlock()
		<-call.done
		return call.page, call.err
	}
	call := &sharedRead{done: make(chan struct{})}
	if r.calls == nil {
		r.calls = make(map[string]*sharedRead)
	}
	r.calls[key] = call
	r.mu.Unlock()

	call.page, call.err = r.Read(ctx, stream, since, limit)
	r.mu.Lock()
	delete(r.calls, key)
	r.mu.Unlock()
	close(call.done)
	return call.page, call.err
}

// Follower is a connection that follows streams, for CatchUp.
type Follower interface {
	// CatchUp hands page, the newest state of stream, to the follower's
	// cursor on stream (Cursor.CatchUp, under the follower's lock).
	CatchUp(stream string, page Page)
}

// CatchUpEvery is how often, at most, a node checks the streams its
// connections follow against their newest offsets (a quarter of the
// history TTL when that is shorter). Live messages are at most once: one
// lost on the way (a broker reconnecting, a subscription still being
// confirmed) would otherwise wait for the stream's next message to reveal
// the gap, for ever in a quiet room. The check also keeps a followed
// stream's epoch alive in the store while it is quiet.
const CatchUpEvery = 5 * time.Second

// CatchUp reads each followed stream's newest offset, one shared read per
// stream, and hands it to the stream's followers, which fill what they
// are behind by.
func CatchUp(ctx context.Context, r *SharedReader, followers map[string][]Follower, log *slog.Logger) {
	for stream, fs := range followers {
		page, err := r.Shared(ctx, stream, 0, 0)
		if err != nil {
			if ctx.Err() == nil {
				log.Warn("history check failed", "error", err)
			}
			continue
		}
		for _, f := range fs {
			f.CatchUp(stream, page)
		}
	}
}
