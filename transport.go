package switchboard

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lesismal/nbio"
	"github.com/lesismal/nbio/nbhttp"
)

// transport is how the hub reaches one socket. Two exist: a goroutine-based
// one for connections hijacked from net/http, and an event-driven one for
// connections served by nbio's engine, which costs no goroutine while idle.
type transport interface {
	// scheduleFlush arranges for c.flush to run soon on some goroutine.
	scheduleFlush(c *Conn)
	// write hands frames to the socket, calling c.wrote as bytes reach the
	// kernel. An error means the socket is unusable.
	write(c *Conn, frames [][]byte) error
	// shutWhenDrained closes the socket once everything queued has left.
	shutWhenDrained(c *Conn)
	// close shuts the socket now.
	close() error
}

// stdTransport serves a connection hijacked from net/http: the handler's
// goroutine reads, and a goroutine started on demand writes with a deadline.
type stdTransport struct {
	nc           net.Conn
	writeTimeout time.Duration
}

func (t *stdTransport) scheduleFlush(c *Conn) { go c.flush() }

func (t *stdTransport) write(c *Conn, frames [][]byte) error {
	// A blocking writev reports nothing until all of it is in the kernel,
	// while the peer may already have read most of it. Writing at most
	// coalesceLimit bytes per call keeps the pending count (and so the
	// queue bound) within one chunk of the truth.
	for len(frames) > 0 {
		n, size := 0, 0
		for n < len(frames) && (n == 0 || size+len(frames[n]) <= coalesceLimit) {
			size += len(frames[n])
			n++
		}
		if err := t.nc.SetWriteDeadline(time.Now().Add(t.writeTimeout)); err != nil {
			return fmt.Errorf("set write deadline: %w", err)
		}
		bufs := net.Buffers(frames[:n:n]) // writev on TCP: many frames, one system call
		written, err := bufs.WriteTo(t.nc)
		c.wrote(int(written))
		if err != nil {
			return fmt.Errorf("write: %w", err)
		}
		frames = frames[n:]
	}
	return nil
}

func (t *stdTransport) shutWhenDrained(*Conn) { _ = t.nc.Close() }
func (t *stdTransport) close() error          { return t.nc.Close() }

// nbioTransport serves a connection owned by nbio's poller: reads arrive as
// Parse calls, writes never block (nbio keeps what the kernel refuses), and
// a small pool of writer goroutines coalesces queued frames.
type nbioTransport struct {
	nc      *nbio.Conn
	writers *writerPool
}

func (t *nbioTransport) scheduleFlush(c *Conn) { t.writers.schedule(c) }

// coalesceLimit caps how many bytes one flush copies into a single write.
const coalesceLimit = 64 << 10

var coalescePool = sync.Pool{New: func() any { b := make([]byte, 0, coalesceLimit); return &b }}

func (t *nbioTransport) write(c *Conn, frames [][]byte) error {
	pb := coalescePool.Get().(*[]byte)
	defer coalescePool.Put(pb)
	for len(frames) > 0 {
		out := frames[0]
		if len(out) < coalesceLimit {
			// Small frames (the common case) go out together; big ones
			// are handed over as they are, without a copy.
			buf := (*pb)[:0]
			for len(frames) > 0 && len(buf)+len(frames[0]) <= coalesceLimit {
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
		if !nbioHookInstalled.Load() {
			// Without the hook nbio's own buffer is invisible; count the
			// bytes as sent once nbio has them.
			c.wrote(len(out))
		}
	}
	return nil
}

func (t *nbioTransport) shutWhenDrained(c *Conn) {
	// Closing an nbio socket discards what it still buffers; when bytes are
	// pending the sweeper closes it after they drain or the grace ends.
	if c.pending.Load() <= 0 {
		_ = t.nc.Close()
	}
}

func (t *nbioTransport) close() error { return t.nc.Close() }

var nbioHookInstalled atomic.Bool

// ConfigureEngine prepares an nbio HTTP engine to serve Hub handlers: it
// lets the hub see how many bytes each connection still has buffered, which
// the outbound queue bound (Limits.QueueBytes) and slow-consumer detection
// rely on. Call it before engine.Start.
func ConfigureEngine(engine *nbhttp.Engine) {
	engine.OnWrittenSize(func(nc *nbio.Conn, _ []byte, n int) {
		if s, ok := nc.Session().(*nbioSession); ok {
			s.c.wrote(n)
		}
	})
	nbioHookInstalled.Store(true)
}

// nbioSession plugs a Conn into nbhttp's engine, which hands upgraded
// connections' bytes to whatever session implements its ParserCloser.
type nbioSession struct {
	c  *Conn
	nc net.Conn
}

func (s *nbioSession) UnderlayerConn() net.Conn { return s.nc }
func (s *nbioSession) Parse(data []byte) error  { return s.c.hub.onData(s.c, data) }
func (s *nbioSession) CloseAndClean(err error)  { s.c.hub.transportClosed(s.c, err) }

// writerPool runs flushes for nbio connections on a few goroutines. While a
// writer is busy, frames for the same connection pile up and leave together.
type writerPool struct {
	once sync.Once
	ch   chan *Conn
	wg   sync.WaitGroup
	stop chan struct{}
	n    int
}

func newWriterPool(n int) *writerPool {
	return &writerPool{ch: make(chan *Conn, 1<<16), stop: make(chan struct{}), n: n}
}

func (p *writerPool) schedule(c *Conn) {
	p.once.Do(func() {
		for i := 0; i < p.n; i++ {
			p.wg.Add(1)
			go p.run()
		}
	})
	select {
	case p.ch <- c:
	default:
		// Pool saturated. The caller holds c.mu, so the flush cannot run
		// here; a goroutine of its own keeps the caller from waiting.
		go c.flush()
	}
}

func (p *writerPool) run() {
	defer p.wg.Done()
	for {
		select {
		case c := <-p.ch:
			c.flush()
		case <-p.stop:
			return
		}
	}
}

func (p *writerPool) close() {
	close(p.stop)
	p.wg.Wait()
}

// hijack takes the socket from the HTTP server and returns its transport,
// bytes already read past the request, and attach, which makes the hub the
// reader of the socket (called once the connection is fully set up; until
// then no frame can be handled, and a well-behaved client sends none before
// the 101 answer, which is only written after attach).
func (h *Hub) hijack(w http.ResponseWriter, c *Conn) (t transport, attach func(), leftover []byte, err error) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		return nil, nil, nil, errors.New("response writer cannot hijack")
	}
	raw, brw, err := hj.Hijack()
	if err != nil {
		return nil, nil, nil, fmt.Errorf("hijack: %w", err)
	}
	if hc, ok := raw.(*nbhttp.Conn); ok {
		if nc, ok := hc.Conn.(*nbio.Conn); ok {
			attach := func() {
				// From now on nbhttp hands this socket's bytes to the session.
				nc.SetSession(&nbioSession{c: c, nc: hc})
				hc.Parser = nil
				// nbhttp armed an HTTP keep-alive read deadline; liveness
				// is the sweeper's job from here on, with no timer per socket.
				_ = nc.SetReadDeadline(time.Time{})
			}
			return &nbioTransport{nc: nc, writers: h.writers}, attach, nil, nil
		}
		raw = hc.Conn
	}
	if brw != nil && brw.Reader.Buffered() > 0 {
		leftover, _ = brw.Reader.Peek(brw.Reader.Buffered())
		leftover = append([]byte(nil), leftover...)
	}
	_ = raw.SetDeadline(time.Time{})
	// The handler's goroutine becomes the reader when serveWS reaches readLoop.
	return &stdTransport{nc: raw, writeTimeout: h.opts.Limits.WriteTimeout}, func() {}, leftover, nil
}

// readLoop reads a hijacked net/http connection until it fails or closes.
func (h *Hub) readLoop(c *Conn, nc net.Conn, leftover []byte) {
	if len(leftover) > 0 {
		if err := h.onData(c, leftover); err != nil {
			h.transportClosed(c, err)
			return
		}
	}
	buf := make([]byte, 4096)
	for {
		n, err := nc.Read(buf)
		if n > 0 {
			if perr := h.onData(c, buf[:n]); perr != nil {
				h.transportClosed(c, perr)
				return
			}
		}
		if err != nil {
			h.transportClosed(c, err)
			return
		}
	}
}
