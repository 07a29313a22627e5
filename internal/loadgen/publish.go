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
	pad := padding(w.cfg.Size)
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
// its sequence number and pad.
func appendData(buf []byte, seq int64, pad string) []byte {
	buf = append(buf, `{`+sendKey...)
	buf = strconv.AppendInt(buf, time.Now().UnixNano(), 10)
	buf = append(buf, `,"seq":`...)
	buf = strconv.AppendInt(buf, seq, 10)
	buf = append(buf, `,"pad":"`...)
	buf = append(buf, pad...)
	return append(buf, `"}`...)
}

// padding returns filler so that the data object, with its send time
// (19 digits), a sequence number and the keys, comes to about size bytes.
func padding(size int) string {
	const overhead = len(`{"bench_t":1234567890123456789,"seq":12345,"pad":""}`)
	return strings.Repeat("x", max(0, size-overhead))
}
