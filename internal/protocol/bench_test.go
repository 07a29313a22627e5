package protocol

import (
	"testing"
)

var benchPublish = []byte(`{"type":"publish","id":"req-42","room":"chat:general","data":{"text":"hello, world","n":12345678901234567890,"tags":["a","b"]}}`)

var benchMessage = Message{
	Room:      "chat:general",
	From:      "alice",
	Data:      []byte(`{"text":"hello, world","n":12345678901234567890,"tags":["a","b"]}`),
	ID:        "n1-00000001",
	Offset:    1234,
	HasOffset: true,
	TS:        1700000000123,
}

func BenchmarkDecodePublish(b *testing.B) {
	b.ReportAllocs()
	b.SetBytes(int64(len(benchPublish)))
	for b.Loop() {
		if _, err := Decode(benchPublish); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendMessage(b *testing.B) {
	b.ReportAllocs()
	buf := make([]byte, 0, 512)
	for b.Loop() {
		buf = AppendMessage(buf[:0], &benchMessage)
	}
	b.SetBytes(int64(len(buf)))
}

func BenchmarkAppendStringEscaped(b *testing.B) {
	b.ReportAllocs()
	s := "line \"one\"\n\tline\u2028two \xff é 😀"
	buf := make([]byte, 0, 128)
	for b.Loop() {
		buf = AppendString(buf[:0], s)
	}
}

// AppendMessage runs once per publish: into a reused buffer it must not allocate.
func TestAppendMessageZeroAllocs(t *testing.T) {
	buf := make([]byte, 0, 512)
	m := benchMessage
	m.From = "we\"ird\n\xff\u2028"
	allocs := testing.AllocsPerRun(1000, func() {
		buf = AppendMessage(buf[:0], &m)
	})
	if allocs != 0 {
		t.Fatalf("AppendMessage into a reused buffer: %v allocs, want 0", allocs)
	}
	allocs = testing.AllocsPerRun(1000, func() {
		buf = AppendAck(buf[:0], &Ack{Ref: "r", Users: []string{"a"}, HasOffset: true, Offset: 1, Epoch: "e"})
	})
	if allocs != 0 {
		t.Fatalf("AppendAck into a reused buffer: %v allocs, want 0", allocs)
	}
}
