package switchboard

import (
	"github.com/lesismal/nbio/nbhttp"

	"github.com/switchboardhq/switchboard/internal/transport"
)

// connWire is a connection as its transport sees it (transport.Conn): the
// transport flushes its queue, reports bytes written, and hands over what
// it reads and the loss of the socket.
type connWire Conn

func (c *Conn) wire() *connWire { return (*connWire)(c) }

func (w *connWire) Flush()              { (*Conn)(w).flush() }
func (w *connWire) Wrote(n int)         { (*Conn)(w).wrote(n) }
func (w *connWire) Pending() int64      { return w.pending.Load() }
func (w *connWire) Data(b []byte) error { return w.hub.onData((*Conn)(w), b) }
func (w *connWire) Lost(err error)      { w.hub.transportClosed((*Conn)(w), err) }

// ConfigureEngine prepares an nbio HTTP engine to serve Hub handlers: it
// lets the hub see how many bytes each connection still has buffered, which
// the outbound queue bound (Limits.QueueBytes) and slow-consumer detection
// rely on. Call it before engine.Start.
func ConfigureEngine(engine *nbhttp.Engine) { transport.ConfigureEngine(engine) }
