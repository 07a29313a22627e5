package sse

import (
	"bytes"
	"strings"
	"testing"
)

// FuzzRequests: any POST body splits without panicking into frames that
// are non-empty, trimmed, and within the body.
func FuzzRequests(f *testing.F) {
	for _, s := range []string{"", `{"type":"ping"}`, "{\"a\":1}\n{\"b\":2}", "{\r\n}\n", "\n\n{}\n", "{\"a\":\"\\n\"}\n{"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		total := 0
		Requests(body, func(fr []byte) bool {
			if len(fr) == 0 || len(bytes.TrimSpace(fr)) != len(fr) {
				t.Fatalf("frame %q is empty or untrimmed", fr)
			}
			if !bytes.Contains(body, fr) {
				t.Fatalf("frame %q is not part of the body", fr)
			}
			total += len(fr)
			return true
		})
		if total > len(body) {
			t.Fatalf("frames hold %d bytes of a %d-byte body", total, len(body))
		}
	})
}

// FuzzConvert: a text frame of any payload becomes one event whose data
// lines, joined as an EventSource joins them, give back the payload with
// its line breaks normalised, whatever the buffer boundaries.
func FuzzConvert(f *testing.F) {
	f.Add([]byte(`{"type":"message","room":"kept","from":"a","data":1,"id":"m","offset":3,"ts":4}`), 5)
	f.Add([]byte("{\"a\":\r\n1}"), 1)
	f.Add([]byte(strings.Repeat("x", 200)), 126)
	f.Fuzz(func(t *testing.T, payload []byte, step int) {
		if step <= 0 || step > 1<<16 {
			step = 1
		}
		wire := frame(opText, payload)
		cv := Converter{Resume: "kept"}
		var out []byte
		for i := 0; i < len(wire); i += step {
			out, _ = cv.Append(out, [][]byte{wire[i:min(i+step, len(wire))]})
		}
		s := string(out)
		if !strings.HasSuffix(s, "\n\n") {
			t.Fatalf("event %q does not end with a blank line", s)
		}
		var data []string
		for _, line := range strings.Split(strings.TrimSuffix(s, "\n\n"), "\n") {
			switch {
			case strings.HasPrefix(line, "data: "):
				data = append(data, strings.TrimPrefix(line, "data: "))
			case strings.HasPrefix(line, "id: "):
			default:
				t.Fatalf("line %q in %q", line, s)
			}
		}
		norm := strings.NewReplacer("\r\n", "\n", "\r", "\n").Replace(string(payload))
		if got := strings.Join(data, "\n"); got != norm {
			t.Fatalf("data %q, want %q", got, norm)
		}
	})
}
