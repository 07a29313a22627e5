package transport

import (
	"fmt"
	"net"
	"time"
)

// Std serves a connection hijacked from net/http: the handler's goroutine
// reads, and a goroutine started on demand writes with a deadline.
type Std struct {
	nc           net.Conn
	writeTimeout time.Duration
}

// ScheduleFlush implements Transport: one goroutine per flush, only
// while there is something to write.
func (t *Std) ScheduleFlush(c Conn) { go c.Flush() }

// Write implements Transport.
func (t *Std) Write(c Conn, frames [][]byte) error {
	// A blocking writev reports nothing until all of it is in the kernel,
	// while the peer may already have read most of it. Writing at most
	// CoalesceLimit bytes per call keeps the pending count (and so the
	// queue bound) within one chunk of the truth.
	for len(frames) > 0 {
		n, size := 0, 0
		for n < len(frames) && (n == 0 || size+len(frames[n]) <= CoalesceLimit) {
			size += len(frames[n])
			n++
		}
		if err := t.nc.SetWriteDeadline(time.Now().Add(t.writeTimeout)); err != nil {
			return fmt.Errorf("set write deadline: %w", err)
		}
		bufs := net.Buffers(frames[:n:n]) // writev on TCP: many frames, one system call
		written, err := bufs.WriteTo(t.nc)
		c.Wrote(int(written))
		if err != nil {
			return fmt.Errorf("write: %w", err)
		}
		frames = frames[n:]
	}
	return nil
}

// ShutWhenDrained implements Transport: a blocking write has drained
// by the time the flush ends.
func (t *Std) ShutWhenDrained(Conn) { _ = t.nc.Close() }

// Close implements Transport.
func (t *Std) Close() error { return t.nc.Close() }
