package transport

import (
	"fmt"
	"net"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/lesismal/nbio"
	"github.com/lesismal/nbio/nbhttp"
)

// NBIO serves a connection owned by nbio's poller: reads arrive as Parse
// calls, writes never block (nbio keeps what the kernel refuses), and a
// WriterPool coalesces queued frames.
type NBIO struct {
	nc      *nbio.Conn
	writers *WriterPool
}

// ScheduleFlush implements Transport.
func (t *NBIO) ScheduleFlush(c Conn) { t.writers.schedule(c) }

var coalescePool = sync.Pool{New: func() any { b := make([]byte, 0, CoalesceLimit); return &b }}

// Write implements Transport.
func (t *NBIO) Write(c Conn, frames [][]byte) error {
	pb := coalescePool.Get().(*[]byte)
	defer coalescePool.Put(pb)
	for len(frames) > 0 {
		out := frames[0]
		if len(out) < CoalesceLimit {
			// Small frames (the common case) go out together; big ones
			// are handed over as they are, without a copy.
			buf := (*pb)[:0]
			for len(frames) > 0 && len(buf)+len(frames[0]) <= CoalesceLimit {
				buf = append(buf, frames[0]...)
				frames = frames[1:]
			}
			out = buf
		} else {
			frames = frames[1:]
		}
		if _, err := t.nc.Write(out); err != nil {
			return fmt.Errorf("write: %w", err)
		}
		if !hookInstalled.Load() {
			// Without the hook nbio's own buffer is invisible; count the
			// bytes as sent once nbio has them.
			c.Wrote(len(out))
		}
	}
	return nil
}

// ShutWhenDrained implements Transport.
func (t *NBIO) ShutWhenDrained(c Conn) {
	// Closing an nbio socket discards what it still buffers; when bytes are
	// pending the hub's sweeper closes it after they drain or the grace ends.
	if c.Pending() <= 0 {
		_ = t.nc.Close()
	}
}

// Close implements Transport.
func (t *NBIO) Close() error { return t.nc.Close() }

var hookInstalled atomic.Bool

// ConfigureEngine installs nbio's written-size hook, which tells each
// connection how many of its buffered bytes reached the kernel (what the
// queue bound and slow-consumer detection rely on). Call it before
// engine.Start.
func ConfigureEngine(engine *nbhttp.Engine) {
	engine.OnWrittenSize(func(nc *nbio.Conn, _ []byte, n int) {
		if s, ok := nc.Session().(*nbioSession); ok {
			s.c.Wrote(n)
		}
	})
	hookInstalled.Store(true)
}

// nbioSession plugs a Conn into nbhttp's engine, which hands upgraded
// connections' bytes to whatever session implements its ParserCloser.
type nbioSession struct {
	c  Conn
	nc net.Conn
}

func (s *nbioSession) UnderlayerConn() net.Conn { return s.nc }
func (s *nbioSession) Parse(data []byte) error  { return s.c.Data(data) }
func (s *nbioSession) CloseAndClean(err error)  { s.c.Lost(err) }

// WriterPool runs flushes for NBIO connections on a few goroutines,
// started on first use. While a writer is busy, frames for the same
// connection pile up and leave together.
type WriterPool struct {
	once sync.Once
	ch   chan Conn
	wg   sync.WaitGroup
	stop chan struct{}
	n    int
}

// NewWriterPool returns a pool of n writers.
func NewWriterPool(n int) *WriterPool {
	return &WriterPool{ch: make(chan Conn, 1<<16), stop: make(chan struct{}), n: n}
}

func (p *WriterPool) schedule(c Conn) {
	p.once.Do(func() {
		for i := 0; i < p.n; i++ {
			p.wg.Add(1)
			go p.run()
		}
	})
	select {
	case p.ch <- c:
	default:
		// Pool saturated. The caller holds the connection's lock, so the
		// flush cannot run here; a goroutine of its own keeps the caller
		// from waiting.
		go c.Flush()
	}
}

func (p *WriterPool) run() {
	defer p.wg.Done()
	n := 0
	for {
		select {
		case c := <-p.ch:
			c.Flush()
			if n++; n%yieldEvery == 0 {
				// Let the poller and request handlers in. Without this, on a
				// busy core the writers drain a whole broadcast before the
				// next publish is even read; with it, publishes that arrive
				// during a fan-out join the queues still waiting, and leave
				// in the same write (a fifth of the CPU per delivery at
				// 2,000 subscribers; docs/performance.md).
				runtime.Gosched()
			}
		case <-p.stop:
			return
		}
	}
}

// yieldEvery is how many flushes a writer makes between yields: about
// 0.1-0.3 ms of writes.
const yieldEvery = 32

// Close stops the writers and waits for them.
func (p *WriterPool) Close() {
	close(p.stop)
	p.wg.Wait()
}
