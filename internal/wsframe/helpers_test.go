package wsframe

import (
	"encoding/binary"
	"fmt"
	"slices"
)

// frameOpt describes deviations from a well-formed client frame, so tests
// can build every kind of violation with one encoder.
type frameOpt struct {
	noFin    bool
	noMask   bool
	rsv      byte // OR-ed into the first byte (0x40, 0x20, 0x10)
	lenForm  int  // 0: minimal; 126 or 127: force that encoding
	declared *uint64
	key      [4]byte
}

var testKey = [4]byte{0x37, 0xfa, 0x21, 0x3d}

// clientFrame is the test-side client encoder: it masks payload like a
// browser would.
func clientFrame(op Opcode, payload []byte, o frameOpt) []byte {
	b0 := byte(op) | o.rsv
	if !o.noFin {
		b0 |= 0x80
	}
	n := uint64(len(payload))
	if o.declared != nil {
		n = *o.declared
	}
	form := o.lenForm
	if form == 0 {
		switch {
		case n <= 125:
		case n <= 0xFFFF:
			form = 126
		default:
			form = 127
		}
	}
	var maskBit byte
	if !o.noMask {
		maskBit = 0x80
	}
	out := []byte{b0}
	switch form {
	case 126:
		out = append(out, maskBit|126)
		out = binary.BigEndian.AppendUint16(out, uint16(n))
	case 127:
		out = append(out, maskBit|127)
		out = binary.BigEndian.AppendUint64(out, n)
	default:
		out = append(out, maskBit|byte(n))
	}
	if o.noMask {
		return append(out, payload...)
	}
	key := o.key
	if key == [4]byte{} {
		key = testKey
	}
	out = append(out, key[:]...)
	for i, c := range payload {
		out = append(out, c^key[i&3])
	}
	return out
}

// mf builds a masked FIN frame.
func mf(op Opcode, payload string) []byte { return clientFrame(op, []byte(payload), frameOpt{}) }

// frag builds a masked non-FIN frame.
func frag(op Opcode, payload string) []byte {
	return clientFrame(op, []byte(payload), frameOpt{noFin: true})
}

func cat(frames ...[]byte) []byte { return slices.Concat(frames...) }

func u64(v uint64) *uint64 { return &v }

type event struct {
	op      Opcode
	payload string
}

func (e event) String() string {
	p := e.payload
	if len(p) > 40 {
		p = fmt.Sprintf("%.40s...(%d bytes)", p, len(p))
	}
	return fmt.Sprintf("{%#x %q}", byte(e.op), p)
}

// feedChunks feeds a private copy of data (Feed may modify it) cut at the
// given offsets and records every emitted event.
func feedChunks(maxMsg int, data []byte, cuts []int) ([]event, error) {
	return feedReader(&Reader{MaxMessage: maxMsg}, data, cuts)
}

// feedReader is feedChunks with a Reader configured by the caller.
func feedReader(r *Reader, data []byte, cuts []int) ([]event, error) {
	buf := slices.Clone(data)
	var evs []event
	emit := func(op Opcode, p []byte) bool {
		evs = append(evs, event{op, string(p)})
		return true
	}
	prev := 0
	for _, c := range append(slices.Clone(cuts), len(buf)) {
		if err := r.Feed(buf[prev:c], emit); err != nil {
			return evs, err
		}
		prev = c
	}
	return evs, nil
}

// maskServerFrame turns an unmasked server frame into the equivalent masked
// client frame, so AppendFrame output can be checked with the Reader.
func maskServerFrame(f []byte, key [4]byte) ([]byte, error) {
	if len(f) < 2 || f[1]&0x80 != 0 {
		return nil, fmt.Errorf("bad server frame header % x", f[:min(len(f), 2)])
	}
	hl := 2
	switch f[1] & 0x7F {
	case 126:
		hl = 4
	case 127:
		hl = 10
	}
	out := slices.Clone(f[:hl])
	out[1] |= 0x80
	out = append(out, key[:]...)
	for i, c := range f[hl:] {
		out = append(out, c^key[i&3])
	}
	return out, nil
}
