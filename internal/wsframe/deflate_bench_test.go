package wsframe

import (
	"bytes"
	stdflate "compress/flate"
	"fmt"
	"testing"
)

// BenchmarkDeflate compares the compressor the package uses with the
// standard library's at the same level, on chat/dashboard-like JSON.
// ratio is compressed/original payload bytes.
func BenchmarkDeflate(b *testing.B) {
	for _, n := range []int{128, 256, 1024, 8192} {
		msg := jsonish(n)
		b.Run(fmt.Sprintf("klauspost/%d", n), func(b *testing.B) {
			b.SetBytes(int64(n))
			b.ReportAllocs()
			var f []byte
			for b.Loop() {
				f, _ = AppendDeflated(f[:0], OpText, msg, MaxWindowBits)
			}
			b.ReportMetric(float64(len(f))/float64(FrameSize(n)), "ratio")
		})
		b.Run(fmt.Sprintf("stdlib/%d", n), func(b *testing.B) {
			b.SetBytes(int64(n))
			b.ReportAllocs()
			var buf bytes.Buffer
			w, _ := stdflate.NewWriter(&buf, stdflate.BestSpeed)
			for b.Loop() {
				buf.Reset()
				w.Reset(&buf)
				_, _ = w.Write(msg)
				_ = w.Flush()
			}
			b.ReportMetric(float64(buf.Len()-4+2)/float64(FrameSize(n)), "ratio")
		})
		b.Run(fmt.Sprintf("window9/%d", n), func(b *testing.B) {
			b.SetBytes(int64(n))
			var f []byte
			for b.Loop() {
				f, _ = AppendDeflated(f[:0], OpText, msg, 9)
			}
			b.ReportMetric(float64(len(f))/float64(FrameSize(n)), "ratio")
		})
	}
}

// BenchmarkInflate measures the Reader on one compressed 1 KiB message.
func BenchmarkInflate(b *testing.B) {
	frame := cf(b, OpText, string(jsonish(1024)))
	r := &Reader{Deflate: true, MaxMessage: 64 << 10}
	buf := make([]byte, len(frame))
	emit := func(Opcode, []byte) bool { return true }
	b.SetBytes(1024)
	b.ReportAllocs()
	for b.Loop() {
		copy(buf, frame)
		if err := r.Feed(buf, emit); err != nil {
			b.Fatal(err)
		}
	}
}
