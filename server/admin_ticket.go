package server

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"strings"
	"time"
)

// sessionTTL is how long a dashboard session lasts after its login.
const sessionTTL = 12 * time.Hour

// ticketSigner issues and checks dashboard session tickets. A ticket is
// "<payload>.<mac>" in unpadded base64url: the payload is the expiry (unix
// seconds, 8 bytes) and 16 random bytes, the MAC an HMAC-SHA256 of it
// under a key derived from one admin key. Nothing is stored: any node
// configured with the same admin keys accepts a ticket another signed,
// which a dashboard behind a load balancer needs.
type ticketSigner struct {
	macKeys [][]byte // one per admin key
}

const (
	ticketPayloadBytes = 8 + 16
	ticketMACBytes     = sha256.Size
	// ticketMaxLen bounds what verify decodes (a cookie is attacker input).
	ticketMaxLen = 128
)

func newTicketSigner(keys []string) *ticketSigner {
	t := &ticketSigner{}
	for _, k := range keys {
		// Derived, so that a ticket's MAC says nothing usable about the key.
		m := hmac.New(sha256.New, []byte(k))
		m.Write([]byte("switchboard admin session v1"))
		t.macKeys = append(t.macKeys, m.Sum(nil))
	}
	return t
}

// issue signs a ticket with admin key i that expires at exp.
func (t *ticketSigner) issue(i int, exp time.Time) string {
	payload := make([]byte, ticketPayloadBytes)
	binary.BigEndian.PutUint64(payload, uint64(exp.Unix()))
	if _, err := rand.Read(payload[8:]); err != nil {
		panic("crypto/rand: " + err.Error())
	}
	enc := base64.RawURLEncoding
	return enc.EncodeToString(payload) + "." + enc.EncodeToString(t.mac(i, payload))
}

func (t *ticketSigner) mac(i int, payload []byte) []byte {
	m := hmac.New(sha256.New, t.macKeys[i])
	m.Write(payload)
	return m.Sum(nil)
}

// verify reports whether s is a ticket signed with one of the admin keys
// that has not expired at now (nor expires implausibly far after it).
func (t *ticketSigner) verify(s string, now time.Time) bool {
	if len(s) > ticketMaxLen {
		return false
	}
	p, m, ok := strings.Cut(s, ".")
	if !ok {
		return false
	}
	enc := base64.RawURLEncoding.Strict() // one spelling per ticket
	payload, err := enc.DecodeString(p)
	if err != nil || len(payload) != ticketPayloadBytes {
		return false
	}
	got, err := enc.DecodeString(m)
	if err != nil || len(got) != ticketMACBytes {
		return false
	}
	valid := 0
	for i := range t.macKeys {
		valid |= subtleEqual(got, t.mac(i, payload))
	}
	if valid != 1 {
		return false
	}
	exp := int64(binary.BigEndian.Uint64(payload))
	return exp > now.Unix() && exp <= now.Add(sessionTTL+time.Minute).Unix()
}

func subtleEqual(a, b []byte) int {
	if hmac.Equal(a, b) {
		return 1
	}
	return 0
}
