// Package transport carries a connection's bytes between the hub and its
// socket. Two transports exist: Std serves a socket hijacked from
// net/http (the handler's goroutine reads, a goroutine started on demand
// writes with a deadline), and NBIO serves a socket owned by nbio's
// poller (reads arrive as calls, writes never block, a small pool of
// writers coalesces queued frames). Hijack picks the one the server
// calls for; a new transport (server-sent events, say) is one more
// implementation of Transport beside them.
//
// A transport knows nothing of rooms, users or frames' meaning: it sees
// the connection only through Conn. This package must not import the
// root package, presence, history, a broker or the server.
package transport

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/lesismal/nbio"
	"github.com/lesismal/nbio/nbhttp"
)

// Conn is what a transport needs of the connection it serves.
type Conn interface {
	// Flush writes what is queued, through Transport.Write, until the
	// queue is empty. Transports call it on a goroutine that may block.
	Flush()
	// Wrote records that n bytes reached the kernel.
	Wrote(n int)
	// Pending is the number of bytes accepted for the connection that the
	// kernel has not taken yet.
	Pending() int64
	// Data handles bytes read from the peer; an error ends the connection.
	Data(b []byte) error
	// Lost is called once the socket failed or was shut.
	Lost(err error)
}

// Transport is how the hub reaches one socket.
type Transport interface {
	// ScheduleFlush arranges for c.Flush to run soon on some goroutine.
	// It is called with the connection's lock held and must not block.
	ScheduleFlush(c Conn)
	// Write hands frames to the socket, calling c.Wrote as bytes reach
	// the kernel. An error means the socket is unusable.
	Write(c Conn, frames [][]byte) error
	// ShutWhenDrained closes the socket once everything queued has left.
	ShutWhenDrained(c Conn)
	// Close shuts the socket now.
	Close() error
}

// CoalesceLimit caps how many bytes one write copies together (NBIO) or
// hands to one writev (Std).
const CoalesceLimit = 64 << 10

// Hijack takes the socket of an accepted upgrade from the HTTP server and
// returns its transport for c. attach makes c the reader of the socket:
// call it once c is fully set up (until then no frame can be handled, and
// a well-behaved client sends none before the 101 answer, which is only
// written after attach). serve then reads the socket until it closes: on
// net/http it must run on the handler's goroutine, under nbio it returns
// at once (the poller reads).
func Hijack(w http.ResponseWriter, c Conn, writers *WriterPool, writeTimeout time.Duration) (t Transport, attach, serve func(), err error) {
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
			return &NBIO{nc: nc, writers: writers}, attach, func() {}, nil
		}
		raw = hc.Conn
	}
	var leftover []byte
	if brw != nil && brw.Reader.Buffered() > 0 {
		leftover, _ = brw.Reader.Peek(brw.Reader.Buffered())
		leftover = append([]byte(nil), leftover...)
	}
	_ = raw.SetDeadline(time.Time{})
	serve = func() { readLoop(c, raw, leftover) }
	return &Std{nc: raw, writeTimeout: writeTimeout}, func() {}, serve, nil
}

// readLoop reads a hijacked net/http connection until it fails or closes.
func readLoop(c Conn, nc net.Conn, leftover []byte) {
	if len(leftover) > 0 {
		if err := c.Data(leftover); err != nil {
			c.Lost(err)
			return
		}
	}
	buf := make([]byte, 4096)
	for {
		n, err := nc.Read(buf)
		if n > 0 {
			if perr := c.Data(buf[:n]); perr != nil {
				c.Lost(perr)
				return
			}
		}
		if err != nil {
			c.Lost(err)
			return
		}
	}
}
