package wsframe

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
)

type readerCase struct {
	name    string
	max     int
	in      []byte
	want    []event
	errCode int // 0: no error expected
	reason  string
}

func readerCases() []readerCase {
	big200 := strings.Repeat("x", 200)
	big70k := strings.Repeat("y", 70000)
	pe := "protocol_error"
	cases := []readerCase{
		{name: "text", in: mf(OpText, "hello"), want: []event{{OpText, "hello"}}},
		{name: "empty text", in: mf(OpText, ""), want: []event{{OpText, ""}}},
		{name: "binary not utf8", in: mf(OpBinary, "\xff\xfe"), want: []event{{OpBinary, "\xff\xfe"}}},
		{name: "multiple frames in one feed",
			in:   cat(mf(OpText, "a"), mf(OpBinary, "bc"), mf(OpPing, "p"), mf(OpPong, ""), mf(OpClose, "\x03\xe8bye")),
			want: []event{{OpText, "a"}, {OpBinary, "bc"}, {OpPing, "p"}, {OpPong, ""}, {OpClose, "\x03\xe8bye"}}},
		{name: "fragmented text with interleaved ping",
			in: cat(frag(OpText, "Hel"), mf(OpPing, "p1"), frag(OpContinuation, "lo "),
				mf(OpPong, "q"), mf(OpContinuation, "wörld")),
			want: []event{{OpPing, "p1"}, {OpPong, "q"}, {OpText, "Hello wörld"}}},
		{name: "rune split across fragments",
			in:   cat(frag(OpText, "\xc3"), mf(OpContinuation, "\xb6")),
			want: []event{{OpText, "ö"}}},
		{name: "fragmented binary with empty fragments",
			in:   cat(frag(OpBinary, ""), frag(OpContinuation, "ab"), mf(OpContinuation, "")),
			want: []event{{OpBinary, "ab"}}},
		{name: "126 length", in: mf(OpBinary, big200), want: []event{{OpBinary, big200}}},
		{name: "127 length", in: mf(OpText, big70k), want: []event{{OpText, big70k}}},
		{name: "non-minimal 126", in: clientFrame(OpText, []byte("hi"), frameOpt{lenForm: 126}),
			want: []event{{OpText, "hi"}}},
		{name: "non-minimal 127", in: clientFrame(OpText, []byte("hi"), frameOpt{lenForm: 127}),
			want: []event{{OpText, "hi"}}},
		{name: "max exactly at limit", max: 10, in: mf(OpText, "0123456789"),
			want: []event{{OpText, "0123456789"}}},
		{name: "fragmented exactly at limit", max: 10,
			in:   cat(frag(OpText, "01234"), mf(OpContinuation, "56789")),
			want: []event{{OpText, "0123456789"}}},
		{name: "ping at limit", max: 4, in: mf(OpPing, "abcd"), want: []event{{OpPing, "abcd"}}},
		{name: "unaligned key offsets", in: cat(frag(OpBinary, "abc"), mf(OpContinuation, strings.Repeat("z", 37))),
			want: []event{{OpBinary, "abc" + strings.Repeat("z", 37)}}},

		{name: "unmasked", in: clientFrame(OpText, []byte("hi"), frameOpt{noMask: true}), errCode: 1002, reason: pe},
		{name: "unmasked control", in: clientFrame(OpPing, nil, frameOpt{noMask: true}), errCode: 1002, reason: pe},
		{name: "rsv1", in: clientFrame(OpText, []byte("hi"), frameOpt{rsv: 0x40}), errCode: 1002, reason: pe},
		{name: "rsv2", in: clientFrame(OpText, []byte("hi"), frameOpt{rsv: 0x20}), errCode: 1002, reason: pe},
		{name: "rsv3", in: clientFrame(OpPing, nil, frameOpt{rsv: 0x10}), errCode: 1002, reason: pe},
		{name: "ping no fin", in: frag(OpPing, "x"), errCode: 1002, reason: pe},
		{name: "close no fin mid message", in: cat(frag(OpText, "a"), frag(OpClose, "")), errCode: 1002, reason: pe},
		{name: "ping 126 bytes", in: mf(OpPing, strings.Repeat("p", 126)), errCode: 1002, reason: pe},
		{name: "close 126 bytes", in: mf(OpClose, strings.Repeat("p", 126)), errCode: 1002, reason: pe},
		{name: "ping 125 bytes", in: mf(OpPing, strings.Repeat("p", 125)),
			want: []event{{OpPing, strings.Repeat("p", 125)}}},
		{name: "continuation without start", in: mf(OpContinuation, "x"), errCode: 1002, reason: pe},
		{name: "continuation after finished message",
			in:   cat(mf(OpText, "a"), mf(OpContinuation, "x")),
			want: []event{{OpText, "a"}}, errCode: 1002, reason: pe},
		{name: "text during fragmented", in: cat(frag(OpText, "a"), mf(OpText, "b")), errCode: 1002, reason: pe},
		{name: "binary during fragmented", in: cat(frag(OpText, "a"), mf(OpBinary, "b")), errCode: 1002, reason: pe},
		{name: "64-bit msb", in: clientFrame(OpBinary, nil, frameOpt{declared: u64(1 << 63)})[:10],
			errCode: 1002, reason: pe},
		{name: "64-bit msb unlimited all ones", in: clientFrame(OpBinary, nil, frameOpt{declared: u64(^uint64(0))})[:10],
			errCode: 1002, reason: pe},
		{name: "too big", max: 10, in: mf(OpText, "0123456789a"), errCode: 1009, reason: "too_big"},
		{name: "too big from 16-bit header only", max: 1000,
			in: clientFrame(OpBinary, nil, frameOpt{declared: u64(5000)})[:4], errCode: 1009, reason: "too_big"},
		{name: "too big from 64-bit header only", max: 1 << 20,
			in: clientFrame(OpBinary, nil, frameOpt{declared: u64(1 << 40)})[:10], errCode: 1009, reason: "too_big"},
		{name: "too big unlimited beyond int", in: clientFrame(OpBinary, nil, frameOpt{declared: u64(1<<63 - 1)})[:10],
			errCode: func() int {
				if ^uint(0)>>63 == 1 {
					return 0 // fits in a 64-bit int: accepted, waits for payload
				}
				return 1009
			}(), reason: "too_big"},
		{name: "too big fragmented", max: 10,
			in:      cat(frag(OpText, "012345"), clientFrame(OpContinuation, nil, frameOpt{declared: u64(5)})[:2]),
			errCode: 1009, reason: "too_big"},
		{name: "control over max", max: 4, in: mf(OpPing, "abcde"), errCode: 1009, reason: "too_big"},
		{name: "invalid utf8", in: mf(OpText, "ab\xffcd"), errCode: 1007, reason: "invalid_utf8"},
		{name: "invalid utf8 truncated rune", in: mf(OpText, "\xe2\x82"), errCode: 1007, reason: "invalid_utf8"},
		{name: "invalid utf8 after reassembly",
			in:      cat(frag(OpText, "ok"), mf(OpPing, ""), mf(OpContinuation, "\xc3")),
			want:    []event{{OpPing, ""}},
			errCode: 1007, reason: "invalid_utf8"},
		{name: "events before error are kept",
			in:   cat(mf(OpText, "a"), clientFrame(OpText, []byte("b"), frameOpt{noMask: true})),
			want: []event{{OpText, "a"}}, errCode: 1002, reason: pe},
	}
	for _, op := range []Opcode{3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF} {
		cases = append(cases, readerCase{name: "reserved opcode " + string("0123456789ABCDEF"[op]),
			in: mf(op, "x"), errCode: 1002, reason: pe})
	}
	return cases
}

func checkResult(t *testing.T, how string, c readerCase, evs []event, err error) {
	t.Helper()
	if !slices.Equal(evs, c.want) {
		t.Errorf("%s: events = %v, want %v", how, evs, c.want)
	}
	if c.errCode == 0 {
		if err != nil {
			t.Errorf("%s: unexpected error %v", how, err)
		}
		return
	}
	var ce *CloseError
	if !errors.As(err, &ce) {
		t.Fatalf("%s: error = %v, want *CloseError %d", how, err, c.errCode)
	}
	if ce.Code != c.errCode || ce.Reason != c.reason {
		t.Errorf("%s: error = {%d %q}, want {%d %q}", how, ce.Code, ce.Reason, c.errCode, c.reason)
	}
}

func TestReaderRules(t *testing.T) {
	for _, c := range readerCases() {
		t.Run(c.name, func(t *testing.T) {
			evs, err := feedChunks(c.max, c.in, nil)
			checkResult(t, "whole", c, evs, err)

			// Every single split point, then one byte at a time.
			for i := 0; i <= len(c.in) && len(c.in) < 2000; i++ {
				evs, err := feedChunks(c.max, c.in, []int{i})
				checkResult(t, "split at "+strconv.Itoa(i), c, evs, err)
				if t.Failed() {
					t.Fatalf("failed when split at byte %d", i)
				}
			}
			var cuts []int
			for i := 1; i < len(c.in); i++ {
				cuts = append(cuts, i)
			}
			evs, err = feedChunks(c.max, c.in, cuts)
			checkResult(t, "byte at a time", c, evs, err)
		})
	}
}

func TestReaderErrorIsSticky(t *testing.T) {
	var r Reader
	in := clientFrame(OpText, []byte("x"), frameOpt{noMask: true})
	err := r.Feed(in, func(Opcode, []byte) bool { return true })
	if err == nil {
		t.Fatal("want error")
	}
	called := false
	err2 := r.Feed(mf(OpText, "ok"), func(Opcode, []byte) bool { called = true; return true })
	if err2 != err || called {
		t.Fatalf("second Feed: err=%v called=%v, want the first error and no emit", err2, called)
	}
	r.Reset()
	if err := r.Feed(mf(OpText, "ok"), func(Opcode, []byte) bool { return true }); err != nil {
		t.Fatalf("after Reset: %v", err)
	}
}

func TestTooBigDoesNotBuffer(t *testing.T) {
	r := Reader{MaxMessage: 100}
	hdr := clientFrame(OpBinary, nil, frameOpt{declared: u64(101)})
	if err := r.Feed(hdr[:1], nil); err != nil {
		t.Fatal(err)
	}
	err := r.Feed(hdr[1:4], nil) // only the header; no payload is ever sent
	var ce *CloseError
	if !errors.As(err, &ce) || ce.Code != 1009 || ce.Reason != "too_big" {
		t.Fatalf("err = %v, want 1009 too_big", err)
	}
	if r.msg != nil || r.ctrl != nil {
		t.Fatal("buffers retained after too_big")
	}
}

func TestIdleReaderHoldsNothing(t *testing.T) {
	var r Reader
	emit := func(Opcode, []byte) bool { return true }
	in := cat(frag(OpText, strings.Repeat("a", 300)), mf(OpPing, "ping"), mf(OpContinuation, "b"))
	for i := 0; i < len(in); i += 7 {
		if err := r.Feed(in[i:min(i+7, len(in))], emit); err != nil {
			t.Fatal(err)
		}
	}
	if r.msg != nil || r.ctrl != nil || r.nhdr != 0 || r.inFrame || r.msgOp != 0 {
		t.Fatalf("idle reader holds state: msg cap %d ctrl cap %d nhdr %d", cap(r.msg), cap(r.ctrl), r.nhdr)
	}
	// A split header is kept in the fixed array, not on the heap.
	if err := r.Feed(mf(OpText, "x")[:3], emit); err != nil {
		t.Fatal(err)
	}
	if r.msg != nil || r.ctrl != nil || r.nhdr != 3 {
		t.Fatalf("partial header: msg %v ctrl %v nhdr %d", r.msg, r.ctrl, r.nhdr)
	}
}

func TestEmitFalseStops(t *testing.T) {
	var r Reader
	var got []Opcode
	in := cat(mf(OpText, "a"), mf(OpClose, ""), mf(OpText, "b"))
	err := r.Feed(in, func(op Opcode, _ []byte) bool {
		got = append(got, op)
		return op != OpClose
	})
	if err != nil || !slices.Equal(got, []Opcode{OpText, OpClose}) {
		t.Fatalf("err=%v got=%v", err, got)
	}
}

func TestFeedWholeFrameZeroAlloc(t *testing.T) {
	frame := mf(OpText, "hello, world: a small chat message")
	buf := make([]byte, len(frame))
	var r Reader
	n := 0
	emit := func(op Opcode, p []byte) bool { n += len(p); return true }
	allocs := testing.AllocsPerRun(1000, func() {
		copy(buf, frame)
		if err := r.Feed(buf, emit); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("Feed of a whole frame allocated %v times per run", allocs)
	}
}

func TestFeedModifiesDataInPlace(t *testing.T) {
	frame := mf(OpBinary, "payload")
	var r Reader
	var got []byte
	if err := r.Feed(frame, func(_ Opcode, p []byte) bool { got = p; return true }); err != nil {
		t.Fatal(err)
	}
	if string(got) != "payload" || &got[0] != &frame[6] {
		t.Fatal("whole frame payload was not unmasked in place in data")
	}
}

func TestMaskBytes(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for n := 0; n < 80; n++ {
		for pos := 0; pos < 4; pos++ {
			b := make([]byte, n)
			for i := range b {
				b[i] = byte(rng.Uint32())
			}
			want := slices.Clone(b)
			for i := range want {
				want[i] ^= testKey[(pos+i)&3]
			}
			next := maskBytes(testKey, pos, b)
			if !bytes.Equal(b, want) || next != (pos+n)&3 {
				t.Fatalf("n=%d pos=%d: got % x next %d, want % x next %d", n, pos, b, next, want, (pos+n)&3)
			}
		}
	}
}

func TestCloseErrorString(t *testing.T) {
	e := &CloseError{Code: 1009, Reason: "too_big"}
	if got := e.Error(); got != "wsframe: close 1009 too_big" {
		t.Fatalf("Error() = %q", got)
	}
}

func BenchmarkFeed(b *testing.B) {
	frame := mf(OpText, "hello, world: a small chat message")
	buf := make([]byte, len(frame))
	var r Reader
	emit := func(Opcode, []byte) bool { return true }
	b.ReportAllocs()
	b.SetBytes(int64(len(frame)))
	for b.Loop() {
		copy(buf, frame) // Feed unmasks in place
		if err := r.Feed(buf, emit); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkFeedSplit(b *testing.B) {
	frame := mf(OpText, "hello, world: a small chat message")
	buf := make([]byte, len(frame))
	var r Reader
	emit := func(Opcode, []byte) bool { return true }
	b.ReportAllocs()
	b.SetBytes(int64(len(frame)))
	for b.Loop() {
		copy(buf, frame)
		if err := r.Feed(buf[:10], emit); err != nil {
			b.Fatal(err)
		}
		if err := r.Feed(buf[10:], emit); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkFeed16K(b *testing.B) {
	frame := mf(OpBinary, strings.Repeat("z", 16<<10))
	buf := make([]byte, len(frame))
	var r Reader
	emit := func(Opcode, []byte) bool { return true }
	b.ReportAllocs()
	b.SetBytes(int64(len(frame)))
	for b.Loop() {
		copy(buf, frame)
		if err := r.Feed(buf, emit); err != nil {
			b.Fatal(err)
		}
	}
}
