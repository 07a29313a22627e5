package wsframe

import (
	"bytes"
	stdflate "compress/flate"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
)

// Compressed test messages are made and checked with the standard
// library's compress/flate, an implementation independent of the one the
// package uses.

// stdDeflate compresses msg as an RFC 7692 sender does: a sync flush, with
// its trailing 00 00 ff ff removed.
func stdDeflate(t testing.TB, msg []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	w, err := stdflate.NewWriter(&b, stdflate.BestCompression)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(msg); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	out, ok := bytes.CutSuffix(b.Bytes(), syncMarker)
	if !ok {
		t.Fatal("sync flush did not end with 00 00 ff ff")
	}
	return out
}

// stdInflate decodes an RFC 7692 compressed payload.
func stdInflate(p []byte) ([]byte, error) {
	r := stdflate.NewReader(io.MultiReader(bytes.NewReader(p), bytes.NewReader(deflateTail)))
	return io.ReadAll(r)
}

// cf builds a masked, compressed (RSV1) FIN client frame.
func cf(t testing.TB, op Opcode, msg string) []byte {
	return clientFrame(op, stdDeflate(t, []byte(msg)), frameOpt{rsv: 0x40})
}

// jsonish is a repetitive text such as chat or dashboard JSON.
func jsonish(n int) []byte {
	var b []byte
	for i := 0; len(b) < n; i++ {
		b = fmt.Appendf(b, `{"type":"message","room":"ops","from":"user-%d","data":{"cpu":%d,"mem":%d,"ok":true}},`, i%7, i*37%100, i*53%1000)
	}
	return b[:n]
}

func TestAppendDeflatedRoundTrip(t *testing.T) {
	for _, bits := range []int{8, 9, 12, 15} {
		for _, n := range []int{200, 1024, 70000} {
			t.Run(fmt.Sprintf("bits%d/%d", bits, n), func(t *testing.T) {
				msg := jsonish(n)
				f, ok := AppendDeflated([]byte("prefix"), OpText, msg, bits)
				if !ok {
					t.Fatalf("a %d-byte JSON text was not compressed", n)
				}
				f, ok = bytes.CutPrefix(f, []byte("prefix"))
				if !ok {
					t.Fatal("dst was not appended to")
				}
				if f[0] != 0x80|0x40|byte(OpText) {
					t.Fatalf("first byte %#x, want FIN|RSV1|text", f[0])
				}
				hl := 2
				switch f[1] {
				case 126:
					hl = 4
				case 127:
					hl = 10
				}
				if len(f)-hl >= n {
					t.Fatalf("compressed %d bytes to %d", n, len(f)-hl)
				}
				got, err := stdInflate(f[hl:])
				if err != nil {
					t.Fatalf("compress/flate cannot decode the payload: %v", err)
				}
				if !bytes.Equal(got, msg) {
					t.Fatal("payload decodes to other bytes")
				}
				// The Reader, given it as a client frame, gets the text back.
				masked, err := maskServerFrame(f, testKey)
				if err != nil {
					t.Fatal(err)
				}
				evs, err := feedReader(&Reader{Deflate: true}, masked, nil)
				if err != nil || len(evs) != 1 || evs[0].payload != string(msg) {
					t.Fatalf("Reader: %v, %d events", err, len(evs))
				}
			})
		}
	}
}

func TestAppendDeflatedIncompressible(t *testing.T) {
	msg := make([]byte, 512)
	x := uint32(1)
	for i := range msg {
		x = x*1664525 + 1013904223
		msg[i] = byte(x >> 24)
	}
	dst, ok := AppendDeflated([]byte("x"), OpBinary, msg, 15)
	if ok || string(dst) != "x" {
		t.Fatalf("random bytes: ok=%v, dst %d bytes; want nothing appended", ok, len(dst))
	}
}

func TestReaderInflates(t *testing.T) {
	long := string(jsonish(5000))
	// A fragmented compressed message: RSV1 on the first frame only.
	c := stdDeflate(t, []byte(long))
	third := len(c) / 3
	fragmented := cat(
		clientFrame(OpText, c[:third], frameOpt{rsv: 0x40, noFin: true}),
		mf(OpPing, "p"),
		clientFrame(OpContinuation, c[third:2*third], frameOpt{noFin: true}),
		clientFrame(OpContinuation, c[2*third:], frameOpt{}),
	)
	stream := cat(cf(t, OpText, "hello"), mf(OpText, "plain"), fragmented, cf(t, OpBinary, "\x00\xff"), cf(t, OpText, ""))
	want := []event{{OpText, "hello"}, {OpText, "plain"}, {OpPing, "p"}, {OpText, long}, {OpBinary, "\x00\xff"}, {OpText, ""}}

	whole, err := feedReader(&Reader{Deflate: true, MaxMessage: 5000}, stream, nil)
	if err != nil || !slices.Equal(whole, want) {
		t.Fatalf("whole: %v %v", whole, err)
	}
	var cuts []int
	for i := 1; i < len(stream); i++ {
		cuts = append(cuts, i)
	}
	bytewise, err := feedReader(&Reader{Deflate: true, MaxMessage: 5000}, stream, cuts)
	if err != nil || !slices.Equal(bytewise, want) {
		t.Fatalf("byte by byte: %v %v", bytewise, err)
	}
}

func TestReaderDeflateViolations(t *testing.T) {
	zeros := stdDeflate(t, make([]byte, 10<<20)) // 10 MiB inflating from ~10 KiB
	cases := []struct {
		name    string
		deflate bool
		max     int
		data    []byte
		code    int
	}{
		{"rsv1 not negotiated", false, 0, cf(t, OpText, "hi"), 1002},
		{"rsv2", true, 0, clientFrame(OpText, []byte("hi"), frameOpt{rsv: 0x20}), 1002},
		{"rsv3", true, 0, clientFrame(OpText, []byte("hi"), frameOpt{rsv: 0x10}), 1002},
		{"rsv1 on ping", true, 0, clientFrame(OpPing, []byte("p"), frameOpt{rsv: 0x40}), 1002},
		{"rsv1 on close", true, 0, clientFrame(OpClose, []byte{3, 232}, frameOpt{rsv: 0x40}), 1002},
		{"rsv1 on continuation", true, 0, cat(frag(OpText, "a"), clientFrame(OpContinuation, []byte("b"), frameOpt{rsv: 0x40})), 1002},
		{"bomb", true, 64 << 10, clientFrame(OpBinary, zeros, frameOpt{rsv: 0x40}), 1009},
		{"one past the limit", true, 100, cf(t, OpText, strings.Repeat("a", 101)), 1009},
		{"corrupt", true, 0, clientFrame(OpText, []byte{0xff, 0xff, 0xff, 0xff}, frameOpt{rsv: 0x40}), 1007},
		{"truncated", true, 0, clientFrame(OpText, stdDeflate(t, jsonish(2000))[:50], frameOpt{rsv: 0x40}), 1007},
		{"inflated text not utf-8", true, 0, cf(t, OpText, "ok \xff"), 1007},
		{"compressed too long", true, 100, clientFrame(OpText, make([]byte, maxCompressed(100)+1), frameOpt{rsv: 0x40}), 1009},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			evs, err := feedReader(&Reader{Deflate: tc.deflate, MaxMessage: tc.max}, tc.data, nil)
			var ce *CloseError
			if !errors.As(err, &ce) || ce.Code != tc.code {
				t.Fatalf("got %v (events %v), want close %d", err, evs, tc.code)
			}
			for _, e := range evs {
				if e.op == OpText || e.op == OpBinary {
					t.Fatalf("emitted %v before failing", e)
				}
			}
		})
	}
	// Exactly at the limit is fine.
	evs, err := feedReader(&Reader{Deflate: true, MaxMessage: 100}, cf(t, OpText, strings.Repeat("a", 100)), nil)
	if err != nil || len(evs) != 1 || len(evs[0].payload) != 100 {
		t.Fatalf("message at the limit: %v %v", evs, err)
	}
}

// TestInflateBoundedOutput checks that a bomb is stopped after limit+1
// bytes of output, not after inflating all of it.
func TestInflateBoundedOutput(t *testing.T) {
	src := stdDeflate(t, make([]byte, 50<<20))
	out, err := inflate(nil, src, 1000)
	var ce *CloseError
	if !errors.As(err, &ce) || ce.Code != 1009 {
		t.Fatalf("err %v", err)
	}
	if cap(out) > 64<<10 {
		t.Fatalf("grew the output to %d bytes for a limit of 1000", cap(out))
	}
}

func TestReaderIdleHoldsNothing(t *testing.T) {
	r := &Reader{Deflate: true}
	if _, err := feedReader(r, cf(t, OpText, string(jsonish(3000))), nil); err != nil {
		t.Fatal(err)
	}
	if r.msg != nil || r.msgDeflated || r.msgOp != 0 {
		t.Fatalf("reader kept state after a compressed message: msg %d bytes, deflated %v", len(r.msg), r.msgDeflated)
	}
}

func TestAppendDeflatedAround(t *testing.T) {
	mid := jsonish(100000) // more than one stored block's worth, compressed
	seg := DeflateSegment(mid)
	for _, c := range []struct{ head, tail []byte }{
		{[]byte(`{"type":"ack","ref":"r1","users":`), []byte(`}`)},
		{nil, nil},
		{bytes.Repeat([]byte("h"), 70000), []byte(`}`)}, // head over one stored block
	} {
		f := AppendDeflatedAround(nil, OpText, c.head, seg, c.tail)
		if f[0] != 0x80|0x40|byte(OpText) {
			t.Fatalf("first byte %#x", f[0])
		}
		hl := 2
		switch f[1] {
		case 126:
			hl = 4
		case 127:
			hl = 10
		}
		got, err := stdInflate(f[hl:])
		if err != nil {
			t.Fatalf("compress/flate cannot decode the message: %v", err)
		}
		want := slices.Concat(c.head, mid, c.tail)
		if !bytes.Equal(got, want) {
			t.Fatalf("decoded %d bytes, want %d", len(got), len(want))
		}
		masked, _ := maskServerFrame(f, testKey)
		evs, err := feedReader(&Reader{Deflate: true}, masked, nil)
		if err != nil || len(evs) != 1 || evs[0].payload != string(want) {
			t.Fatalf("Reader: %v", err)
		}
	}
}
