package sse

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"
)

// frame builds an unmasked final WebSocket frame as the hub does.
func frame(op byte, payload []byte) []byte {
	b := []byte{0x80 | op}
	switch n := len(payload); {
	case n <= 125:
		b = append(b, byte(n))
	case n <= 0xFFFF:
		b = append(b, 126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b = append(b, 127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	return append(b, payload...)
}

func closeFrame(code int, reason string) []byte {
	return frame(opClose, append(binary.BigEndian.AppendUint16(nil, uint16(code)), reason...))
}

func convert(cv *Converter, bufs ...[]byte) string {
	out, n := cv.Append(nil, bufs)
	total := 0
	for _, b := range bufs {
		total += len(b)
	}
	if n != total {
		panic("not every byte consumed")
	}
	return string(out)
}

func TestConvertFrames(t *testing.T) {
	head := "HTTP/1.1 200 OK\r\n\r\n"
	big := `{"type":"message","data":"` + strings.Repeat("y", 70000) + `"}`
	stream := bytes.Join([][]byte{
		[]byte(head),
		frame(opText, []byte(`{"type":"welcome"}`)),
		frame(0x9, []byte("ping")), // control frames vanish
		frame(opText, []byte("{\"a\":\r\n1,\r\"b\":\n2}")),
		frame(opText, []byte(`{"type":"x","data":"`+strings.Repeat("z", 300)+`"}`)),
		frame(opText, []byte(big)),
		closeFrame(4001, "slow_consumer"),
	}, nil)
	want := head +
		"data: {\"type\":\"welcome\"}\n\n" +
		"data: {\"a\":\ndata: 1,\ndata: \"b\":\ndata: 2}\n\n" +
		"data: {\"type\":\"x\",\"data\":\"" + strings.Repeat("z", 300) + "\"}\n\n" +
		"data: " + big + "\n\n" +
		"event: close\ndata: {\"code\":4001,\"reason\":\"slow_consumer\"}\n\n"

	whole := Converter{Passthrough: len(head)}
	if got := convert(&whole, stream); got != want {
		t.Fatalf("whole stream converted to\n%.300q\nwant\n%.300q", got, want)
	}
	if !whole.Closed() {
		t.Fatal("close frame not seen")
	}
	// The same bytes cut at every place (headers and payloads split across
	// buffers and calls) convert the same.
	for _, step := range []int{1, 2, 3, 7, 125, 126, 4096} {
		cv := Converter{Passthrough: len(head)}
		var got strings.Builder
		for i := 0; i < len(stream); i += step {
			got.WriteString(convert(&cv, stream[i:min(i+step, len(stream))]))
		}
		if got.String() != want {
			t.Fatalf("in pieces of %d: converted differently", step)
		}
	}
}

func TestEventIDs(t *testing.T) {
	cv := Converter{Resume: "kept"}
	cases := []struct {
		frame, id string
	}{
		{`{"type":"message","room":"kept","from":"a","data":1,"id":"m1","ts":5}`, ""}, // no offset yet: a room without history
		{`{"type":"ack","ref":"sse-join-kept","users":["x\",\"offset\":9"],"offset":4,"epoch":"e1"}`, "4:e1"},
		{`{"type":"message","room":"kept","from":"a","data":{"offset":99,"ts":1},"id":"m2","offset":5,"ts":6}`, "5:e1"},
		{`{"type":"message","room":"other","from":"a","data":1,"id":"m3","offset":77,"ts":6}`, ""},
		{`{"type":"message","room":"keptx","from":"a","data":1,"id":"m3","offset":77,"ts":6}`, ""},
		{`{"type":"ack","ref":"p1","offset":50,"epoch":"zz"}`, ""},
		{`{"type":"message","to":"kept","from":"a","data":1,"id":"m4","offset":8,"ts":6}`, ""},
		{`{"type":"message","room":"kept","from":"a","data":1,"id":"m5","offset":6,"ts":7}`, "6:e1"},
	}
	for _, c := range cases {
		if id := string(cv.eventID([]byte(c.frame))); id != c.id {
			t.Errorf("%s: id %q, want %q", c.frame, id, c.id)
		}
	}
	if id := (&Converter{}).eventID([]byte(cases[2].frame)); id != nil {
		t.Errorf("without a resume room: id %q", id)
	}
	for _, in := range []string{"5:e1", "5", " 12 "} {
		if _, _, ok := ParsePosition(in); !ok {
			t.Errorf("ParsePosition(%q) refused", in)
		}
	}
	if n, e, _ := ParsePosition("5:e1"); n != 5 || e != "e1" {
		t.Errorf("ParsePosition: %d %q", n, e)
	}
	for _, in := range []string{"", "x", "-1", ":e", "99999999999999999999"} {
		if _, _, ok := ParsePosition(in); ok {
			t.Errorf("ParsePosition(%q) accepted", in)
		}
	}
}

func TestRequests(t *testing.T) {
	split := func(body string) []string {
		var out []string
		Requests([]byte(body), func(f []byte) bool { out = append(out, string(f)); return true })
		return out
	}
	cases := map[string][]string{
		"":                                    nil,
		" \n\n ":                              nil,
		`{"type":"ping"}`:                     {`{"type":"ping"}`},
		"{\"a\":1}\n{\"b\":2}\n\n{\"c\":3}\n": {`{"a":1}`, `{"b":2}`, `{"c":3}`},
		"{\r\n  \"type\": \"ping\"\r\n}":      {"{\r\n  \"type\": \"ping\"\r\n}"}, // one object over lines
		"{\"a\":1}\nnot json":                 {"{\"a\":1}\nnot json"},            // not frames per line: one (bad) frame
	}
	for body, want := range cases {
		if got := split(body); strings.Join(got, "|") != strings.Join(want, "|") {
			t.Errorf("Requests(%q) = %q, want %q", body, got, want)
		}
	}
	n := 0
	Requests([]byte("{}\n{}\n{}"), func([]byte) bool { n++; return n < 2 })
	if n != 2 {
		t.Errorf("stopping: %d calls", n)
	}
}

// BenchmarkConvertMessage is the event stream's cost per delivery: one
// chat-sized message frame rewritten as an event with its id.
func BenchmarkConvertMessage(b *testing.B) {
	msg := frame(opText, []byte(`{"type":"message","room":"kept","from":"alice","data":{"text":"`+strings.Repeat("hello ", 20)+`"},"id":"4f2a-17","offset":42,"ts":1796647164986}`))
	cv := Converter{Resume: "kept"}
	dst := make([]byte, 0, 512)
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		dst, _ = cv.Append(dst[:0], [][]byte{msg})
	}
}
