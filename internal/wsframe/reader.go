// Package wsframe implements RFC 6455 WebSocket framing for the server side
// of a connection.
//
// It is hand-written rather than taken from a full WebSocket library because
// the server keeps very many mostly idle connections: an idle Reader must not
// pin any buffer, and parsing a frame that arrives in one read must not
// allocate.
//
// It also implements permessage-deflate (RFC 7692; deflate.go,
// negotiate.go), with klauspost/compress/flate.
//
// A leaf: it imports no other package of the project, and nothing outside
// the standard library but klauspost/compress (internal/layers checks).
package wsframe

import (
	"encoding/binary"
	"math"
	"math/bits"
	"slices"
	"strconv"
	"unicode/utf8"
)

// Opcode is the 4-bit frame type from the first header byte.
type Opcode byte

// Opcodes defined by RFC 6455, section 5.2. All other values are reserved and
// rejected because no extension that would define them is ever negotiated.
const (
	OpContinuation Opcode = 0x0
	OpText         Opcode = 0x1
	OpBinary       Opcode = 0x2
	OpClose        Opcode = 0x8
	OpPing         Opcode = 0x9
	OpPong         Opcode = 0xA
)

// isControl reports whether op is a control opcode; control frames follow
// different rules (short, unfragmented, allowed between data fragments).
func (op Opcode) isControl() bool { return op&0x8 != 0 }

// CloseError says which close frame the server should send when parsing
// fails, so the caller can answer a protocol violation without having to map
// error values to close codes itself.
type CloseError struct {
	Code   int
	Reason string
}

// Error includes the code so that logs are useful without unwrapping.
func (e *CloseError) Error() string {
	return "wsframe: close " + strconv.Itoa(e.Code) + " " + e.Reason
}

const (
	// maxControlPayload is the RFC 6455 limit that lets control frames be
	// handled with a bounded buffer.
	maxControlPayload = 125
	// maxHeader is the longest client frame header: 2 bytes, 8 bytes of
	// extended length and a 4-byte masking key.
	maxHeader = 14
	// maxPrealloc caps how much a declared (not yet received) frame length
	// may make us allocate up front; a client can lie about its length when
	// MaxMessage is unlimited, so larger payloads grow only as bytes arrive.
	maxPrealloc = 64 << 10
)

func errProtocol() error { return &CloseError{Code: 1002, Reason: "protocol_error"} }
func errTooBig() error   { return &CloseError{Code: 1009, Reason: "too_big"} }
func errUTF8() error     { return &CloseError{Code: 1007, Reason: "invalid_utf8"} }

// Reader incrementally parses client-to-server frames.
//
// The zero value is ready to use. A Reader that is between messages holds no
// heap memory, so millions of idle connections cost only the struct itself.
// A Reader is not safe for concurrent use.
type Reader struct {
	// MaxMessage is the largest payload (of a complete data message after
	// reassembly, and of any single control frame) that Feed will hand to
	// emit; <= 0 means unlimited. It is enforced from frame headers, before
	// any payload is buffered, so a client cannot make the server hold more.
	MaxMessage int
	// Deflate allows compressed messages (RSV1 on a message's first
	// frame): set it once permessage-deflate is negotiated, with no
	// context takeover from the client (see NegotiateDeflate). MaxMessage
	// then bounds the inflated size too.
	Deflate bool

	err error // sticky: once a violation is seen, the stream is unusable

	hdr  [maxHeader]byte // partial header carried across Feed calls
	nhdr int

	// The frame whose payload is being read.
	inFrame  bool
	fin      bool
	op       Opcode
	key      [4]byte
	keyPos   int // masking key offset of the next payload byte
	frameLen int
	remain   int

	msgOp Opcode // opcode of the data message in progress, 0 if none
	// msgDeflated says the message in progress is compressed (RSV1 on its
	// first frame).
	msgDeflated bool
	msg         []byte // unmasked payload of the data message in progress
	ctrl        []byte // unmasked payload of a control frame split across calls
}

// Feed consumes bytes read from the socket, split in any way: a frame may
// arrive one byte at a time, or many frames in one call.
//
// For each complete data message (text or binary, after reassembling
// fragments) and each control frame it calls emit(op, payload). payload is
// only valid during the call: it may alias internal buffers or data. Control
// frames may arrive between fragments of a data message and are emitted
// immediately. For OpClose the payload is the raw close payload (see
// ParseClosePayload).
//
// Feed unmasks payloads in place and therefore MAY MODIFY data; this is what
// lets a frame contained in one read be delivered without copying.
//
// On a protocol violation Feed returns a *CloseError and the Reader must not
// be used again (later calls return the same error). If emit returns false,
// Feed stops and returns nil without consuming further, because the caller is
// closing and the remaining bytes no longer matter.
func (r *Reader) Feed(data []byte, emit func(op Opcode, payload []byte) bool) error {
	if r.err != nil {
		return r.err
	}
	for {
		if !r.inFrame {
			if len(data) == 0 {
				return nil
			}
			if r.nhdr == 0 {
				n, err := r.parseHeader(data)
				if err != nil {
					return r.fail(err)
				}
				if n == 0 { // header incomplete: keep only these few bytes
					r.nhdr = copy(r.hdr[:], data)
					return nil
				}
				data = data[n:]
			} else {
				k := copy(r.hdr[r.nhdr:], data)
				n, err := r.parseHeader(r.hdr[:r.nhdr+k])
				if err != nil {
					return r.fail(err)
				}
				if n == 0 {
					r.nhdr += k
					return nil
				}
				data = data[n-r.nhdr:]
				r.nhdr = 0
			}
		}

		// Fast path: the whole payload is in data and nothing was buffered
		// for this frame, so unmask in place and emit without copying.
		if r.remain == r.frameLen && len(data) >= r.remain &&
			(r.op.isControl() || (r.fin && r.op != OpContinuation)) {
			p := data[:r.remain]
			data = data[r.remain:]
			maskBytes(r.key, 0, p)
			r.inFrame = false
			if r.op.isControl() {
				if !emit(r.op, p) {
					return nil
				}
				continue
			}
			r.msgOp = 0
			more, err := r.message(r.op, p, emit)
			if err != nil {
				return r.fail(err)
			}
			if !more {
				return nil
			}
			continue
		}

		// Slow path: accumulate what is available.
		if r.remain > 0 {
			if len(data) == 0 {
				return nil
			}
			n := min(r.remain, len(data))
			var dst []byte
			if r.op.isControl() {
				if r.ctrl == nil {
					r.ctrl = make([]byte, 0, r.frameLen)
				}
				r.ctrl = append(r.ctrl, data[:n]...)
				dst = r.ctrl[len(r.ctrl)-n:]
			} else {
				if cap(r.msg)-len(r.msg) < n {
					r.msg = slices.Grow(r.msg, max(n, min(r.remain, maxPrealloc)))
				}
				r.msg = append(r.msg, data[:n]...)
				dst = r.msg[len(r.msg)-n:]
			}
			r.keyPos = maskBytes(r.key, r.keyPos, dst)
			r.remain -= n
			data = data[n:]
			if r.remain > 0 {
				return nil
			}
		}

		// The frame is complete.
		r.inFrame = false
		if r.op.isControl() {
			p := r.ctrl
			r.ctrl = nil
			if !emit(r.op, p) {
				return nil
			}
			continue
		}
		if !r.fin {
			continue
		}
		op, p := r.msgOp, r.msg
		r.msgOp, r.msg = 0, nil // release: idle readers hold nothing
		more, err := r.message(op, p, emit)
		if err != nil {
			return r.fail(err)
		}
		if !more {
			return nil
		}
	}
}

// message hands one complete data message to emit, inflating it first if
// it is compressed, and reports whether emit wants more.
func (r *Reader) message(op Opcode, p []byte, emit func(Opcode, []byte) bool) (bool, error) {
	if !r.msgDeflated {
		if op == OpText && !utf8.Valid(p) {
			return false, errUTF8()
		}
		return emit(op, p), nil
	}
	r.msgDeflated = false
	buf := getOutBuf()
	defer putOutBuf(buf)
	out, err := inflate(*buf, p, r.MaxMessage)
	*buf = out
	if err != nil {
		return false, err
	}
	if op == OpText && !utf8.Valid(out) {
		return false, errUTF8()
	}
	return emit(op, out), nil
}

// parseHeader validates the header at the start of b and, once it is
// complete, makes it the current frame and returns its length. It returns 0
// when b is too short. Violations visible in the first two bytes are reported
// as soon as those arrive, so a bad client is cut off without waiting.
func (r *Reader) parseHeader(b []byte) (int, error) {
	if len(b) < 2 {
		return 0, nil
	}
	b0, b1 := b[0], b[1]
	fin := b0&0x80 != 0
	op := Opcode(b0 & 0x0F)
	len7 := int(b1 & 0x7F)
	// RSV2 and RSV3 belong to no extension the server negotiates; RSV1
	// marks a compressed message, on its first frame only (RFC 7692
	// section 6), never on a continuation or a control frame.
	deflated := b0&0x40 != 0
	if b0&0x30 != 0 || (deflated && (!r.Deflate || op.isControl() || op == OpContinuation)) {
		return 0, errProtocol()
	}
	switch op {
	case OpContinuation:
		if r.msgOp == 0 {
			return 0, errProtocol()
		}
	case OpText, OpBinary:
		if r.msgOp != 0 {
			return 0, errProtocol()
		}
	case OpClose, OpPing, OpPong:
		if !fin || len7 > maxControlPayload {
			return 0, errProtocol()
		}
	default:
		return 0, errProtocol()
	}
	if b1&0x80 == 0 {
		return 0, errProtocol() // clients must mask (RFC 6455 5.1)
	}

	n := 2
	var length uint64
	switch len7 {
	case 126:
		n += 2
		if len(b) < n {
			return 0, nil
		}
		length = uint64(binary.BigEndian.Uint16(b[2:]))
	case 127:
		n += 8
		if len(b) < n {
			return 0, nil
		}
		length = binary.BigEndian.Uint64(b[2:])
		if length>>63 != 0 {
			return 0, errProtocol()
		}
	default:
		length = uint64(len7)
	}

	// Enforce the size limit before any payload is buffered.
	var have int
	if op == OpContinuation {
		have = len(r.msg)
	}
	limit := math.MaxInt - have
	if r.MaxMessage > 0 {
		lim := r.MaxMessage
		if deflated || (op == OpContinuation && r.msgDeflated) {
			lim = maxCompressed(lim) // the inflated size is checked as well
		}
		limit = lim - have
	}
	if length > uint64(limit) {
		return 0, errTooBig()
	}

	if len(b) < n+4 {
		return 0, nil
	}
	copy(r.key[:], b[n:n+4])
	n += 4

	r.inFrame = true
	r.fin = fin
	r.op = op
	r.keyPos = 0
	r.frameLen = int(length)
	r.remain = int(length)
	if op == OpText || op == OpBinary {
		r.msgOp = op
		r.msgDeflated = deflated
	}
	return n, nil
}

// fail makes err sticky and drops buffers, since the connection is over.
func (r *Reader) fail(err error) error {
	r.Reset()
	r.err = err
	return err
}

// Reset releases any buffered memory and returns the Reader to its initial
// state (keeping MaxMessage and Deflate), so it can be pooled or reused for a new
// connection, including after an error.
func (r *Reader) Reset() {
	*r = Reader{MaxMessage: r.MaxMessage, Deflate: r.Deflate}
}

// maskBytes XORs b with the masking key starting at key offset pos and
// returns the offset for the byte after b. It works on 8 bytes at a time
// because unmasking is the only per-byte work on the read path.
func maskBytes(key [4]byte, pos int, b []byte) int {
	if len(b) >= 8 {
		k := bits.RotateLeft32(binary.LittleEndian.Uint32(key[:]), -8*(pos&3))
		k64 := uint64(k)<<32 | uint64(k)
		for len(b) >= 32 {
			v0 := binary.LittleEndian.Uint64(b[0:])
			v1 := binary.LittleEndian.Uint64(b[8:])
			v2 := binary.LittleEndian.Uint64(b[16:])
			v3 := binary.LittleEndian.Uint64(b[24:])
			binary.LittleEndian.PutUint64(b[0:], v0^k64)
			binary.LittleEndian.PutUint64(b[8:], v1^k64)
			binary.LittleEndian.PutUint64(b[16:], v2^k64)
			binary.LittleEndian.PutUint64(b[24:], v3^k64)
			b = b[32:]
		}
		for len(b) >= 8 {
			binary.LittleEndian.PutUint64(b, binary.LittleEndian.Uint64(b)^k64)
			b = b[8:]
		}
	}
	for i := range b {
		b[i] ^= key[(pos+i)&3]
	}
	return (pos + len(b)) & 3
}
