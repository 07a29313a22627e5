package wsframe

import (
	"bytes"
	"errors"
	"io"
	"math"
	"slices"
	"sync"

	"github.com/klauspost/compress/flate"
)

// permessage-deflate (RFC 7692) as this server uses it: every message is
// compressed on its own in both directions (the server answers
// server_no_context_takeover and client_no_context_takeover), so neither
// end keeps an LZ77 window between messages. That is what lets one
// compressed frame be shared by every recipient of a broadcast, and it
// means a connection holds no compression state at all: compressors and
// decompressors are pooled and only in use while a message is being
// encoded or decoded.
//
// klauspost/compress/flate rather than compress/flate: it is about twice
// as fast at the same ratio on JSON (BenchmarkDeflate), and it can bound
// the window, which server_max_window_bits below 15 requires.

// MinWindowBits and MaxWindowBits bound the window sizes RFC 7692 lets a
// peer ask for.
const (
	MinWindowBits = 8
	MaxWindowBits = 15
)

// deflateTail is what RFC 7692 section 7.2.2 has the receiver append to a
// compressed message (the end of the sync flush the sender removed),
// followed by an empty final stored block so the decompressor reaches a
// clean end of stream instead of waiting for more input.
var deflateTail = []byte{0x00, 0x00, 0xff, 0xff, 0x01, 0x00, 0x00, 0xff, 0xff}

// syncMarker ends the output of a sync flush; RFC 7692 section 7.2.1 has
// the sender remove it.
var syncMarker = []byte{0x00, 0x00, 0xff, 0xff}

// deflater compresses one message at a time into buf.
type deflater struct {
	w   *flate.Writer
	buf bytes.Buffer
}

// deflaters pools compressors per window size (index bits-MinWindowBits):
// a compressor is some hundred kilobytes, so none is held per connection.
var deflaters [MaxWindowBits - MinWindowBits + 1]sync.Pool

// maxPooledBuf keeps a rare huge message from pinning its buffer in a pool.
const maxPooledBuf = 256 << 10

func getDeflater(bits int) *deflater {
	p := &deflaters[bits-MinWindowBits]
	if d, ok := p.Get().(*deflater); ok {
		return d
	}
	d := &deflater{}
	var err error
	if bits == MaxWindowBits {
		d.w, err = flate.NewWriter(nil, flate.BestSpeed)
	} else {
		d.w, err = flate.NewWriterWindow(nil, 1<<bits)
	}
	if err != nil {
		panic("wsframe: deflate writer: " + err.Error()) // constant arguments: cannot fail
	}
	return d
}

func putDeflater(bits int, d *deflater) {
	if d.buf.Cap() > maxPooledBuf {
		d.buf = bytes.Buffer{}
	}
	deflaters[bits-MinWindowBits].Put(d)
}

// AppendDeflated appends a final data frame of opcode op with RSV1 set
// (RFC 7692 "compressed") whose payload is payload compressed on its own,
// with back-references no farther than 1<<windowBits bytes, so any peer
// that negotiated permessage-deflate can decode it whatever window it
// asked for. When compressing would not make the payload smaller it
// appends nothing and reports false: the caller sends it uncompressed,
// which RFC 7692 allows message by message.
//
// windowBits outside [MinWindowBits, MaxWindowBits] and control opcodes
// panic: both are programming errors.
func AppendDeflated(dst []byte, op Opcode, payload []byte, windowBits int) ([]byte, bool) {
	if op.isControl() || op == OpContinuation {
		panic("wsframe: only text and binary messages are compressed")
	}
	if windowBits < MinWindowBits || windowBits > MaxWindowBits {
		panic("wsframe: window bits out of range")
	}
	d := getDeflater(windowBits)
	defer putDeflater(windowBits, d)
	d.buf.Reset()
	d.w.Reset(&d.buf)
	// Writes to a bytes.Buffer cannot fail.
	_, _ = d.w.Write(payload)
	_ = d.w.Flush()
	out, ok := bytes.CutSuffix(d.buf.Bytes(), syncMarker)
	if !ok || len(out) >= len(payload) {
		return dst, false
	}
	dst = slices.Grow(dst, FrameSize(len(out)))
	dst = appendHeader(dst, 0x80|0x40|byte(op), len(out))
	return append(dst, out...), true
}

// inflater decompresses one message at a time. The decompressor keeps a
// 32 KiB window and its tables, which is why it is pooled, never kept by
// a connection.
type inflater struct {
	fr  io.ReadCloser // also a flate.Resetter
	src msgSource
}

var inflaters sync.Pool

// outBufs pools inflated messages between their emit calls.
var outBufs sync.Pool

// msgSource reads a compressed message and then deflateTail. It is an
// io.ByteReader so the decompressor reads it directly, without a bufio
// layer of its own.
type msgSource struct {
	p    []byte
	tail []byte
}

func (s *msgSource) Read(b []byte) (int, error) {
	if len(s.p) > 0 {
		n := copy(b, s.p)
		s.p = s.p[n:]
		return n, nil
	}
	if len(s.tail) == 0 {
		return 0, io.EOF
	}
	n := copy(b, s.tail)
	s.tail = s.tail[n:]
	return n, nil
}

func (s *msgSource) ReadByte() (byte, error) {
	if len(s.p) > 0 {
		c := s.p[0]
		s.p = s.p[1:]
		return c, nil
	}
	if len(s.tail) == 0 {
		return 0, io.EOF
	}
	c := s.tail[0]
	s.tail = s.tail[1:]
	return c, nil
}

func errBadDeflate() error { return &CloseError{Code: 1007, Reason: "bad_compressed_data"} }

// maxCompressed is the longest compressed payload accepted for a message
// whose inflated size may be at most limit: deflate never needs more than
// about 5 bytes per 16 KiB stored block above the data itself, so a
// conforming sender's message of the limit's size always fits, while the
// size check still happens from the frame header, before any buffering.
func maxCompressed(limit int) int {
	if limit > math.MaxInt/2 {
		return math.MaxInt // no overflow for a limit set absurdly high
	}
	return limit + limit/1024 + 64
}

// inflate decompresses a message into dst[:0] and returns it. limit > 0
// bounds the inflated size: no more than limit+1 bytes are ever produced,
// however small the input (a "decompression bomb" costs the server at
// most the limit), and a message past it is a 1009 *CloseError. Corrupt
// input is a 1007 *CloseError.
func inflate(dst, src []byte, limit int) ([]byte, error) {
	inf, _ := inflaters.Get().(*inflater)
	if inf == nil {
		inf = &inflater{}
	}
	inf.src = msgSource{p: src, tail: deflateTail}
	if inf.fr == nil {
		inf.fr = flate.NewReader(&inf.src)
	} else if err := inf.fr.(flate.Resetter).Reset(&inf.src, nil); err != nil {
		return dst, errBadDeflate()
	}
	defer func() {
		inf.src = msgSource{}
		inflaters.Put(inf)
	}()

	out := dst[:0]
	if cap(out) == 0 {
		out = make([]byte, 0, startSize(len(src), limit))
	}
	for {
		if len(out) == cap(out) {
			out = slices.Grow(out, max(len(out), 512))
		}
		end := cap(out)
		if limit > 0 {
			end = min(end, limit+1)
		}
		n, err := inf.fr.Read(out[len(out):end])
		out = out[:len(out)+n]
		if limit > 0 && len(out) > limit {
			return out[:0], errTooBig()
		}
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out[:0], errBadDeflate()
		}
	}
}

// startSize guesses the inflated size of a message of n compressed bytes
// (JSON commonly shrinks to a fifth), within the limit.
func startSize(n, limit int) int {
	s := max(4*n, 512)
	if limit > 0 {
		s = min(s, limit+1)
	}
	return min(s, maxPrealloc)
}

// getOutBuf and putOutBuf recycle the buffers inflated messages are
// emitted from, so an idle connection holds none.
func getOutBuf() *[]byte {
	if b, ok := outBufs.Get().(*[]byte); ok {
		return b
	}
	return new([]byte)
}

func putOutBuf(b *[]byte) {
	if cap(*b) > maxPooledBuf {
		*b = nil
	}
	*b = (*b)[:0]
	outBufs.Put(b)
}

// DeflateSegment compresses p on its own into a piece of a compressed
// message: it ends with the sync flush marker and refers to nothing
// before it, so AppendDeflatedAround can put it between other pieces.
// A large text shared by many messages (a room's presence snapshot) is
// compressed once this way.
func DeflateSegment(p []byte) []byte {
	d := getDeflater(MaxWindowBits)
	defer putDeflater(MaxWindowBits, d)
	d.buf.Reset()
	d.w.Reset(&d.buf)
	_, _ = d.w.Write(p)
	_ = d.w.Flush()
	return bytes.Clone(d.buf.Bytes())
}

// AppendDeflatedAround appends a final compressed (RSV1) data frame whose
// message is head, then the text DeflateSegment made seg from, then tail.
// head and tail go as stored (uncompressed) deflate blocks: they are
// short and differ per message. Stored blocks and a segment refer to
// nothing before them, so the frame decodes under any window size.
func AppendDeflatedAround(dst []byte, op Opcode, head, seg, tail []byte) []byte {
	if op.isControl() || op == OpContinuation {
		panic("wsframe: only text and binary messages are compressed")
	}
	n := storedSize(len(head)) + len(seg) + storedSize(len(tail)) + 1
	dst = slices.Grow(dst, FrameSize(n))
	dst = appendHeader(dst, 0x80|0x40|byte(op), n)
	dst = appendStored(dst, head)
	dst = append(dst, seg...)
	dst = appendStored(dst, tail)
	// RFC 7692 7.2.1: the message ends with an empty stored block, less
	// the 00 00 ff ff the receiver puts back; its first byte remains.
	return append(dst, 0x00)
}

const maxStored = 0xFFFF

// storedSize is the size of p as stored deflate blocks.
func storedSize(n int) int {
	blocks := (n + maxStored - 1) / maxStored
	return n + 5*blocks
}

// appendStored appends p as non-final stored deflate blocks, starting on
// a byte boundary (after a sync flush or another stored block).
func appendStored(dst, p []byte) []byte {
	for len(p) > 0 {
		k := min(len(p), maxStored)
		dst = append(dst, 0x00, byte(k), byte(k>>8), ^byte(k), ^byte(k>>8))
		dst = append(dst, p[:k]...)
		p = p[k:]
	}
	return dst
}
