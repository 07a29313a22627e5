package loadgen

import (
	"math/bits"
	"sort"
	"sync/atomic"
	"time"
)

// Histogram records durations in microseconds in log-linear buckets (64
// per power of two, so values are kept to within about 1.6%). Record is
// safe for concurrent use and allocation-free.
type Histogram struct {
	counts [histBuckets]atomic.Uint64
	max    atomic.Int64 // nanoseconds, exact
}

const (
	histSub     = 64
	histBuckets = histSub + 40*histSub
)

func histIndex(us uint64) int {
	if us < histSub {
		return int(us)
	}
	shift := bits.Len64(us) - 7 // us>>shift is in [64, 128)
	i := histSub + shift*histSub + int(us>>shift) - histSub
	return min(i, histBuckets-1)
}

// histValue is the midpoint of bucket i, in microseconds.
func histValue(i int) float64 {
	if i < histSub {
		return float64(i)
	}
	shift := (i - histSub) / histSub
	base := uint64((i-histSub)%histSub+histSub) << shift
	return float64(base) + float64(uint64(1)<<shift)/2
}

// Record adds one observation. Negative durations (clock steps) count as 0.
func (h *Histogram) Record(d time.Duration) {
	if d < 0 {
		d = 0
	}
	h.counts[histIndex(uint64(d/time.Microsecond))].Add(1)
	for {
		m := h.max.Load()
		if int64(d) <= m || h.max.CompareAndSwap(m, int64(d)) {
			return
		}
	}
}

// Snapshot returns the non-empty buckets, for sending to another process.
func (h *Histogram) Snapshot() HistData {
	var d HistData
	for i := range h.counts {
		if n := h.counts[i].Load(); n > 0 {
			d.Buckets = append(d.Buckets, [2]uint64{uint64(i), n})
		}
	}
	d.MaxNs = h.max.Load()
	return d
}

// HistData is a histogram in transit: (bucket, count) pairs and the exact max.
type HistData struct {
	Buckets [][2]uint64 `json:"buckets,omitempty"`
	MaxNs   int64       `json:"max_ns,omitempty"`
}

// Merge adds o into d.
func (d *HistData) Merge(o HistData) {
	m := make(map[uint64]uint64, len(d.Buckets)+len(o.Buckets))
	for _, b := range d.Buckets {
		m[b[0]] += b[1]
	}
	for _, b := range o.Buckets {
		m[b[0]] += b[1]
	}
	d.Buckets = d.Buckets[:0]
	for k, v := range m {
		d.Buckets = append(d.Buckets, [2]uint64{k, v})
	}
	sort.Slice(d.Buckets, func(i, j int) bool { return d.Buckets[i][0] < d.Buckets[j][0] })
	d.MaxNs = max(d.MaxNs, o.MaxNs)
}

// Count is the number of observations.
func (d *HistData) Count() uint64 {
	var n uint64
	for _, b := range d.Buckets {
		n += b[1]
	}
	return n
}

// Quantile returns the q-quantile (0 < q <= 1) as a duration; Quantile(1)
// is the exact maximum. Buckets must be sorted (Merge sorts them).
func (d *HistData) Quantile(q float64) time.Duration {
	total := d.Count()
	if total == 0 {
		return 0
	}
	if q >= 1 {
		return time.Duration(d.MaxNs)
	}
	rank := uint64(q*float64(total) + 0.5)
	rank = max(rank, 1)
	var seen uint64
	for _, b := range d.Buckets {
		seen += b[1]
		if seen >= rank {
			v := time.Duration(histValue(int(b[0])) * float64(time.Microsecond))
			return min(v, time.Duration(d.MaxNs))
		}
	}
	return time.Duration(d.MaxNs)
}
