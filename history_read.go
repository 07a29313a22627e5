package switchboard

import (
	"context"
	"strconv"
	"sync"
	"time"
)

// historyReads shares gap fills of one stream from one offset between the
// connections that want them at once: a message lost on the way, or a
// catch-up after a broker outage, leaves every member of a room behind at
// the same offset, and one read serves them all. (A fill that shares a read
// begun a moment before is still whole: anything newer reached it live, or
// reveals a gap that is filled again.) A join never shares: its read must
// begin after its connection started holding live messages.
type historyReads struct {
	mu    sync.Mutex
	calls map[string]*historyRead
}

type historyRead struct {
	done    chan struct{}
	page    HistoryPage
	err     error
	sharers int // callers waiting on this read, under historyReads.mu
}

// readHistory reads stream after since, bounded in time: bytes held for a
// connection while history is read count against its stall timeout, so a
// read must end well before Limits.WriteTimeout.
func (h *Hub) readHistory(stream string, since uint64, limit int) (HistoryPage, error) {
	ctx, cancel := context.WithTimeout(h.ctx, max(h.opts.Limits.WriteTimeout/2, 100*time.Millisecond))
	defer cancel()
	return h.history.Read(ctx, stream, since, limit)
}

// readHistoryShared is readHistory shared with concurrent identical reads.
func (h *Hub) readHistoryShared(stream string, since uint64, limit int) (HistoryPage, error) {
	key := stream + "\x00" + strconv.FormatUint(since, 10) + "\x00" + strconv.Itoa(limit)
	r := &h.reads
	r.mu.Lock()
	if call, ok := r.calls[key]; ok {
		call.sharers++
		r.mu.Unlock()
		<-call.done
		return call.page, call.err
	}
	call := &historyRead{done: make(chan struct{})}
	if r.calls == nil {
		r.calls = make(map[string]*historyRead)
	}
	r.calls[key] = call
	r.mu.Unlock()

	call.page, call.err = h.readHistory(stream, since, limit)
	r.mu.Lock()
	delete(r.calls, key)
	r.mu.Unlock()
	close(call.done)
	return call.page, call.err
}
