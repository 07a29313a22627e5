package switchboard

import (
	"net/http"
	"sync"

	"github.com/switchboardhq/switchboard/internal/wsframe"
)

// CompressionOptions configure permessage-deflate (RFC 7692).
//
// Every message is compressed on its own, in both directions: the server
// answers server_no_context_takeover and client_no_context_takeover, so a
// connection keeps no compression window (no memory per connection, idle
// or not), and one compressed frame serves every recipient of a broadcast
// that negotiated the same window size: a publish is compressed once, not
// once per connection.
type CompressionOptions struct {
	// Enabled negotiates permessage-deflate with clients that offer it
	// (browsers do; other clients go on uncompressed). Default off:
	// compression costs CPU on both ends for every message that reaches
	// the threshold, it pays only where bandwidth is scarcer than CPU, and
	// an application that puts secrets and attacker-chosen text in one
	// message exposes the secrets to compression-length attacks (CRIME,
	// BREACH), so it is a choice to make knowingly.
	Enabled bool
	// Threshold is the smallest message, in bytes of JSON, sent
	// compressed; smaller ones go as they are. Default 256: below about
	// that, deflate saves a few dozen bytes at best (its block header and
	// Huffman tables eat most of the gain, and typical frames here, acks,
	// pings and presence changes, are 30-150 bytes) for the same fixed CPU
	// cost as a larger message (docs/performance.md).
	Threshold int
}

// DefaultCompressionThreshold is CompressionOptions.Threshold's default.
const DefaultCompressionThreshold = 256

func (o CompressionOptions) withDefaults() CompressionOptions {
	if o.Threshold <= 0 {
		o.Threshold = DefaultCompressionThreshold
	}
	return o
}

// acceptDeflate negotiates permessage-deflate for c from the handshake
// request and returns the Sec-WebSocket-Extensions answer ("" when off or
// not offered). It runs before c is reachable by any other goroutine.
func (h *Hub) acceptDeflate(c *Conn, r *http.Request) string {
	if !h.opts.Compression.Enabled {
		return ""
	}
	d, ok := wsframe.NegotiateDeflate(r.Header.Values("Sec-WebSocket-Extensions"))
	if !ok {
		return ""
	}
	c.deflateBits = uint8(d.WindowBits)
	c.reader.Deflate = true
	h.counters.connsDeflate.Add(1)
	return d.Response
}

// deflate compresses one text message for connections with a window of
// 1<<bits (see wsframe.AppendDeflated).
func (h *Hub) deflate(text []byte, bits uint8) ([]byte, bool) {
	h.counters.deflated.Add(1)
	return wsframe.AppendDeflated(nil, wsframe.OpText, text, int(bits))
}

// deflates reports whether a text of n bytes goes compressed to c.
func (c *Conn) deflates(n int) bool {
	return c.deflateBits != 0 && n >= c.hub.opts.Compression.Threshold
}

// textFrame frames a text meant for c alone.
func (c *Conn) textFrame(text []byte) []byte {
	if c.deflates(len(text)) {
		if f, ok := c.hub.deflate(text, c.deflateBits); ok {
			return f
		}
	}
	return wsframe.AppendFrame(make([]byte, 0, wsframe.FrameSize(len(text))), wsframe.OpText, text)
}

// textParts frames head+mid+tail for c alone, where mid is room's
// presence snapshot, shared by every join while it lasts. Without
// compression the parts are queued back to back, so mid is never copied;
// compressed, mid is compressed once per snapshot (segmentCache) and head
// and tail are framed around it.
func (c *Conn) textParts(room string, head, mid, tail []byte) [][]byte {
	n := len(head) + len(mid) + len(tail)
	if c.deflates(n) {
		if seg := c.hub.segments.get(c.hub, room, mid); len(seg)+len(head)+len(tail)+16 < n {
			return [][]byte{wsframe.AppendDeflatedAround(nil, wsframe.OpText, head, seg, tail)}
		}
	}
	hdr := wsframe.AppendHeader(make([]byte, 0, 10+len(head)), wsframe.OpText, n)
	return [][]byte{append(hdr, head...), mid, tail}
}

// segmentCache keeps, per room, the compressed form of the room's
// current presence snapshot, so that joins into a big room compress the
// member list once per snapshot rather than once per join. An entry is
// replaced when the room's snapshot changes; the cache is emptied when it
// holds maxSegments rooms, which bounds what it keeps (rooms come and go).
type segmentCache struct {
	mu sync.Mutex
	m  map[string]segment
}

type segment struct {
	src *byte // the snapshot compressed: the same slice, not only equal bytes
	n   int
	out []byte
}

const maxSegments = 1024

func (s *segmentCache) get(h *Hub, room string, mid []byte) []byte {
	var src *byte
	if len(mid) > 0 {
		src = &mid[0]
	}
	s.mu.Lock()
	e, ok := s.m[room]
	s.mu.Unlock()
	if ok && e.src == src && e.n == len(mid) {
		return e.out
	}
	h.counters.deflated.Add(1)
	out := wsframe.DeflateSegment(mid)
	s.mu.Lock()
	if s.m == nil || len(s.m) >= maxSegments {
		s.m = make(map[string]segment)
	}
	s.m[room] = segment{src: src, n: len(mid), out: out}
	s.mu.Unlock()
	return out
}

// sharedText is one text going to many connections. Each encoding is
// built when the first recipient that needs it comes, then shared: at
// most the plain frame and one compressed frame per window size in use
// (in practice one: browsers leave the server's window at its maximum).
// It is used by one goroutine, the one fanning the text out.
type sharedText struct {
	text     []byte
	plain    []byte
	deflated [wsframe.MaxWindowBits - wsframe.MinWindowBits + 1][]byte
}

func newSharedText(text []byte) sharedText { return sharedText{text: text} }

// frameFor is the frame to queue to c.
func (s *sharedText) frameFor(c *Conn) []byte {
	if c.deflates(len(s.text)) {
		i := int(c.deflateBits) - wsframe.MinWindowBits
		if s.deflated[i] == nil {
			f, ok := c.hub.deflate(s.text, c.deflateBits)
			if !ok {
				f = s.plainFrame() // incompressible: every window gets the plain frame
			}
			s.deflated[i] = f
		}
		return s.deflated[i]
	}
	return s.plainFrame()
}

func (s *sharedText) plainFrame() []byte {
	if s.plain == nil {
		s.plain = wsframe.AppendFrame(make([]byte, 0, wsframe.FrameSize(len(s.text))), wsframe.OpText, s.text)
	}
	return s.plain
}
