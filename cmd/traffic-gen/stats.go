package main

import (
	"math"
	"math/bits"
	"strconv"
	"sync/atomic"
	"time"
)

// Latency histogram: log-linear buckets over nanoseconds, exact below 128
// and 64 buckets per power of two above (at most 1/64 relative error).
const (
	histSub     = 64
	histLinear  = 2 * histSub
	histBuckets = histLinear + 57*histSub
)

// histogram records durations from many goroutines without locks.
type histogram struct {
	counts [histBuckets]atomic.Uint64
	n      atomic.Uint64
	sum    atomic.Uint64 // ns
	min    atomic.Uint64 // ns, valid when n > 0
	max    atomic.Uint64
}

func newHistogram() *histogram {
	h := &histogram{}
	h.min.Store(math.MaxUint64)
	return h
}

func bucketOf(v uint64) int {
	if v < histLinear {
		return int(v)
	}
	shift := bits.Len64(v) - 7 // v>>shift is in [64, 128)
	return histLinear + (shift-1)*histSub + int(v>>uint(shift)) - histSub
}

// bucketMid returns the middle of bucket i.
func bucketMid(i int) uint64 {
	if i < histLinear {
		return uint64(i)
	}
	shift := uint((i-histLinear)/histSub + 1)
	lo := uint64((i-histLinear)%histSub+histSub) << shift
	return lo + (1<<shift)/2
}

// record adds one duration.
func (h *histogram) record(d time.Duration) {
	v := uint64(max(d, 0))
	h.counts[bucketOf(v)].Add(1)
	h.n.Add(1)
	h.sum.Add(v)
	for cur := h.min.Load(); v < cur && !h.min.CompareAndSwap(cur, v); cur = h.min.Load() {
	}
	for cur := h.max.Load(); v > cur && !h.max.CompareAndSwap(cur, v); cur = h.max.Load() {
	}
}

// latencySummary is the latency line of the final report.
type latencySummary struct {
	Count                         uint64
	Avg, Min, Max                 time.Duration
	P50, P75, P90, P95, P99, P999 time.Duration
}

// summary computes the report figures (all zero without samples).
func (h *histogram) summary() latencySummary {
	n := h.n.Load()
	if n == 0 {
		return latencySummary{}
	}
	s := latencySummary{
		Count: n,
		Avg:   time.Duration(h.sum.Load() / n),
		Min:   time.Duration(h.min.Load()),
		Max:   time.Duration(h.max.Load()),
	}
	qs := []float64{0.50, 0.75, 0.90, 0.95, 0.99, 0.999}
	out := []*time.Duration{&s.P50, &s.P75, &s.P90, &s.P95, &s.P99, &s.P999}
	var cum uint64
	q := 0
	for i := range h.counts {
		cum += h.counts[i].Load()
		for q < len(qs) && float64(cum) >= math.Ceil(qs[q]*float64(n)) {
			v := time.Duration(bucketMid(i))
			*out[q] = min(max(v, s.Min), s.Max)
			q++
		}
		if q == len(qs) {
			break
		}
	}
	for ; q < len(qs); q++ {
		*out[q] = s.Max
	}
	return s
}

// roundDuration rounds d for display: to the microsecond below a second,
// to the millisecond above.
func roundDuration(d time.Duration) time.Duration {
	if d < time.Second {
		return d.Round(time.Microsecond)
	}
	return d.Round(time.Millisecond)
}

// groupThousands formats n with ',' between groups of three digits.
func groupThousands(n uint64) string {
	s := strconv.FormatUint(n, 10)
	if len(s) <= 3 {
		return s
	}
	out := make([]byte, 0, len(s)+len(s)/3)
	lead := len(s) % 3
	if lead == 0 {
		lead = 3
	}
	out = append(out, s[:lead]...)
	for i := lead; i < len(s); i += 3 {
		out = append(out, ',')
		out = append(out, s[i:i+3]...)
	}
	return string(out)
}

// rateText renders a per-second rate as "X msgs/s, Y msgs/minute, Z msgs/hour".
func rateText(perSec float64) string {
	r := func(v float64) string { return groupThousands(uint64(math.Round(max(v, 0)))) }
	return r(perSec) + " msgs/s, " + r(perSec*60) + " msgs/minute, " + r(perSec*3600) + " msgs/hour"
}
