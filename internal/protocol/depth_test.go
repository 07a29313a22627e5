package protocol

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// refDepth computes nesting depth from encoding/json's token stream (not
// from a decoded value, which would drop duplicate keys and their depth).
func refDepth(b []byte) int {
	dec := json.NewDecoder(bytes.NewReader(b))
	depth, deepest := 0, 0
	for {
		tok, err := dec.Token()
		if err != nil {
			return deepest
		}
		switch tok {
		case json.Delim('['), json.Delim('{'):
			depth++
			deepest = max(deepest, depth)
		case json.Delim(']'), json.Delim('}'):
			depth--
		}
	}
}

func TestDepth(t *testing.T) {
	for in, want := range map[string]int{
		`1`: 0, `"[[["`: 0, `[]`: 1, `{"a":[1,{"b":[]}]}`: 4, `["\"]["]`: 1, `"\\"`: 0,
		strings.Repeat("[", 50) + strings.Repeat("]", 50): 50,
	} {
		if got := Depth([]byte(in)); got != want {
			t.Errorf("Depth(%s) = %d, want %d", in, got, want)
		}
	}
}

// FuzzDepth checks the byte scanner against a full decode for every valid
// JSON value the fuzzer finds.
func FuzzDepth(f *testing.F) {
	for _, s := range []string{`{"a":[1,2,{"b":"]]"}]}`, `"\\\""`, `[[[]],[]]`, `{"x\"y":[{}]}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got := Depth(b) // must never panic, valid or not
		if !json.Valid(b) {
			return
		}
		if want := refDepth(b); got != want {
			t.Fatalf("Depth(%q) = %d, want %d", b, got, want)
		}
	})
}
