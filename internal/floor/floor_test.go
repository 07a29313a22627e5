package floor

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// TestTextFrameLengths checks the three length encodings of RFC 6455 5.2
// at their boundaries: a wrong header would make every client drop the
// connection, and the floor would measure nothing.
func TestTextFrameLengths(t *testing.T) {
	for _, n := range []int{0, 125, 126, 65535, 65536} {
		p := bytes.Repeat([]byte("x"), n)
		f := textFrame(p)
		if f[0] != 0x81 {
			t.Fatalf("len %d: first byte %#x, want 0x81 (final text frame)", n, f[0])
		}
		var got, hdr int
		switch {
		case n < 126:
			got, hdr = int(f[1]), 2
		case n <= 0xffff:
			if f[1] != 126 {
				t.Fatalf("len %d: length byte %d, want 126", n, f[1])
			}
			got, hdr = int(binary.BigEndian.Uint16(f[2:])), 4
		default:
			if f[1] != 127 {
				t.Fatalf("len %d: length byte %d, want 127", n, f[1])
			}
			got, hdr = int(binary.BigEndian.Uint64(f[2:])), 10
		}
		if got != n || len(f) != hdr+n || !bytes.Equal(f[hdr:], p) {
			t.Errorf("len %d: header says %d, frame is %d bytes", n, got, len(f))
		}
	}
}
