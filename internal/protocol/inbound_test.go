package protocol

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func u64(v uint64) *uint64 { return &v }
func boolp(v bool) *bool   { return &v }

// sameRequest compares two requests field by field, Data byte-exact.
func sameRequest(t *testing.T, got, want Request) {
	t.Helper()
	if got.Type != want.Type || got.ID != want.ID || got.Room != want.Room ||
		got.To != want.To || got.Epoch != want.Epoch {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
	if (got.Data == nil) != (want.Data == nil) || !bytes.Equal(got.Data, want.Data) {
		t.Errorf("data: got %q (nil=%v), want %q (nil=%v)", got.Data, got.Data == nil, want.Data, want.Data == nil)
	}
	if (got.Since == nil) != (want.Since == nil) || (got.Since != nil && *got.Since != *want.Since) {
		t.Errorf("since: got %v, want %v", fmtPtr(got.Since), fmtPtr(want.Since))
	}
	if (got.Echo == nil) != (want.Echo == nil) || (got.Echo != nil && *got.Echo != *want.Echo) {
		t.Errorf("echo: got %v, want %v", fmtPtr(got.Echo), fmtPtr(want.Echo))
	}
}

func fmtPtr[T any](p *T) any {
	if p == nil {
		return "<nil>"
	}
	return *p
}

func TestDecodeValid(t *testing.T) {
	room128 := strings.Repeat("r", MaxRoomLen)
	id128 := strings.Repeat("i", MaxIDLen)
	tests := []struct {
		name  string
		frame string
		want  Request
	}{
		{"ping", `{"type":"ping"}`, Request{Type: TypePing}},
		{"ping with id", `{"type":"ping","id":"p1"}`, Request{Type: TypePing, ID: "p1"}},
		{"ping ignores bad room", `{"type":"ping","room":"not valid!"}`, Request{Type: TypePing}},
		{"pong", `{"type":"pong"}`, Request{Type: TypePong}},
		{"whitespace around", " \t\r\n{ \"type\" : \"pong\" }\n ", Request{Type: TypePong}},
		{"join", `{"type":"join","room":"lobby"}`, Request{Type: TypeJoin, Room: "lobby"}},
		{"join all room chars", `{"type":"join","room":"AZaz09_.:@/-"}`, Request{Type: TypeJoin, Room: "AZaz09_.:@/-"}},
		{"join escaped room", `{"type":"join","room":"\u0061b"}`, Request{Type: TypeJoin, Room: "ab"}},
		{"join room 1 byte", `{"type":"join","room":"x"}`, Request{Type: TypeJoin, Room: "x"}},
		{"join room 128 bytes", `{"type":"join","room":"` + room128 + `"}`, Request{Type: TypeJoin, Room: room128}},
		{"join full", `{"type":"join","id":"j1","room":"user:alice","since":42,"epoch":"e-1","echo":false}`,
			Request{Type: TypeJoin, ID: "j1", Room: "user:alice", Since: u64(42), Epoch: "e-1", Echo: boolp(false)}},
		{"join since 0", `{"type":"join","room":"a","since":0}`, Request{Type: TypeJoin, Room: "a", Since: u64(0)}},
		{"join since max uint64", `{"type":"join","room":"a","since":18446744073709551615}`,
			Request{Type: TypeJoin, Room: "a", Since: u64(18446744073709551615)}},
		{"join echo true", `{"type":"join","room":"a","echo":true}`, Request{Type: TypeJoin, Room: "a", Echo: boolp(true)}},
		{"join nulls are absent", `{"type":"join","room":"a","since":null,"epoch":null,"echo":null}`, Request{Type: TypeJoin, Room: "a"}},
		{"join empty epoch", `{"type":"join","room":"a","epoch":""}`, Request{Type: TypeJoin, Room: "a"}},
		{"leave", `{"type":"leave","room":"lobby","id":"l"}`, Request{Type: TypeLeave, Room: "lobby", ID: "l"}},
		{"leave ignores since", `{"type":"leave","room":"a","since":-1,"echo":"x"}`, Request{Type: TypeLeave, Room: "a"}},
		{"presence", `{"type":"presence","room":"a.b"}`, Request{Type: TypePresence, Room: "a.b"}},
		{"publish", `{"type":"publish","room":"a","data":{"x":1}}`, Request{Type: TypePublish, Room: "a", Data: json.RawMessage(`{"x":1}`)}},
		{"publish string data", `{"type":"publish","room":"a","data":"hi"}`, Request{Type: TypePublish, Room: "a", Data: json.RawMessage(`"hi"`)}},
		{"publish data null is present", `{"type":"publish","room":"a","data":null}`, Request{Type: TypePublish, Room: "a", Data: json.RawMessage(`null`)}},
		{"publish data false", `{"type":"publish","room":"a","data":false}`, Request{Type: TypePublish, Room: "a", Data: json.RawMessage(`false`)}},
		{"publish data empty array", `{"type":"publish","room":"a","data":[]}`, Request{Type: TypePublish, Room: "a", Data: json.RawMessage(`[]`)}},
		{"publish ignores join fields", `{"type":"publish","room":"a","data":0,"since":"x","echo":1,"epoch":2}`,
			Request{Type: TypePublish, Room: "a", Data: json.RawMessage(`0`)}},
		{"send", `{"type":"send","to":"bob","data":[1,2]}`, Request{Type: TypeSend, To: "bob", Data: json.RawMessage(`[1,2]`)}},
		{"send data null", `{"type":"send","to":"bob","data":null,"id":"s"}`, Request{Type: TypeSend, To: "bob", ID: "s", Data: json.RawMessage(`null`)}},
		{"send ignores room", `{"type":"send","to":"bob","room":"bad room","data":1}`, Request{Type: TypeSend, To: "bob", Data: json.RawMessage(`1`)}},
		{"id 128 bytes", `{"type":"ping","id":"` + id128 + `"}`, Request{Type: TypePing, ID: id128}},
		{"empty id", `{"type":"ping","id":""}`, Request{Type: TypePing}},
		{"unknown fields ignored", `{"type":"publish","v":2,"room":"a","extra":{"deep":[1,{"x":null}]},"data":1,"z":"q"}`,
			Request{Type: TypePublish, Room: "a", Data: json.RawMessage(`1`)}},
		{"unknown field differing in case only", `{"type":"publish","room":"a","data":1,"Data":2,"ROOM":"b","Type":"ping"}`,
			Request{Type: TypePublish, Room: "a", Data: json.RawMessage(`1`)}},
		{"unicode case fold is not a match", `{"type":"join","room":"a","\u017Fince":-1,"ECHO":"x","Epoch":1}`,
			Request{Type: TypeJoin, Room: "a"}},
		{"duplicate key last wins", `{"type":"ping","type":"join","room":"a"}`, Request{Type: TypeJoin, Room: "a"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Decode([]byte(tc.frame))
			if err != nil {
				t.Fatalf("Decode(%s): %v", tc.frame, err)
			}
			sameRequest(t, got, tc.want)
		})
	}
}

func TestDecodeBadRequest(t *testing.T) {
	long := strings.Repeat("r", MaxRoomLen+1)
	tests := []struct {
		name    string
		frame   string
		ref     string
		message string // substring of the message
	}{
		{"empty", ``, "", "JSON object"},
		{"whitespace only", " \n\t", "", "JSON object"},
		{"not JSON", `hello`, "", "JSON object"},
		{"truncated object", `{"type":"ping"`, "", "invalid JSON"},
		{"object then garbage", `{"type":"ping"}x`, "", "invalid JSON"},
		{"two objects", `{"type":"ping"}{"type":"ping"}`, "", "invalid JSON"},
		{"single quotes", `{'type':'ping'}`, "", "invalid JSON"},
		{"raw control char in string", "{\"type\":\"ping\",\"x\":\"a\x01\"}", "", "invalid JSON"},
		{"JSON string", `"ping"`, "", "JSON object"},
		{"JSON number", `42`, "", "JSON object"},
		{"JSON null", `null`, "", "JSON object"},
		{"JSON true", `true`, "", "JSON object"},
		{"array", `[{"type":"ping"}]`, "", "JSON object"},
		{"empty object", `{}`, "", "type"},
		{"missing type", `{"id":"a1","room":"x"}`, "a1", "type"},
		{"type null", `{"type":null,"id":"a1"}`, "a1", "type"},
		{"type number", `{"type":1,"id":"a1"}`, "a1", "type"},
		{"type object", `{"type":{"v":"ping"}}`, "", "type"},
		{"type array", `{"type":["ping"]}`, "", "type"},
		{"type upper case", `{"type":"PING","id":"a1"}`, "a1", "unknown type"},
		{"unknown type", `{"type":"subscribe","id":"a1"}`, "a1", "unknown type"},
		{"empty type", `{"type":""}`, "", "unknown type"},
		{"type key upper case", `{"TYPE":"ping"}`, "", "type"},
		{"type key title case", `{"Type":"ping","id":"a1"}`, "a1", "type"},
		{"join missing room", `{"type":"join","id":"a1"}`, "a1", "room"},
		{"leave missing room", `{"type":"leave","id":"a1"}`, "a1", "room"},
		{"presence missing room", `{"type":"presence","id":"a1"}`, "a1", "room"},
		{"publish missing room", `{"type":"publish","id":"a1","data":1}`, "a1", "room"},
		{"room key upper case", `{"type":"join","id":"a1","ROOM":"lobby"}`, "a1", "room"},
		{"room null", `{"type":"join","room":null,"id":"a1"}`, "a1", "room"},
		{"room number", `{"type":"join","room":7,"id":"a1"}`, "a1", "room"},
		{"room array", `{"type":"leave","room":["a"]}`, "", "room"},
		{"room object", `{"type":"presence","room":{}}`, "", "room"},
		{"room bool", `{"type":"publish","room":true,"data":1}`, "", "room"},
		{"room empty", `{"type":"join","room":"","id":"a1"}`, "a1", "1 to 128 bytes"},
		{"room 129 bytes", `{"type":"join","room":"` + long + `","id":"a1"}`, "a1", "1 to 128 bytes"},
		{"room space", `{"type":"join","room":"a b","id":"a1"}`, "a1", "may only contain"},
		{"room star", `{"type":"join","room":"a*"}`, "", "may only contain"},
		{"room plus", `{"type":"leave","room":"a+b"}`, "", "may only contain"},
		{"room non-ASCII", `{"type":"presence","room":"caf\u00e9"}`, "", "may only contain"},
		{"room NUL", `{"type":"join","room":"a\u0000"}`, "", "may only contain"},
		{"room newline", `{"type":"publish","room":"a\n","data":1}`, "", "may only contain"},
		{"send without to", `{"type":"send","id":"a1","data":1}`, "a1", "to"},
		{"send to empty", `{"type":"send","id":"a1","to":"","data":1}`, "a1", "to"},
		{"send to null", `{"type":"send","to":null,"data":1}`, "", "to"},
		{"send to number", `{"type":"send","id":"a1","to":5,"data":1}`, "a1", "to"},
		{"send without data", `{"type":"send","id":"a1","to":"bob"}`, "a1", "data"},
		{"publish without data", `{"type":"publish","id":"a1","room":"a"}`, "a1", "data"},
		{"publish data key upper case", `{"type":"publish","id":"a1","room":"a","DATA":1}`, "a1", "data"},
		{"id number", `{"type":"ping","id":1}`, "", "id must be a string"},
		{"id null", `{"type":"ping","id":null}`, "", "id must be a string"},
		{"id object", `{"type":"ping","id":{"a":"b"}}`, "", "id must be a string"},
		{"id bool", `{"type":"ping","id":true}`, "", "id must be a string"},
		{"id too long", `{"type":"ping","id":"` + strings.Repeat("i", MaxIDLen+1) + `"}`, "", "id longer"},
		{"id too long when unescaped", `{"type":"ping","id":"` + strings.Repeat(`\u00e9`, MaxIDLen/2+1) + `"}`, "", "id longer"},
		{"since negative", `{"type":"join","room":"a","since":-1,"id":"a1"}`, "a1", "since"},
		{"since fraction", `{"type":"join","room":"a","since":1.5,"id":"a1"}`, "a1", "since"},
		{"since exponent", `{"type":"join","room":"a","since":1e3,"id":"a1"}`, "a1", "since"},
		{"since string", `{"type":"join","room":"a","since":"5","id":"a1"}`, "a1", "since"},
		{"since bool", `{"type":"join","room":"a","since":true}`, "", "since"},
		{"since overflow", `{"type":"join","room":"a","since":18446744073709551616}`, "", "since"},
		{"echo string", `{"type":"join","room":"a","echo":"false","id":"a1"}`, "a1", "echo"},
		{"echo number", `{"type":"join","room":"a","echo":0,"id":"a1"}`, "a1", "echo"},
		{"epoch number", `{"type":"join","room":"a","epoch":3,"id":"a1"}`, "a1", "epoch"},
		{"epoch bool", `{"type":"join","room":"a","epoch":true}`, "", "epoch"},
		{"epoch object", `{"type":"join","room":"a","epoch":{}}`, "", "epoch"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, err := Decode([]byte(tc.frame))
			if err == nil {
				t.Fatalf("Decode(%q) = %+v, want error", tc.frame, req)
			}
			if err.Code != CodeBadRequest {
				t.Errorf("code %q, want %q", err.Code, CodeBadRequest)
			}
			if err.Ref != tc.ref {
				t.Errorf("ref %q, want %q", err.Ref, tc.ref)
			}
			if !strings.Contains(err.Message, tc.message) {
				t.Errorf("message %q does not contain %q", err.Message, tc.message)
			}
			if err.Error() != err.Code+": "+err.Message {
				t.Errorf("Error() = %q", err.Error())
			}
			// An error frame built from it must be valid JSON.
			if out := Error(err.Ref, err.Code, err.Message); !json.Valid(out) {
				t.Errorf("error frame not valid JSON: %s", out)
			}
		})
	}
}

// The ref is the id as decoded, escapes resolved.
func TestDecodeRefUnescaped(t *testing.T) {
	_, err := Decode([]byte(`{"type":"nope","id":"a\"b\u00e9\n"}`))
	if err == nil || err.Ref != "a\"b\u00e9\n" {
		t.Fatalf("err = %+v, want ref %q", err, "a\"b\u00e9\n")
	}
}

func TestDecodeDataByteExact(t *testing.T) {
	datas := []string{
		`12345678901234567890`,
		`-123456789012345678901234567890.000000000000000000001e-400`,
		`{"big":12345678901234567890,"nested":{"a":[1,2,{"b":[true,false,null]}],"c":"\u00e9\ud83d\ude00"}}`,
		`{ "spaced" : [ 1 , 2 ] ,"k":"v" }`,
		`"\u2028\"\\\/"`,
		`1.0`,
		`-0`,
		`{"dup":1,"dup":2}`,
		`{"x":"` + strings.Repeat("y", 70000) + `"}`,
	}
	for _, typ := range []string{`"type":"publish","room":"r"`, `"type":"send","to":"u"`} {
		for _, d := range datas {
			frame := []byte(`{` + typ + `,"data":` + d + `,"id":"x"}`)
			req, err := Decode(frame)
			if err != nil {
				t.Fatalf("Decode(%.80s): %v", frame, err)
			}
			if string(req.Data) != d {
				t.Errorf("data = %.80s, want %.80s", req.Data, d)
			}
			// Data must not alias the frame: connections reuse read buffers.
			for i := range frame {
				frame[i] = 'X'
			}
			if string(req.Data) != d {
				t.Errorf("data changed after the frame buffer was overwritten: %.80s", req.Data)
			}
		}
	}
}

func TestDecodeLeadingWhitespaceData(t *testing.T) {
	req, err := Decode([]byte("{\"type\":\"publish\",\"room\":\"r\",\"data\":\n\t  [1, 2]  \n}"))
	if err != nil {
		t.Fatal(err)
	}
	if string(req.Data) != "[1, 2]" {
		t.Fatalf("data = %q, want %q", req.Data, "[1, 2]")
	}
}

func TestValidateRoom(t *testing.T) {
	for c := 0; c < 256; c++ {
		want := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("_.:@/-", byte(c)) >= 0
		msg := ValidateRoom(string([]byte{'a', byte(c), 'z'}))
		if (msg == "") != want {
			t.Errorf("byte %#02x: ValidateRoom = %q, want valid=%v", c, msg, want)
		}
	}
	if ValidateRoom("") == "" {
		t.Error("empty room accepted")
	}
	if ValidateRoom(strings.Repeat("a", MaxRoomLen)) != "" {
		t.Error("room of MaxRoomLen bytes refused")
	}
	if ValidateRoom(strings.Repeat("a", MaxRoomLen+1)) == "" {
		t.Error("room of MaxRoomLen+1 bytes accepted")
	}
}
