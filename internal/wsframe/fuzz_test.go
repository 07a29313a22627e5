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
