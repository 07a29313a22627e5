package wsframe

import (
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzReader feeds arbitrary bytes in arbitrary chunkings. Besides the
// safety invariants it checks that chunking never changes the outcome: the
// events and error from a chunked feed must equal those of a single feed.
//
// Inputs: data is the byte stream; cuts gives chunk lengths (each byte is
// one chunk length, 0 meaning an empty Feed call); maxMsg is MaxMessage.
func FuzzReader(f *testing.F) {
	f.Add(mf(OpText, "hello"), []byte{1, 2, 3}, uint16(0))
	f.Add(cat(frag(OpText, "Hel"), mf(OpPing, "p"), mf(OpContinuation, "lo")), []byte{5, 0, 9}, uint16(5))
	f.Add(mf(OpBinary, strings.Repeat("b", 300)), []byte{200}, uint16(300))
	f.Add(mf(OpBinary, strings.Repeat("b", 301)), []byte{1}, uint16(300))
	f.Add(clientFrame(OpText, []byte("hi"), frameOpt{lenForm: 127}), []byte{11, 1}, uint16(0))
	f.Add(clientFrame(OpText, []byte("hi"), frameOpt{noMask: true}), []byte{}, uint16(0))
	f.Add(mf(OpText, "\xff"), []byte{2}, uint16(0))
	f.Add(mf(OpClose, "\x03\xe8bye"), []byte{1, 1, 1, 1}, uint16(0))

	f.Fuzz(func(t *testing.T, data, cuts []byte, maxMsg uint16) {
		max := int(maxMsg)
		var offs []int
		pos := 0
		for _, c := range cuts {
			pos = min(pos+int(c), len(data))
			offs = append(offs, pos)
		}

		wantEvs, wantErr := feedChunks(max, data, nil)
		checkInvariants(t, max, wantEvs)
		evs, err := feedChunks(max, data, offs)
		checkInvariants(t, max, evs)

		if !slices.Equal(evs, wantEvs) {
			t.Fatalf("chunking changed events:\n chunked %v\n whole   %v", evs, wantEvs)
		}
		if (err == nil) != (wantErr == nil) || (err != nil && *err.(*CloseError) != *wantErr.(*CloseError)) {
			t.Fatalf("chunking changed error: chunked %v, whole %v", err, wantErr)
		}
		if err != nil {
			if _, ok := err.(*CloseError); !ok {
				t.Fatalf("error %T is not *CloseError", err)
			}
		}
	})
}

func checkInvariants(t *testing.T, max int, evs []event) {
	t.Helper()
	for _, e := range evs {
		if max > 0 && len(e.payload) > max {
			t.Fatalf("emitted %d bytes with MaxMessage %d", len(e.payload), max)
		}
		switch e.op {
		case OpText:
			if !utf8.ValidString(e.payload) {
				t.Fatalf("emitted invalid UTF-8 text %q", e.payload)
			}
		case OpBinary:
		case OpPing, OpPong, OpClose:
			if len(e.payload) > maxControlPayload {
				t.Fatalf("control payload of %d bytes", len(e.payload))
			}
		default:
			t.Fatalf("emitted opcode %#x", e.op)
		}
	}
}

// FuzzInflate feeds arbitrary bytes, as the payload of a compressed client
// message, through a Reader that negotiated permessage-deflate. Whatever
// the input it must fail with a *CloseError or emit no more than
// MaxMessage bytes of valid text, and a message the standard library
// inflates within the limit must come out as the same bytes.
func FuzzInflate(f *testing.F) {
	f.Add(stdDeflate(f, []byte(`{"type":"publish","room":"a","data":"hello"}`)), uint16(1000), false)
	f.Add(stdDeflate(f, jsonish(3000)), uint16(3000), true)
	f.Add(stdDeflate(f, make([]byte, 60000)), uint16(100), true)
	f.Add([]byte{0x01, 0x00, 0x00, 0xff, 0xff}, uint16(10), false)
	f.Add([]byte{0xff, 0xff}, uint16(10), false)

	f.Fuzz(func(t *testing.T, payload []byte, maxMsg uint16, fragment bool) {
		max := int(maxMsg)
		var data []byte
		if fragment && len(payload) > 1 {
			half := len(payload) / 2
			data = cat(clientFrame(OpBinary, payload[:half], frameOpt{rsv: 0x40, noFin: true}),
				clientFrame(OpContinuation, payload[half:], frameOpt{}))
		} else {
			data = clientFrame(OpBinary, payload, frameOpt{rsv: 0x40})
		}
		evs, err := feedReader(&Reader{Deflate: true, MaxMessage: max}, data, nil)
		checkInvariants(t, max, evs)
		if err != nil {
			if _, ok := err.(*CloseError); !ok {
				t.Fatalf("error %T is not *CloseError", err)
			}
			return
		}
		if len(evs) != 1 {
			t.Fatalf("%d events for one message", len(evs))
		}
		want, stdErr := stdInflate(payload)
		if stdErr == nil && (max == 0 || len(want) <= max) && evs[0].payload != string(want) {
			t.Fatalf("inflated to %d bytes, compress/flate to %d", len(evs[0].payload), len(want))
		}
	})
}

// FuzzNegotiateDeflate checks that any header either declines or answers
// with a window size in range.
func FuzzNegotiateDeflate(f *testing.F) {
	f.Add("permessage-deflate; client_max_window_bits")
	f.Add(`permessage-deflate; server_max_window_bits="10", permessage-deflate`)
	f.Add("permessage-deflate; server_max_window_bits=8; client_no_context_takeover")
	f.Fuzz(func(t *testing.T, header string) {
		d, ok := NegotiateDeflate([]string{header})
		if !ok {
			if d != (Deflate{}) {
				t.Fatalf("declined with %+v", d)
			}
			return
		}
		if d.WindowBits < MinWindowBits || d.WindowBits > MaxWindowBits || d.Response == "" {
			t.Fatalf("accepted with %+v", d)
		}
	})
}
