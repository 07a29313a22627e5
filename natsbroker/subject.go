package natsbroker

import (
	"strings"
)

// Subject returns the NATS subject of a switchboard channel: Prefix
// followed by the channel as one token. Letters, digits and '-' stay as
// they are; every other byte, '_' included, becomes '_' and two upper-case
// hex digits, so "room:a.b" is "room_3Aa_2Eb". The empty channel is "_".
// The encoding is reversible and keeps subjects readable in NATS tools.
func (b *Broker) Subject(channel string) string {
	return b.opts.Prefix + EncodeToken(channel)
}

func (b *Broker) channelOf(subject string) (string, bool) {
	tok, ok := strings.CutPrefix(subject, b.opts.Prefix)
	if !ok {
		return "", false
	}
	return DecodeToken(tok)
}

const hexDigits = "0123456789ABCDEF"

func plain(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-'
}

// EncodeToken escapes s into a single valid NATS subject token.
func EncodeToken(s string) string {
	if s == "" {
		return "_"
	}
	n := 0
	for i := 0; i < len(s); i++ {
		if !plain(s[i]) {
			n++
		}
	}
	if n == 0 {
		return s
	}
	var sb strings.Builder
	sb.Grow(len(s) + 2*n)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if plain(c) {
			sb.WriteByte(c)
			continue
		}
		sb.WriteByte('_')
		sb.WriteByte(hexDigits[c>>4])
		sb.WriteByte(hexDigits[c&0xf])
	}
	return sb.String()
}

// DecodeToken reverses EncodeToken; ok is false for a token EncodeToken
// cannot have made.
func DecodeToken(tok string) (string, bool) {
	if tok == "_" {
		return "", true
	}
	if tok == "" {
		return "", false
	}
	if !strings.Contains(tok, "_") {
		for i := 0; i < len(tok); i++ {
			if !plain(tok[i]) {
				return "", false
			}
		}
		return tok, true
	}
	out := make([]byte, 0, len(tok))
	for i := 0; i < len(tok); i++ {
		c := tok[i]
		switch {
		case plain(c):
			out = append(out, c)
		case c == '_' && i+2 < len(tok) && unhex(tok[i+1]) >= 0 && unhex(tok[i+2]) >= 0:
			out = append(out, byte(unhex(tok[i+1])<<4|unhex(tok[i+2])))
			i += 2
		default:
			return "", false
		}
	}
	return string(out), true
}

func unhex(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// validSubject reports whether s is a literal NATS subject: non-empty
// tokens separated by '.', no wildcards, no whitespace or control bytes.
func validSubject(s string) bool {
	if s == "" {
		return false
	}
	for _, tok := range strings.Split(s, ".") {
		if tok == "" || tok == "*" || tok == ">" {
			return false
		}
		for i := 0; i < len(tok); i++ {
			if c := tok[i]; c <= ' ' || c == 0x7f || c == '*' || c == '>' {
				return false
			}
		}
	}
	return true
}
