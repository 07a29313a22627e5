package switchboard

import (
	"errors"
	"sync"
	"sync/atomic"

	"github.com/switchboardhq/switchboard/internal/sse"
	"github.com/switchboardhq/switchboard/internal/transport"
)

// An event-stream connection queues the same WebSocket frames as any other
// (one encoding per broadcast, shared); its transport rewrites them as
// events on the way out. The queue bound and slow-consumer detection count
// frame bytes, so the bytes the socket reports written are translated back
// into the frame bytes they carried.

// sseWire is an event-stream connection as its socket's transport sees it.
type sseWire struct {
	c *Conn

	mu   sync.Mutex
	owed []sseOwed // handed to the socket, oldest first

	read atomic.Int64 // bytes the client sent after its request
}

// sseOwed is one write: its event-stream bytes not yet in the kernel, and
// the frame bytes of the queue they stand for.
type sseOwed struct{ out, frames int }

// maxSSEClientBytes is how much a client may send on the stream's socket
// after its request (nothing is expected) before it counts as misbehaving.
const maxSSEClientBytes = 4096

var errSSEClientData = errors.New("event stream: client kept sending on the stream's socket")

func (w *sseWire) Flush()         { w.c.flush() }
func (w *sseWire) Pending() int64 { return w.c.pending.Load() }

func (w *sseWire) Data(b []byte) error {
	// Requests come as POSTs; whatever arrives here is ignored, up to a
	// bound.
	if w.read.Add(int64(len(b))) > maxSSEClientBytes {
		return errSSEClientData
	}
	return nil
}

func (w *sseWire) Lost(err error) {
	w.c.hub.sseSessions.Delete(w.c.id)
	w.c.hub.transportClosed(w.c, err)
}

// owe records a write of out event-stream bytes carrying frames bytes.
func (w *sseWire) owe(out, frames int) {
	w.mu.Lock()
	w.owed = append(w.owed, sseOwed{out, frames})
	w.mu.Unlock()
}

// Wrote translates n event-stream bytes into frame bytes: whole writes
// count fully, a partial one in proportion.
func (w *sseWire) Wrote(n int) {
	frames := 0
	w.mu.Lock()
	for n > 0 && len(w.owed) > 0 {
		o := &w.owed[0]
		take := min(n, o.out)
		f := o.frames
		if take < o.out {
			f = int(int64(o.frames) * int64(take) / int64(o.out))
		}
		o.out -= take
		o.frames -= f
		n -= take
		frames += f
		if o.out == 0 {
			frames += o.frames
			w.owed = append(w.owed[:0], w.owed[1:]...)
		}
	}
	w.mu.Unlock()
	w.c.wrote(frames)
}

// sseTransport wraps the transport of the stream's socket, converting the
// queue's frames into events.
type sseTransport struct {
	inner transport.Transport
	w     *sseWire
	conv  sse.Converter // used by the one flush running at a time
}

func newSSETransport(inner transport.Transport, w *sseWire, resume string) *sseTransport {
	t := &sseTransport{inner: inner, w: w}
	t.conv.Passthrough = len(sse.ResponseHead)
	t.conv.Resume = resume
	return t
}

func (t *sseTransport) ScheduleFlush(transport.Conn) { t.inner.ScheduleFlush(t.w) }

func (t *sseTransport) Write(_ transport.Conn, frames [][]byte) error {
	size := 0
	for _, f := range frames {
		size += len(f)
	}
	// A fresh buffer each time: the socket's transport may keep it until
	// the kernel takes it.
	out, n := t.conv.Append(make([]byte, 0, size+size/4+16), frames)
	if t.conv.Closed() {
		// The close event ends the stream; no answer will come, so the
		// socket is shut as soon as it is out.
		c := t.w.c
		c.mu.Lock()
		c.shutAfterFlush = true
		c.mu.Unlock()
	}
	if len(out) == 0 {
		t.w.c.wrote(n) // only control frames, which an event stream drops
		return nil
	}
	t.w.owe(len(out), n)
	return t.inner.Write(t.w, [][]byte{out})
}

func (t *sseTransport) ShutWhenDrained(transport.Conn) { t.inner.ShutWhenDrained(t.w) }
func (t *sseTransport) Close() error                   { return t.inner.Close() }
