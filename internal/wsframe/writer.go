package wsframe

import (
	"encoding/binary"
	"slices"
	"unicode/utf8"
)

// maxCloseReason keeps a close payload (2-byte code + reason) within the
// control frame limit.
const maxCloseReason = maxControlPayload - 2

// FrameSize returns the header+payload size of an unmasked frame, so callers
// can size a write buffer once instead of letting AppendFrame grow it.
func FrameSize(payloadLen int) int {
	switch {
	case payloadLen <= 125:
		return 2 + payloadLen
	case payloadLen <= 0xFFFF:
		return 4 + payloadLen
	default:
		return 10 + payloadLen
	}
}

// AppendFrame appends a complete frame to dst. Server-to-client frames are
// never masked (RFC 6455 5.1) and always FIN: the server builds each message
// in memory, so it never needs to fragment.
//
// It panics if op is a control opcode and payload exceeds 125 bytes, because
// such a frame would make every conforming client fail the connection; that
// is a programming error, not a runtime condition.
func AppendFrame(dst []byte, op Opcode, payload []byte) []byte {
	dst = slices.Grow(dst, FrameSize(len(payload)))
	return append(AppendHeader(dst, op, len(payload)), payload...)
}

// AppendHeader appends only the header of an unmasked final frame whose
// payload of n bytes the caller writes next, possibly from several shared
// buffers (a large snapshot sent to many connections is never copied).
func AppendHeader(dst []byte, op Opcode, n int) []byte {
	if op.isControl() && n > maxControlPayload {
		panic("wsframe: control frame payload over 125 bytes")
	}
	return appendHeader(dst, 0x80|byte(op), n)
}

// appendHeader appends a server frame header with first byte b0 (FIN,
// RSV bits and opcode) for a payload of n bytes.
func appendHeader(dst []byte, b0 byte, n int) []byte {
	switch {
	case n <= 125:
		dst = append(dst, b0, byte(n))
	case n <= 0xFFFF:
		dst = append(dst, b0, 126)
		dst = binary.BigEndian.AppendUint16(dst, uint16(n))
	default:
		dst = append(dst, b0, 127)
		dst = binary.BigEndian.AppendUint64(dst, uint64(n))
	}
	return dst
}

// AppendClose appends a close frame carrying code and reason. A reason that
// would not fit in a control frame is cut to 123 bytes at a rune boundary, so
// that a long, caller-supplied reason can neither break the frame nor produce
// the invalid UTF-8 that would make the client fail with 1007. The caller is
// responsible for code being one that may be sent (not 1005, 1006 or 1015).
func AppendClose(dst []byte, code int, reason string) []byte {
	if len(reason) > maxCloseReason {
		cut := maxCloseReason
		for cut > 0 && !utf8.RuneStart(reason[cut]) {
			cut--
		}
		reason = reason[:cut]
	}
	n := 2 + len(reason)
	dst = slices.Grow(dst, FrameSize(n))
	dst = append(dst, 0x80|byte(OpClose), byte(n))
	dst = binary.BigEndian.AppendUint16(dst, uint16(code))
	return append(dst, reason...)
}

// ParseClosePayload decodes a close payload as emitted by Reader.Feed. It is
// separate from the Reader because a close payload is only meaningful to the
// caller, which must echo the code back. An empty payload means the client
// sent no status, reported as 1005. A 1-byte payload or a code that may not
// appear on the wire yields a 1002 *CloseError; a reason that is not UTF-8
// yields 1007.
func ParseClosePayload(p []byte) (code int, reason string, err error) {
	switch len(p) {
	case 0:
		return 1005, "", nil
	case 1:
		return 0, "", errProtocol()
	}
	code = int(binary.BigEndian.Uint16(p))
	if !validCloseCode(code) {
		return 0, "", errProtocol()
	}
	if !utf8.Valid(p[2:]) {
		return 0, "", errUTF8()
	}
	return code, string(p[2:]), nil
}

// validCloseCode reports whether code may be received in a close frame:
// RFC 6455 section 7.4 codes plus the later IANA registrations 1012-1014,
// and the 3000-4999 ranges for libraries and applications. 1005, 1006 and
// 1015 are reserved for local use and must never be sent.
func validCloseCode(code int) bool {
	switch {
	case code >= 1000 && code <= 1003:
		return true
	case code >= 1007 && code <= 1014:
		return true
	case code >= 3000 && code <= 4999:
		return true
	}
	return false
}
