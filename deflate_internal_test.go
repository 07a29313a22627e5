package switchboard

import (
	"bytes"
	"compress/flate"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/switchboardhq/switchboard/internal/transport"
)

// dashboardJSON is about 1 KiB of data as a live dashboard or a chat room
// with rich messages publishes it.
func dashboardJSON() json.RawMessage {
	var b strings.Builder
	b.WriteString(`{"panel":"cluster-overview","updated":"2026-12-07T12:00:00Z","series":[`)
	for i := 0; i < 10; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"host":"web-%02d","region":"eu-west-1","cpu":%d.%d,"mem":%d,"status":"healthy","p99_ms":%d}`,
			i, 20+i*7%60, i*3%10, 1000+i*137, 40+i*11)
	}
	b.WriteString(`],"alerts":[],"version":1842}`)
	return json.RawMessage(b.String())
}

func compressionHub(tb testing.TB, on bool) *Hub {
	h, err := New(Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), PresenceBatchSize: 1 << 30,
		Compression: CompressionOptions{Enabled: on}})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = h.Close() })
	return h
}

// addDeflateConns is addFakeConns for connections that negotiated
// permessage-deflate with the given server window.
func addDeflateConns(tb testing.TB, h *Hub, room string, n, bits int, t transport.Transport) {
	for i := 0; i < n; i++ {
		r := httptest.NewRequest("GET", "/ws", nil)
		r.Header.Set("Sec-WebSocket-Extensions", "permessage-deflate; server_max_window_bits="+strconv.Itoa(bits))
		c := h.newConn(r, &Identity{User: "d" + strconv.Itoa(bits) + "-" + strconv.Itoa(i)})
		if h.acceptDeflate(c, r) == "" {
			tb.Fatal("permessage-deflate not negotiated")
		}
		registerFake(tb, h, c, room, t)
	}
}

// bufferTransport keeps the first byte and address of every frame
// written, to see which recipients got the very same buffer.
type bufferTransport struct {
	discardTransport
	mu2    sync.Mutex
	frames map[*byte]int // first byte's address -> recipients
	rsv1   int
	plain  int
}

func (t *bufferTransport) Write(c transport.Conn, frames [][]byte) error {
	t.mu2.Lock()
	for _, f := range frames {
		if len(f) > 600 || f[0]&0x40 != 0 { // the broadcast, not the welcome-sized frames
			t.frames[&f[0]]++
			if f[0]&0x40 != 0 {
				t.rsv1++
			} else {
				t.plain++
			}
		}
	}
	t.mu2.Unlock()
	return t.discardTransport.Write(c, frames)
}

// TestBroadcastIsCompressedOnce checks that a publish to a room where
// connections negotiated compression with two window sizes and others did
// not is encoded three times, whatever the number of recipients, and that
// each recipient gets the encoding it negotiated.
func TestBroadcastIsCompressedOnce(t *testing.T) {
	h := compressionHub(t, true)
	tr := &bufferTransport{frames: map[*byte]int{}}
	addFakeConns(t, h, "room", 30, tr)
	addDeflateConns(t, h, "room", 40, 15, tr)
	addDeflateConns(t, h, "room", 20, 9, tr)
	if _, err := h.Publish(context.Background(), "room", dashboardJSON()); err != nil {
		t.Fatal(err)
	}
	tr.drain()
	tr.mu2.Lock()
	defer tr.mu2.Unlock()
	if tr.rsv1 != 60 || tr.plain != 30 {
		t.Fatalf("%d compressed and %d plain deliveries, want 60 and 30", tr.rsv1, tr.plain)
	}
	counts := []int{}
	for _, n := range tr.frames {
		counts = append(counts, n)
	}
	if got := h.Counters().MessagesCompressed; got != 2 {
		t.Fatalf("MessagesCompressed %d after one publish to two window sizes, want 2", got)
	}
	if len(tr.frames) != 3 {
		t.Fatalf("%d distinct buffers for one publish (recipients per buffer %v), want 3", len(tr.frames), counts)
	}
}

func TestCompressedBroadcastAllocationsDoNotGrowWithRecipients(t *testing.T) {
	data := dashboardJSON()
	allocs := func(n int) float64 {
		h := compressionHub(t, true)
		tr := &discardTransport{}
		addDeflateConns(t, h, "room", n, 15, tr)
		ctx := context.Background()
		publish := func() {
			_, _ = h.Publish(ctx, "room", data)
			tr.drain()
		}
		publish()
		return testing.AllocsPerRun(50, publish)
	}
	small, large := allocs(10), allocs(2000)
	// Growth with recipients would show as thousands. A few more come from
	// the compressor pool: sync.Pool drops some of what is put back (on
	// purpose under the race detector, and at every collection), and a
	// dropped compressor is made again.
	if large > small+8 {
		t.Fatalf("allocations per compressed broadcast grow with recipients: %v for 10, %v for 2000", small, large)
	}
}

// BenchmarkBroadcastCompression publishes about 1 KiB of JSON to a room
// of N members, every one of which negotiated compression (on) or none
// (off). wire-B/delivery is the bytes each recipient is sent.
func BenchmarkBroadcastCompression(b *testing.B) {
	data := dashboardJSON()
	for _, n := range []int{1, 100, 1000} {
		for _, on := range []bool{false, true} {
			b.Run(fmt.Sprintf("members=%d/compression=%v", n, on), func(b *testing.B) {
				h := compressionHub(b, on)
				tr := &discardTransport{}
				if on {
					addDeflateConns(b, h, "room", n, 15, tr)
				} else {
					addFakeConns(b, h, "room", n, tr)
				}
				ctx := context.Background()
				tr.bytes.Store(0)
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					if _, err := h.Publish(ctx, "room", data); err != nil {
						b.Fatal(err)
					}
					tr.drain()
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/delivery")
				b.ReportMetric(float64(tr.bytes.Load())/float64(b.N*n), "wire-B/delivery")
			})
		}
	}
}

// clientFrame is a masked client text frame.
func clientFrame(text []byte) []byte {
	return maskClient(0x81, text)
}

// testWriter is reused by clientDeflated: a compressor is large to make.
var testWriter *flate.Writer

// clientDeflated is a masked client text frame carrying text compressed
// (RSV1), as a browser sends it.
func clientDeflated(tb testing.TB, text []byte) []byte {
	var b bytes.Buffer
	if testWriter == nil {
		var err error
		if testWriter, err = flate.NewWriter(&b, flate.BestSpeed); err != nil {
			tb.Fatal(err)
		}
	}
	w := testWriter
	w.Reset(&b)
	_, _ = w.Write(text)
	_ = w.Flush()
	return maskClient(0xC1, bytes.TrimSuffix(b.Bytes(), []byte{0, 0, 0xff, 0xff}))
}

func maskClient(b0 byte, p []byte) []byte {
	key := [4]byte{1, 2, 3, 4}
	f := []byte{b0}
	switch {
	case len(p) < 126:
		f = append(f, 0x80|byte(len(p)))
	default:
		f = append(f, 0x80|126, byte(len(p)>>8), byte(len(p)))
	}
	f = append(f, key[:]...)
	for i, c := range p {
		f = append(f, c^key[i&3])
	}
	return f
}

// BenchmarkConnMemory reports the heap each connection holds (B/conn),
// without compression and with permessage-deflate negotiated, idle and
// after each connection sent a 1 KiB message to itself and received it
// (compressed both ways with deflate). Run with -benchtime 1x; it
// measures, it asserts nothing.
func BenchmarkConnMemory(b *testing.B) {
	const n = 2000
	data := `"` + strings.Repeat("abcdefgh", 125) + `"`
	clientDeflated(b, []byte(data)) // make the test's own compressor before measuring
	for _, mode := range []string{"plain-idle", "deflate-idle", "plain-after-traffic", "deflate-after-traffic"} {
		b.Run(mode, func(b *testing.B) {
			for b.Loop() {
				h := compressionHub(b, true)
				tr := &discardTransport{}
				var ms0, ms1 runtime.MemStats
				runtime.GC()
				runtime.GC()
				runtime.ReadMemStats(&ms0)
				deflate := strings.HasPrefix(mode, "deflate")
				if !deflate {
					addFakeConns(b, h, "room", n, tr)
				} else {
					addDeflateConns(b, h, "room", n, 15, tr)
				}
				if strings.HasSuffix(mode, "after-traffic") {
					// A direct message to oneself: 1 KiB in, compressed,
					// and the same back, compressed.
					h.reg.eachConn(func(c *Conn) {
						text := []byte(`{"type":"send","to":"` + c.user + `","data":` + data + `}`)
						frame := clientFrame(text)
						if deflate {
							frame = clientDeflated(b, text)
						}
						if err := h.onData(c, frame); err != nil {
							b.Fatal(err)
						}
					})
					tr.drain()
					if got := h.Counters().MessagesCompressed; deflate && got != n {
						b.Fatalf("%d answers compressed, want %d", got, n)
					}
				}
				// Two collections: the first moves what the compression
				// pools hold (shared by all connections, not theirs) to
				// their victim caches, the second frees it.
				runtime.GC()
				runtime.GC()
				runtime.ReadMemStats(&ms1)
				b.ReportMetric(float64(int64(ms1.HeapAlloc)-int64(ms0.HeapAlloc))/n, "B/conn")
				runtime.KeepAlive(h)
			}
		})
	}
}
