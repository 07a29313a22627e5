// Package sse is the wire format of the server-sent-events transport: it
// turns the unmasked WebSocket frames the hub queues for every connection
// into a text/event-stream, and splits a client's POSTed requests into
// frames.
//
// The hub encodes each server frame once, as a WebSocket frame shared by
// every recipient; an SSE connection rewrites those bytes on its way out
// instead of the hub keeping a second encoding of every message. A text
// frame becomes one event whose data lines are the JSON text, a close frame
// becomes a "close" event, control pings and pongs are dropped (they have no
// meaning on a stream the client cannot answer in).
//
// This package imports nothing of the project and no third-party module.
package sse

import (
	"bytes"
	"encoding/binary"
	"strconv"
	"strings"
)

// WebSocket opcodes the converter cares about.
const (
	opText  = 0x1
	opClose = 0x8
)

// ResponseHead is the HTTP response that opens an event stream. The body
// ends when the connection closes (no Content-Length, no chunking), which
// every HTTP/1.1 client and proxy understands; X-Accel-Buffering asks nginx
// not to buffer it.
const ResponseHead = "HTTP/1.1 200 OK\r\n" +
	"Content-Type: text/event-stream; charset=utf-8\r\n" +
	"Cache-Control: no-cache, no-store\r\n" +
	"X-Accel-Buffering: no\r\n" +
	"Connection: close\r\n\r\n"

// Converter rewrites a stream of unmasked WebSocket frames as events. Its
// zero value expects frames from the first byte; Passthrough bytes (the
// response head) are copied unchanged first. A frame may be split across
// the buffers of one or several calls. Not safe for concurrent use.
type Converter struct {
	// Passthrough is how many leading bytes are not frames.
	Passthrough int
	// Resume names the room whose position the event ids carry (see
	// eventID); empty, events have no ids.
	Resume string

	epoch []byte // of Resume, from its join ack
	id    []byte

	hdr     []byte // header bytes of the frame being read
	payload []byte // payload collected so far
	need    int    // payload bytes still to come; -1: reading a header
	op      byte
	started bool
	closed  bool
}

// Closed reports whether a close frame has been converted: the stream has
// ended and the socket may be shut once the bytes are out.
func (cv *Converter) Closed() bool { return cv.closed }

// Append converts frames, appending the event-stream bytes to dst. It
// returns dst and how many input bytes it consumed (all of them).
func (cv *Converter) Append(dst []byte, frames [][]byte) ([]byte, int) {
	if !cv.started {
		cv.started, cv.need = true, -1
	}
	consumed := 0
	for _, b := range frames {
		consumed += len(b)
		for len(b) > 0 {
			if cv.Passthrough > 0 {
				n := min(cv.Passthrough, len(b))
				dst = append(dst, b[:n]...)
				cv.Passthrough -= n
				b = b[n:]
				continue
			}
			if cv.need < 0 {
				b = cv.readHeader(b)
				if cv.need < 0 {
					continue // header incomplete; the rest comes next
				}
				if cv.need == 0 { // an empty payload is complete at once
					dst = cv.emit(dst, nil)
					cv.need = -1
					continue
				}
			}
			if len(cv.payload) == 0 && cv.need <= len(b) {
				// The whole payload is in this buffer (the common case):
				// no copy.
				dst = cv.emit(dst, b[:cv.need])
				b, cv.need = b[cv.need:], -1
				continue
			}
			n := min(cv.need, len(b))
			cv.payload = append(cv.payload, b[:n]...)
			cv.need -= n
			b = b[n:]
			if cv.need == 0 {
				dst = cv.emit(dst, cv.payload)
				cv.payload, cv.need = cv.payload[:0], -1
				if cap(cv.payload) > maxKeptPayload {
					cv.payload = nil // an idle stream keeps no big buffer
				}
			}
		}
	}
	return dst, consumed
}

// readHeader collects header bytes from b and returns the rest of b. Once
// the header is whole, need holds the payload length.
func (cv *Converter) readHeader(b []byte) []byte {
	for len(b) > 0 {
		cv.hdr = append(cv.hdr, b[0])
		b = b[1:]
		if size := headerSize(cv.hdr); size > 0 && len(cv.hdr) == size {
			cv.op = cv.hdr[0] & 0x0F
			switch l := cv.hdr[1] & 0x7F; l {
			case 126:
				cv.need = int(binary.BigEndian.Uint16(cv.hdr[2:4]))
			case 127:
				cv.need = int(binary.BigEndian.Uint64(cv.hdr[2:10]))
			default:
				cv.need = int(l)
			}
			cv.hdr = cv.hdr[:0]
			return b
		}
	}
	return b
}

// headerSize is the size of the header that starts with hdr, or 0 while
// too few bytes are known to tell.
func headerSize(hdr []byte) int {
	if len(hdr) < 2 {
		return 0
	}
	switch hdr[1] & 0x7F {
	case 126:
		return 4
	case 127:
		return 10
	}
	return 2
}

// maxKeptPayload is the largest reassembly buffer a stream keeps between
// frames split across buffers.
const maxKeptPayload = 4 << 10

// emit appends the event for the frame just read, whose payload is p.
func (cv *Converter) emit(dst, p []byte) []byte {
	switch cv.op {
	case opText:
		return AppendEvent(dst, p, cv.eventID(p))
	case opClose:
		cv.closed = true
		code, reason := 1005, ""
		if len(p) >= 2 {
			code = int(binary.BigEndian.Uint16(p))
			reason = string(p[2:])
		}
		return AppendClose(dst, code, reason)
	}
	return dst // pings and pongs mean nothing here
}

// AppendEvent appends one event carrying a JSON frame. Line breaks inside
// the text (insignificant JSON whitespace; a JSON string cannot hold one
// raw) start a new data line, which the client joins back with "\n". A
// non-empty id is the event's id.
func AppendEvent(dst, text, id []byte) []byte {
	for {
		i := bytes.IndexAny(text, "\r\n")
		dst = append(dst, "data: "...)
		if i < 0 {
			dst = append(dst, text...)
			dst = append(dst, '\n')
			break
		}
		dst = append(dst, text[:i]...)
		dst = append(dst, '\n')
		if text[i] == '\r' && i+1 < len(text) && text[i+1] == '\n' {
			i++
		}
		text = text[i+1:]
	}
	if len(id) > 0 {
		dst = append(dst, "id: "...)
		dst = append(dst, id...)
		dst = append(dst, '\n')
	}
	return append(dst, '\n')
}

// AppendClose appends the event that ends a stream: the WebSocket close
// code and reason the connection would have been closed with.
func AppendClose(dst []byte, code int, reason string) []byte {
	dst = append(dst, "event: close\ndata: {\"code\":"...)
	dst = strconv.AppendInt(dst, int64(code), 10)
	dst = append(dst, `,"reason":`...)
	dst = strconv.AppendQuoteToASCII(dst, reason)
	return append(dst, "}\n\n"...)
}

var (
	offsetKey = []byte(`,"offset":`)
	tsKey     = []byte(`,"ts":`)
	epochKey  = []byte(`,"epoch":"`)
)

// JoinRef is the request id of the join a stream's room query makes.
func JoinRef(room string) string { return "sse-join-" + room }

// eventID returns the id of an event carrying text: for the Resume room's
// messages and the ack of its join, "offset:epoch" (the position to resume
// from, which an EventSource sends back as Last-Event-ID), else none.
// Offsets are per room, so no other room's frames carry one.
func (cv *Converter) eventID(text []byte) []byte {
	if cv.Resume == "" {
		return nil
	}
	var offset uint64
	switch {
	case bytes.HasPrefix(text, []byte(`{"type":"message","room":"`+cv.Resume+`",`)):
		n, ok := messageOffset(text)
		if !ok {
			return nil
		}
		offset = n
	case bytes.HasPrefix(text, []byte(`{"type":"ack","ref":"`+JoinRef(cv.Resume)+`",`)):
		n, epoch, ok := ackPosition(text)
		if !ok {
			return nil
		}
		offset, cv.epoch = n, append(cv.epoch[:0], epoch...)
	default:
		return nil
	}
	cv.id = strconv.AppendUint(cv.id[:0], offset, 10)
	if len(cv.epoch) > 0 {
		cv.id = append(append(cv.id, ':'), cv.epoch...)
	}
	return cv.id
}

// messageOffset reads the offset of a message as the hub encodes it: it
// ends with `,"offset":N,"ts":T}` after its data (which may itself hold an
// "offset" key), so it is read from the end.
func messageOffset(text []byte) (uint64, bool) {
	if len(text) < 2 || text[len(text)-1] != '}' {
		return 0, false
	}
	rest := bytes.TrimRight(text[:len(text)-1], "0123456789")
	if !bytes.HasSuffix(rest, tsKey) {
		return 0, false
	}
	rest = rest[:len(rest)-len(tsKey)]
	end := len(rest)
	rest = bytes.TrimRight(rest, "0123456789")
	if end == len(rest) || !bytes.HasSuffix(rest, offsetKey) {
		return 0, false
	}
	n, err := strconv.ParseUint(string(text[len(rest):end]), 10, 64)
	return n, err == nil
}

// ackPosition reads a join ack's offset and epoch. They come before
// anything taken from clients but JSON strings (ref, user ids, in which
// `"offset":` cannot occur unescaped) and before any recovered messages,
// so the first occurrence is the ack's own.
func ackPosition(text []byte) (uint64, []byte, bool) {
	i := bytes.Index(text, offsetKey)
	if i < 0 {
		return 0, nil, false
	}
	rest := text[i+len(offsetKey):]
	j := 0
	for j < len(rest) && rest[j] >= '0' && rest[j] <= '9' {
		j++
	}
	n, err := strconv.ParseUint(string(rest[:j]), 10, 64)
	if err != nil || !bytes.HasPrefix(rest[j:], epochKey) {
		return 0, nil, false
	}
	rest = rest[j+len(epochKey):]
	k := bytes.IndexByte(rest, '"')
	if k < 0 || bytes.IndexByte(rest[:k], '\\') >= 0 {
		return 0, nil, false
	}
	return n, rest[:k], true
}

// ParsePosition reads a Last-Event-ID: "offset:epoch", or a bare offset.
func ParsePosition(id string) (offset uint64, epoch string, ok bool) {
	num, epoch, _ := strings.Cut(strings.TrimSpace(id), ":")
	n, err := strconv.ParseUint(num, 10, 64)
	if err != nil {
		return 0, "", false
	}
	return n, epoch, true
}

// Requests splits a POST body into the frames it carries: one JSON object
// per line (a body holding a single object may span lines only if it is
// the whole body). Blank lines are skipped. fn returning false stops.
func Requests(body []byte, fn func(frame []byte) bool) {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 {
		return
	}
	if !bytes.Contains(trimmed, []byte{'\n'}) || !startsEveryLine(trimmed) {
		fn(trimmed)
		return
	}
	for len(trimmed) > 0 {
		line := trimmed
		if i := bytes.IndexByte(trimmed, '\n'); i >= 0 {
			line, trimmed = trimmed[:i], trimmed[i+1:]
		} else {
			trimmed = nil
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		if !fn(line) {
			return
		}
	}
}

// startsEveryLine reports whether every non-blank line of b starts a JSON
// object and ends one, i.e. b is newline-delimited frames rather than one
// object written over several lines.
func startsEveryLine(b []byte) bool {
	for _, line := range bytes.Split(b, []byte{'\n'}) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		if line[0] != '{' || line[len(line)-1] != '}' {
			return false
		}
	}
	return true
}
