package protocol

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// decodeFrame checks that frame is valid UTF-8 JSON and decodes it with
// numbers kept as json.Number.
func decodeFrame(t *testing.T, frame []byte) map[string]any {
	t.Helper()
	if !json.Valid(frame) {
		t.Fatalf("not valid JSON: %s", frame)
	}
	if !utf8.Valid(frame) {
		t.Fatalf("not valid UTF-8: %q", frame)
	}
	dec := json.NewDecoder(bytes.NewReader(frame))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("decode %s: %v", frame, err)
	}
	return m
}

func wantFields(t *testing.T, frame []byte, want map[string]any) {
	t.Helper()
	got := decodeFrame(t, frame)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("frame %s\n got  %#v\n want %#v", frame, got, want)
	}
}

var trickyStrings = []string{
	"",
	"plain",
	`quote " and backslash \ and slash /`,
	"\x00\x01\x02\x07\x08\t\n\x0b\x0c\r\x0e\x1b\x1f\x7f",
	"line\u2028para\u2029end",
	"\u2027\u202a\u202f",
	"emoji 😀👩‍👩‍👧 flags 🇫🇷",
	"é ü ñ 中文 \ufeff bom",
	"\ufffd already replacement",
	"<script>&amp;</script>",
	strings.Repeat("long ", 1000),
}

func TestConstantFrames(t *testing.T) {
	wantFields(t, PingFrame, map[string]any{"type": "ping"})
	wantFields(t, PongFrame, map[string]any{"type": "pong"})
}

func TestAppendStringRoundTrip(t *testing.T) {
	for _, s := range trickyStrings {
		out := AppendString(nil, s)
		if !json.Valid(out) || !utf8.Valid(out) {
			t.Fatalf("AppendString(%q) = %q: not valid UTF-8 JSON", s, out)
		}
		var back string
		if err := json.Unmarshal(out, &back); err != nil || back != s {
			t.Errorf("AppendString(%q) = %s decodes to %q (%v)", s, out, back, err)
		}
		// Same result as encoding/json apart from HTML escaping, which
		// AppendString does not do.
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		_ = enc.Encode(s)
		want := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
		if !bytes.Equal(normalizeEscapes(out), normalizeEscapes(want)) {
			t.Errorf("AppendString(%q)\n got  %s\n json %s", s, out, want)
		}
	}
}

// normalizeEscapes maps the escape spellings that legitimately differ
// between AppendString and encoding/json (\b, \f) to \u00XX.
func normalizeEscapes(b []byte) []byte {
	b = bytes.ReplaceAll(b, []byte(`\b`), []byte(`\u0008`))
	return bytes.ReplaceAll(b, []byte(`\f`), []byte(`\u000c`))
}

func TestAppendStringExactEscapes(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", `""`},
		{`a"b`, `"a\"b"`},
		{`a\b`, `"a\\b"`},
		{"\n\r\t", `"\n\r\t"`},
		{"\x00\x1f", `"\u0000\u001f"`},
		{"\x7f", "\"\x7f\""},
		{"\u2028\u2029", `"\u2028\u2029"`},
		{"é", `"é"`},
		{"\xff", `"\ufffd"`},
		{"a\xc3", `"a\ufffd"`},                             // truncated 2-byte sequence
		{"\xc3\x28", `"\ufffd("`},                          // bad continuation byte
		{"\xed\xa0\x80", `"\ufffd\ufffd\ufffd"`},           // UTF-8 encoded surrogate
		{"\xc0\xaf", `"\ufffd\ufffd"`},                     // overlong '/'
		{"\xf4\x90\x80\x80", `"\ufffd\ufffd\ufffd\ufffd"`}, // above U+10FFFF
		{"ok\x80ok", `"ok\ufffdok"`},
	}
	for _, tc := range tests {
		got := AppendString(nil, tc.in)
		if string(got) != tc.want {
			t.Errorf("AppendString(%q) = %s, want %s", tc.in, got, tc.want)
		}
		if !json.Valid(got) || !utf8.Valid(got) {
			t.Errorf("AppendString(%q) = %q: not valid UTF-8 JSON", tc.in, got)
		}
	}
}

func TestAppendStringInvalidUTF8(t *testing.T) {
	// Every single byte, alone and between valid text.
	for c := 0; c < 256; c++ {
		s := "a" + string([]byte{byte(c)}) + "é"
		out := AppendString(nil, s)
		if !json.Valid(out) || !utf8.Valid(out) {
			t.Fatalf("byte %#x: %q not valid UTF-8 JSON", c, out)
		}
		var back string
		if err := json.Unmarshal(out, &back); err != nil {
			t.Fatal(err)
		}
		if want := strings.ToValidUTF8(s, "\ufffd"); back != want {
			t.Errorf("byte %#x: decoded %q, want %q", c, back, want)
		}
	}
}

func TestAppendStringAppends(t *testing.T) {
	dst := []byte("prefix:")
	out := AppendString(dst, "x")
	if string(out) != `prefix:"x"` {
		t.Fatalf("got %s", out)
	}
}

func TestAppendStrings(t *testing.T) {
	for _, ss := range [][]string{nil, {}, {"a"}, {"a", "b\"", "\xff"}} {
		out := AppendStrings(nil, ss)
		var back []string
		if !json.Valid(out) || json.Unmarshal(out, &back) != nil {
			t.Fatalf("AppendStrings(%q) = %s", ss, out)
		}
		if back == nil || len(back) != len(ss) {
			t.Errorf("AppendStrings(%q) = %s", ss, out)
		}
	}
}

func TestAppendMessage(t *testing.T) {
	big := `{"n":12345678901234567890,"s":"\u2028","a":[1.5e300,null]}`
	tests := []struct {
		name string
		m    Message
		want map[string]any
	}{
		{"room", Message{Room: "lobby", From: "alice", Data: []byte(`{"x":1}`), ID: "m1", TS: 1700000000123},
			map[string]any{"type": "message", "room": "lobby", "from": "alice", "data": map[string]any{"x": json.Number("1")}, "id": "m1", "ts": json.Number("1700000000123")}},
		{"to", Message{To: "bob", From: "server", Data: []byte(`"hi"`), ID: "m2", TS: 0},
			map[string]any{"type": "message", "to": "bob", "from": "server", "data": "hi", "id": "m2", "ts": json.Number("0")}},
		{"offset", Message{Room: "r", From: "a", Data: []byte(`null`), ID: "m3", Offset: 18446744073709551615, HasOffset: true, TS: -1},
			map[string]any{"type": "message", "room": "r", "from": "a", "data": nil, "id": "m3", "offset": json.Number("18446744073709551615"), "ts": json.Number("-1")}},
		{"offset zero", Message{Room: "r", From: "a", Data: []byte(`0`), ID: "m4", HasOffset: true},
			map[string]any{"type": "message", "room": "r", "from": "a", "data": json.Number("0"), "id": "m4", "offset": json.Number("0"), "ts": json.Number("0")}},
		{"escaping", Message{Room: "r", From: "we\"ird\n\xff", Data: []byte(big), ID: "i\\d"},
			map[string]any{"type": "message", "room": "r", "from": "we\"ird\n\ufffd", "id": "i\\d", "ts": json.Number("0"),
				"data": map[string]any{"n": json.Number("12345678901234567890"), "s": "\u2028", "a": []any{json.Number("1.5e300"), nil}}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := AppendMessage(nil, &tc.m)
			wantFields(t, out, tc.want)
			// Data is copied verbatim.
			if !bytes.Contains(out, append([]byte(`"data":`), tc.m.Data...)) {
				t.Errorf("data not verbatim in %s", out)
			}
		})
	}
	// Appends to dst without disturbing it.
	out := AppendMessage([]byte("X"), &tests[0].m)
	if out[0] != 'X' || !json.Valid(out[1:]) {
		t.Errorf("AppendMessage with prefix: %s", out)
	}
}

func TestWelcome(t *testing.T) {
	tests := []struct {
		ping, pong  time.Duration
		wantPing    string
		wantPong    string
		maxMsgBytes int
	}{
		{25 * time.Second, 10 * time.Second, "25", "10", 65536},
		{time.Hour, 0, "3600", "0", 0},
		{1500 * time.Millisecond, 250 * time.Millisecond, "1.5", "0.25", 1},
		{100 * time.Millisecond, time.Nanosecond, "0.1", "0.000000001", 1 << 30},
		{1100 * time.Millisecond, 59*time.Second + 999*time.Millisecond, "1.1", "59.999", 10},
	}
	for _, tc := range tests {
		out := Welcome("c-1", "u\"1", tc.ping, tc.pong, tc.maxMsgBytes)
		wantFields(t, out, map[string]any{
			"type": "welcome", "conn": "c-1", "user": "u\"1",
			"ping_interval": json.Number(tc.wantPing), "pong_timeout": json.Number(tc.wantPong),
			"max_message_bytes": json.Number(strconv.Itoa(tc.maxMsgBytes)),
		})
		// Whole seconds must be written as integers, not 25.0 or 2.5e1.
		if !bytes.Contains(out, []byte(`"ping_interval":`+tc.wantPing+`,`)) {
			t.Errorf("ping_interval spelled differently: %s", out)
		}
	}
}

func TestJoinLeave(t *testing.T) {
	wantFields(t, Join("lobby", "alice"), map[string]any{"type": "join", "room": "lobby", "user": "alice"})
	wantFields(t, Leave("lobby", "alice"), map[string]any{"type": "leave", "room": "lobby", "user": "alice"})
	for _, s := range trickyStrings {
		wantFields(t, Join(s, s), map[string]any{"type": "join", "room": s, "user": s})
		wantFields(t, Leave(s, s), map[string]any{"type": "leave", "room": s, "user": s})
	}
}

func TestPresence(t *testing.T) {
	wantFields(t, Presence("r", nil), map[string]any{"type": "presence", "room": "r", "users": []any{}})
	wantFields(t, Presence("r", []string{}), map[string]any{"type": "presence", "room": "r", "users": []any{}})
	if out := Presence("r", nil); !bytes.Contains(out, []byte(`"users":[]`)) {
		t.Errorf("empty users not written as []: %s", out)
	}
	wantFields(t, Presence("r", []string{"a", "b\"", "c\u2028"}),
		map[string]any{"type": "presence", "room": "r", "users": []any{"a", "b\"", "c\u2028"}})
}

func TestAppendAck(t *testing.T) {
	msg1 := AppendMessage(nil, &Message{Room: "r", From: "a", Data: []byte(`1`), ID: "m1", Offset: 5, HasOffset: true, TS: 9})
	msg2 := AppendMessage(nil, &Message{Room: "r", From: "b", Data: []byte(`{"k":[]}`), ID: "m2", Offset: 6, HasOffset: true, TS: 10})
	msgs := []any{decodeFrame(t, msg1), decodeFrame(t, msg2)}
	tests := []struct {
		name string
		a    Ack
		want map[string]any
	}{
		{"ref only", Ack{Ref: "r1"}, map[string]any{"type": "ack", "ref": "r1"}},
		{"empty ref", Ack{}, map[string]any{"type": "ack", "ref": ""}},
		{"users", Ack{Ref: "r1", Users: []string{"a", "b"}},
			map[string]any{"type": "ack", "ref": "r1", "users": []any{"a", "b"}}},
		{"empty users", Ack{Ref: "r1", Users: []string{}},
			map[string]any{"type": "ack", "ref": "r1", "users": []any{}}},
		{"offset", Ack{Ref: "r1", Users: []string{"a"}, Offset: 42, Epoch: "ep", HasOffset: true},
			map[string]any{"type": "ack", "ref": "r1", "users": []any{"a"}, "offset": json.Number("42"), "epoch": "ep"}},
		{"offset zero empty epoch", Ack{Ref: "r1", HasOffset: true},
			map[string]any{"type": "ack", "ref": "r1", "offset": json.Number("0"), "epoch": ""}},
		{"recovered no messages", Ack{Ref: "r1", Recovered: boolp(true)},
			map[string]any{"type": "ack", "ref": "r1", "recovered": true, "messages": []any{}}},
		{"not recovered", Ack{Ref: "r1", Users: []string{}, Recovered: boolp(false), Offset: 7, Epoch: "e", HasOffset: true},
			map[string]any{"type": "ack", "ref": "r1", "users": []any{}, "offset": json.Number("7"), "epoch": "e", "recovered": false, "messages": []any{}}},
		{"recovered one", Ack{Ref: "r1", Recovered: boolp(true), Messages: [][]byte{msg1}},
			map[string]any{"type": "ack", "ref": "r1", "recovered": true, "messages": msgs[:1]}},
		{"recovered two", Ack{Ref: "r\"1", Users: []string{"a"}, Recovered: boolp(true), Messages: [][]byte{msg1, msg2}, Offset: 6, Epoch: "e", HasOffset: true},
			map[string]any{"type": "ack", "ref": "r\"1", "users": []any{"a"}, "offset": json.Number("6"), "epoch": "e", "recovered": true, "messages": msgs}},
		{"messages without recovered omitted", Ack{Ref: "r1", Messages: [][]byte{msg1}},
			map[string]any{"type": "ack", "ref": "r1"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			wantFields(t, AppendAck(nil, &tc.a), tc.want)
		})
	}
}

func TestError(t *testing.T) {
	wantFields(t, Error("", CodeNotJoined, "join first"),
		map[string]any{"type": "error", "code": "not_joined", "message": "join first"})
	if out := Error("", CodeInternal, "x"); bytes.Contains(out, []byte(`"ref"`)) {
		t.Errorf("empty ref written: %s", out)
	}
	wantFields(t, Error("q1", CodeRateLimited, "slow down"),
		map[string]any{"type": "error", "ref": "q1", "code": "rate_limited", "message": "slow down"})
	for _, s := range trickyStrings {
		want := map[string]any{"type": "error", "code": CodeBadRequest, "message": s}
		if s != "" {
			want["ref"] = s
		}
		wantFields(t, Error(s, CodeBadRequest, s), want)
	}
	wantFields(t, Error("\xff", "c", "m\xfe"),
		map[string]any{"type": "error", "ref": "\ufffd", "code": "c", "message": "m\ufffd"})
}

func TestAppendMessageAround(t *testing.T) {
	m := Message{Room: "r", From: "alice", Data: []byte(`{"n":1}`), ID: "x-1", TS: 1700000000000}
	head, tail := AppendMessageAround(&m)
	got := string(head) + "42" + string(tail)
	m.HasOffset, m.Offset = true, 42
	if want := string(AppendMessage(nil, &m)); got != want {
		t.Fatalf("head+42+tail = %s\nwant %s", got, want)
	}
}
