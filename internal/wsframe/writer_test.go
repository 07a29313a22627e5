package wsframe

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestAppendFrameRoundTrip(t *testing.T) {
	sizes := []int{0, 1, 7, 8, 125, 126, 127, 0xFFFF, 0x10000, 70000}
	for _, op := range []Opcode{OpText, OpBinary, OpPing, OpPong, OpClose} {
		for _, n := range sizes {
			if op.isControl() && n > 125 {
				continue
			}
			payload := bytes.Repeat([]byte("ab"), n/2+1)[:n]
			prefix := []byte("prefix")
			out := AppendFrame(prefix, op, payload)
			if !bytes.Equal(out[:6], prefix) {
				t.Fatal("AppendFrame clobbered dst")
			}
			f := out[6:]
			if len(f) != FrameSize(n) {
				t.Fatalf("op %x n=%d: frame len %d, FrameSize %d", op, n, len(f), FrameSize(n))
			}
			if f[0] != 0x80|byte(op) {
				t.Fatalf("op %x n=%d: first byte %#x, want FIN|op", op, n, f[0])
			}
			for _, key := range [][4]byte{testKey, {1, 2, 3, 4}} {
				masked, err := maskServerFrame(f, key)
				if err != nil {
					t.Fatal(err)
				}
				evs, err := feedChunks(0, masked, []int{len(masked) / 3})
				if err != nil || len(evs) != 1 || evs[0].op != op || evs[0].payload != string(payload) {
					t.Fatalf("op %x n=%d: round trip got %v, %v", op, n, evs, err)
				}
			}
		}
	}
}

func TestFrameSize(t *testing.T) {
	for _, c := range []struct{ n, want int }{
		{0, 2}, {125, 127}, {126, 130}, {0xFFFF, 0xFFFF + 4}, {0x10000, 0x10000 + 10},
	} {
		if got := FrameSize(c.n); got != c.want {
			t.Errorf("FrameSize(%d) = %d, want %d", c.n, got, c.want)
		}
	}
}

func TestAppendFrameControlTooLongPanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("want panic")
		}
	}()
	AppendFrame(nil, OpPing, make([]byte, 126))
}

func TestAppendCloseRoundTrip(t *testing.T) {
	long := strings.Repeat("é", 100) // 200 bytes; 123 is mid-rune
	for _, c := range []struct {
		code   int
		reason string
		want   string
	}{
		{1000, "", ""},
		{1001, "going away", "going away"},
		{4000, "app", "app"},
		{1011, long, long[:122]},
		{1008, strings.Repeat("a", 200), strings.Repeat("a", 123)},
	} {
		f := AppendClose(nil, c.code, c.reason)
		if len(f) > 2+125 || len(f) != FrameSize(2+len(c.want)) {
			t.Fatalf("code %d: bad frame length %d", c.code, len(f))
		}
		masked, _ := maskServerFrame(f, testKey)
		evs, err := feedChunks(0, masked, nil)
		if err != nil || len(evs) != 1 || evs[0].op != OpClose {
			t.Fatalf("code %d: got %v, %v", c.code, evs, err)
		}
		code, reason, err := ParseClosePayload([]byte(evs[0].payload))
		if err != nil || code != c.code || reason != c.want || !utf8.ValidString(reason) {
			t.Fatalf("code %d: parsed %d %q %v, want %q", c.code, code, reason, err, c.want)
		}
	}
}

func TestParseClosePayload(t *testing.T) {
	for _, c := range []struct {
		p       string
		code    int
		reason  string
		errCode int
	}{
		{"", 1005, "", 0},
		{"\x03", 0, "", 1002},
		{"\x03\xe8", 1000, "", 0},
		{"\x03\xe8bye", 1000, "bye", 0},
		{"\x03\xf3", 1011, "", 0},
		{"\x03\xf6", 1014, "", 0},
		{"\x0b\xb8", 3000, "", 0},
		{"\x13\x87", 4999, "", 0},
		{"\x00\x00", 0, "", 1002},
		{"\x03\xe7", 0, "", 1002},     // 999
		{"\x03\xec", 0, "", 1002},     // 1004
		{"\x03\xed", 0, "", 1002},     // 1005
		{"\x03\xee", 0, "", 1002},     // 1006
		{"\x03\xf7", 0, "", 1002},     // 1015
		{"\x07\xd0", 0, "", 1002},     // 2000
		{"\x0b\xb7", 0, "", 1002},     // 2999
		{"\x13\x88", 0, "", 1002},     // 5000
		{"\xff\xff", 0, "", 1002},     // 65535
		{"\x03\xe8\xff", 0, "", 1007}, // bad utf8 reason
		{"\x03\xe8\xce", 0, "", 1007}, // truncated rune
	} {
		code, reason, err := ParseClosePayload([]byte(c.p))
		if c.errCode != 0 {
			var ce *CloseError
			if !errors.As(err, &ce) || ce.Code != c.errCode {
				t.Errorf("%q: err = %v, want close %d", c.p, err, c.errCode)
			}
			continue
		}
		if err != nil || code != c.code || reason != c.reason {
			t.Errorf("%q: got %d %q %v, want %d %q", c.p, code, reason, err, c.code, c.reason)
		}
	}
}

func BenchmarkAppendFrame(b *testing.B) {
	payload := []byte("hello, world: a small chat message")
	dst := make([]byte, 0, FrameSize(len(payload)))
	b.ReportAllocs()
	b.SetBytes(int64(FrameSize(len(payload))))
	for b.Loop() {
		dst = AppendFrame(dst[:0], OpText, payload)
	}
}
