package wsframe

import (
	"strconv"
	"strings"
)

// Deflate is the outcome of a permessage-deflate negotiation.
type Deflate struct {
	// Response is the Sec-WebSocket-Extensions value to answer with.
	Response string
	// WindowBits bounds how far back the server's compressed messages may
	// refer (server_max_window_bits; 15 unless the client asked for less).
	WindowBits int
}

// NegotiateDeflate picks the first permessage-deflate offer among the
// Sec-WebSocket-Extensions header values that the server can accept and
// returns the answer, or false to decline compression (the connection then
// goes on without it; a handshake is never failed over an extension).
//
// Every parameter of RFC 7692 is supported, so an offer is declined only
// when it is malformed: a parameter that is unknown, repeated, missing its
// value or out of range (section 7 has such an offer declined, and the
// next one tried), or a header that does not parse as an extension list
// (then nothing in it is trusted).
//
// The answer always carries server_no_context_takeover and
// client_no_context_takeover (which a server may add to any offer, RFC
// 7692 section 7.1.1.2): messages are compressed on their own both ways,
// so no connection keeps a compression window. client_max_window_bits is
// left out of the answer, since without context takeover the client's
// window no longer matters to the server.
func NegotiateDeflate(values []string) (Deflate, bool) {
	exts, ok := parseExtensions(values)
	if !ok {
		return Deflate{}, false
	}
	for _, e := range exts {
		if !strings.EqualFold(e.name, "permessage-deflate") {
			continue
		}
		if d, ok := acceptDeflate(e.params); ok {
			return d, true
		}
	}
	return Deflate{}, false
}

type extParam struct {
	name, value string
	hasValue    bool
}

type extension struct {
	name   string
	params []extParam
}

func acceptDeflate(params []extParam) (Deflate, bool) {
	d := Deflate{WindowBits: MaxWindowBits}
	seen := map[string]bool{}
	askedBits := false
	for _, p := range params {
		name := strings.ToLower(p.name)
		if seen[name] {
			return Deflate{}, false
		}
		seen[name] = true
		switch name {
		case "server_no_context_takeover", "client_no_context_takeover":
			if p.hasValue {
				return Deflate{}, false
			}
		case "server_max_window_bits":
			bits, ok := windowBits(p)
			if !ok || !p.hasValue {
				return Deflate{}, false
			}
			d.WindowBits, askedBits = bits, true
		case "client_max_window_bits":
			if p.hasValue {
				if _, ok := windowBits(p); !ok {
					return Deflate{}, false
				}
			}
		default:
			return Deflate{}, false
		}
	}
	d.Response = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
	if askedBits {
		// Section 7.1.2.1: accepting the parameter means echoing it.
		d.Response += "; server_max_window_bits=" + strconv.Itoa(d.WindowBits)
	}
	return d, true
}

// windowBits parses a window size parameter: 1*DIGIT from 8 to 15, with no
// leading zero (section 7.1.2).
func windowBits(p extParam) (int, bool) {
	v := p.value
	if len(v) == 0 || len(v) > 2 || v[0] == '0' {
		return 0, false
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < MinWindowBits || n > MaxWindowBits {
		return 0, false
	}
	return n, true
}

// parseExtensions parses Sec-WebSocket-Extensions header values (RFC 6455
// section 9.1): extensions separated by commas, each a token followed by
// ";"-separated parameters, token or token=value, where a value is a token
// or a quoted string.
func parseExtensions(values []string) ([]extension, bool) {
	var exts []extension
	for _, v := range values {
		p := extParser{s: v}
		for {
			p.skipSpace()
			if p.done() {
				break
			}
			if p.peek() == ',' { // empty list elements are allowed
				p.i++
				continue
			}
			e, ok := p.extension()
			if !ok {
				return nil, false
			}
			exts = append(exts, e)
			p.skipSpace()
			if p.done() {
				break
			}
			if p.peek() != ',' {
				return nil, false
			}
			p.i++
		}
	}
	return exts, true
}

type extParser struct {
	s string
	i int
}

func (p *extParser) done() bool { return p.i >= len(p.s) }
func (p *extParser) peek() byte { return p.s[p.i] }

func (p *extParser) skipSpace() {
	for !p.done() && (p.s[p.i] == ' ' || p.s[p.i] == '\t') {
		p.i++
	}
}

func (p *extParser) token() string {
	start := p.i
	for !p.done() && isTokenChar(p.s[p.i]) {
		p.i++
	}
	return p.s[start:p.i]
}

func (p *extParser) extension() (extension, bool) {
	e := extension{name: p.token()}
	if e.name == "" {
		return e, false
	}
	for {
		p.skipSpace()
		if p.done() || p.peek() != ';' {
			return e, true
		}
		p.i++
		p.skipSpace()
		prm := extParam{name: p.token()}
		if prm.name == "" {
			return e, false
		}
		p.skipSpace()
		if !p.done() && p.peek() == '=' {
			p.i++
			p.skipSpace()
			v, ok := p.value()
			if !ok {
				return e, false
			}
			prm.value, prm.hasValue = v, true
		}
		e.params = append(e.params, prm)
	}
}

// value reads a token or a quoted string; RFC 6455 section 9.1 requires a
// quoted value to be a token once unquoted.
func (p *extParser) value() (string, bool) {
	if p.done() {
		return "", false
	}
	if p.peek() != '"' {
		t := p.token()
		return t, t != ""
	}
	p.i++
	var b strings.Builder
	for !p.done() {
		c := p.s[p.i]
		p.i++
		switch {
		case c == '"':
			v := b.String()
			for i := 0; i < len(v); i++ {
				if !isTokenChar(v[i]) {
					return "", false
				}
			}
			return v, v != ""
		case c == '\\':
			if p.done() {
				return "", false
			}
			b.WriteByte(p.s[p.i])
			p.i++
		default:
			b.WriteByte(c)
		}
	}
	return "", false // unterminated
}

// isTokenChar reports whether c may appear in an HTTP token (RFC 7230
// section 3.2.6).
func isTokenChar(c byte) bool {
	if c <= ' ' || c >= 0x7f {
		return false
	}
	return !strings.ContainsRune("()<>@,;:\\\"/[]?={}", rune(c))
}
