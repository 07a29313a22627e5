package protocol

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzDecode: Decode never panics, refuses only with bad_request, and every
// accepted Request satisfies its type's invariants. The keys are checked
// against a case-sensitive reading of the same frame, so any difference
// between what Decode saw and what the client wrote shows up.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{"type":"ping"}`,
		`{"type":"pong","id":"x"}`,
		`{"type":"join","id":"j","room":"lobby","since":3,"epoch":"e","echo":false}`,
		`{"type":"leave","room":"a/b"}`,
		`{"type":"presence","room":"user:alice"}`,
		`{"type":"publish","room":"r","data":{"n":12345678901234567890}}`,
		`{"type":"send","to":"bob","data":null}`,
		`{"type":"publish","room":"bad room","data":1,"id":"e"}`,
		`{"Type":"ping","ROOM":"x"}`,
		`[1,2]`,
		` {"type":"join","room":"a","since":-1}`,
		"{\"type\":\"send\",\"to\":\"\xff\",\"data\":\"\xfe\"}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		req, derr := Decode(frame)
		if derr != nil {
			if derr.Code != CodeBadRequest {
				t.Fatalf("code %q", derr.Code)
			}
			if len(derr.Ref) > MaxIDLen {
				t.Fatalf("ref of %d bytes", len(derr.Ref))
			}
			if !json.Valid(Error(derr.Ref, derr.Code, derr.Message)) {
				t.Fatalf("error frame invalid for %+v", derr)
			}
			return
		}
		var fields map[string]json.RawMessage
		if err := json.Unmarshal(frame, &fields); err != nil {
			t.Fatalf("accepted a frame that is not a JSON object: %v", err)
		}
		var typ, id string
		if json.Unmarshal(fields["type"], &typ) != nil || typ != req.Type {
			t.Fatalf("type %q, frame says %s", req.Type, fields["type"])
		}
		if raw, ok := fields["id"]; ok {
			if json.Unmarshal(raw, &id) != nil || id != req.ID {
				t.Fatalf("id %q, frame says %s", req.ID, raw)
			}
		} else if req.ID != "" {
			t.Fatalf("id %q from a frame without id", req.ID)
		}
		if len(req.ID) > MaxIDLen {
			t.Fatalf("id of %d bytes", len(req.ID))
		}
		switch req.Type {
		case TypePing, TypePong:
			if req.Room != "" || req.To != "" || req.Data != nil {
				t.Fatalf("%s with fields: %+v", req.Type, req)
			}
		case TypeJoin, TypeLeave, TypePresence, TypePublish:
			if msg := ValidateRoom(req.Room); msg != "" {
				t.Fatalf("accepted room %q: %s", req.Room, msg)
			}
			var room string
			if json.Unmarshal(fields["room"], &room) != nil || room != req.Room {
				t.Fatalf("room %q, frame says %s", req.Room, fields["room"])
			}
		case TypeSend:
			var to string
			if req.To == "" || json.Unmarshal(fields["to"], &to) != nil || to != req.To {
				t.Fatalf("to %q, frame says %s", req.To, fields["to"])
			}
		default:
			t.Fatalf("accepted unknown type %q", req.Type)
		}
		switch req.Type {
		case TypePublish, TypeSend:
			if req.Data == nil || !json.Valid(req.Data) || string(req.Data) != string(fields["data"]) {
				t.Fatalf("data %q, frame says %q", req.Data, fields["data"])
			}
			m := Message{Room: req.Room, To: req.To, From: req.ID, Data: req.Data, ID: req.ID}
			if out := AppendMessage(nil, &m); !json.Valid(out) {
				t.Fatalf("message frame invalid: %q", out)
			}
		default:
			if req.Data != nil {
				t.Fatalf("%s carries data", req.Type)
			}
		}
		if req.Type != TypeJoin && (req.Since != nil || req.Echo != nil || req.Epoch != "") {
			t.Fatalf("%s carries join fields: %+v", req.Type, req)
		}
	})
}

// FuzzAppendString: the output is always valid UTF-8 JSON, decodes back to
// the input for valid UTF-8, and to the input with invalid bytes replaced by
// U+FFFD otherwise.
func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "plain", `"\`, "\x00\x1f\x7f", "\u2028\u2029", "😀", "\xff\xfe", "a\xc3", "\xed\xa0\x80"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := AppendString([]byte("{"), s)[1:]
		if !json.Valid(out) || !utf8.Valid(out) {
			t.Fatalf("AppendString(%q) = %q: not valid UTF-8 JSON", s, out)
		}
		var back string
		if err := json.Unmarshal(out, &back); err != nil {
			t.Fatalf("AppendString(%q) = %q: %v", s, out, err)
		}
		if utf8.ValidString(s) && !strings.ContainsRune(s, utf8.RuneError) && back != s {
			t.Fatalf("AppendString(%q) decodes to %q", s, back)
		}
		if want := strings.ToValidUTF8(s, "\ufffd"); back != want && !sameModuloReplacement(s, back) {
			t.Fatalf("AppendString(%q) decodes to %q, want %q", s, back, want)
		}
		if arr := AppendStrings(nil, []string{s, s}); !json.Valid(arr) {
			t.Fatalf("AppendStrings invalid: %q", arr)
		}
	})
}

// sameModuloReplacement reports whether back is s with each invalid byte
// replaced by its own U+FFFD (strings.ToValidUTF8 merges runs of them).
func sameModuloReplacement(s, back string) bool {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			b.WriteRune(utf8.RuneError)
		} else {
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String() == back
}
