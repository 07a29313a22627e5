package loadgen

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// publish sends cfg.Messages publishes on the publisher connection, paced at
// cfg.Rate per second (0: back to back), and then writes a "published" line.
func (w *worker) publish(ctx context.Context) {
	w.mu.Lock()
	c := w.pub
	w.mu.Unlock()
	prefix := `{"type":"publish","room":` + strconv.Quote(w.cfg.Room) + `,"data":`
	var buf []byte
	var interval time.Duration
	if w.cfg.Rate > 0 {
		interval = time.Duration(float64(time.Second) / w.cfg.Rate)
	}
	pad := filler(w.cfg.Size, w.cfg.Realistic)
	start := time.Now()
	var sent int64
	for i := 0; i < w.cfg.Messages; i++ {
		if ctx.Err() != nil {
			break
		}
		if interval > 0 {
			time.Sleep(time.Until(start.Add(time.Duration(i) * interval)))
		}
		buf = append(appendData(append(buf[:0], prefix...), int64(i), pad), '}')
		if err := c.WriteText(buf); err != nil {
			w.fail(fmt.Errorf("publish %d: %w", i, err))
			break
		}
		sent++
	}
	s := w.status("published")
	s.Published = sent
	s.PubStart = start.UnixNano()
	s.PubEnd = time.Now().UnixNano()
	w.emit(s)
}

// appendData appends the data object of message seq: its send time (now),
// its sequence number and the rest, from filler.
func appendData(buf []byte, seq int64, rest string) []byte {
	buf = append(buf, `{`+sendKey...)
	buf = strconv.AppendInt(buf, time.Now().UnixNano(), 10)
	buf = append(buf, `,"seq":`...)
	buf = strconv.AppendInt(buf, seq, 10)
	buf = append(buf, rest...)
	return append(buf, '}')
}

// filler returns the end of the data object, so that with its send time
// (19 digits), a sequence number and the keys it comes to about size
// bytes: a "pad" string of x, or with realistic a dashboard panel whose
// rows repeat their keys with varying values, as live JSON does.
func filler(size int, realistic bool) string {
	const overhead = len(`{"bench_t":1234567890123456789,"seq":12345}`)
	if !realistic {
		return `,"pad":"` + strings.Repeat("x", max(0, size-overhead-len(`,"pad":""`))) + `"`
	}
	var b strings.Builder
	b.WriteString(`,"panel":"cluster-overview","series":[`)
	for i := 0; overhead+b.Len() < size-2; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"host":"web-%02d","region":"%s","cpu":%d.%d,"mem_mb":%d,"status":"%s","p99_ms":%d}`,
			i, []string{"eu-west-1", "us-east-2", "ap-south-1"}[i%3], 13+i*37%80, i*7%10, 900+i*173%4000,
			[]string{"healthy", "healthy", "degraded"}[i%3], 20+i*29%300)
	}
	b.WriteString(`]`)
	return b.String()
}
