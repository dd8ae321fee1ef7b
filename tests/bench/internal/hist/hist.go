// Package hist is a fixed-size, log-linear latency histogram in the spirit
// of HdrHistogram: every value lands in a bucket whose width is at most
// 1/64 of its lower bound, so a percentile read back is within about 1.6%
// of the true sample, and memory stays constant (about 30 KiB) however many
// samples are recorded. It is not safe for concurrent use: give each worker
// its own and Merge them at the end.
package hist

import (
	"math"
	"math/bits"
	"time"
)

const (
	subBits    = 7                  // values below 2^subBits are exact
	halfSub    = 1 << (subBits - 1) // buckets per power of two above that
	numBuckets = (64-subBits)*halfSub + 2*halfSub
)

// Histogram records durations (as nanoseconds).
type Histogram struct {
	counts [numBuckets]uint64
	n      uint64
	sum    float64
	min    uint64
	max    uint64
}

// New returns an empty histogram.
func New() *Histogram { return &Histogram{min: math.MaxUint64} }

func index(v uint64) int {
	if v < 1<<subBits {
		return int(v)
	}
	e := bits.Len64(v) - subBits // >= 1
	return e*halfSub + int(v>>uint(e))
}

// bounds returns the smallest and largest value that map to bucket i.
func bounds(i int) (lo, hi uint64) {
	if i < 1<<subBits {
		return uint64(i), uint64(i)
	}
	e := i/halfSub - 1
	sub := uint64(i - e*halfSub)
	lo = sub << uint(e)
	hi = lo + (uint64(1) << uint(e)) - 1
	return lo, hi
}

// Record adds one sample; a negative duration counts as 0.
func (h *Histogram) Record(d time.Duration) {
	v := uint64(0)
	if d > 0 {
		v = uint64(d)
	}
	h.counts[index(v)]++
	h.n++
	h.sum += float64(v)
	if v < h.min {
		h.min = v
	}
	if v > h.max {
		h.max = v
	}
}

// Merge adds o's samples to h.
func (h *Histogram) Merge(o *Histogram) {
	if o == nil || o.n == 0 {
		return
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.sum += o.sum
	if o.min < h.min {
		h.min = o.min
	}
	if o.max > h.max {
		h.max = o.max
	}
}

// Count is the number of samples.
func (h *Histogram) Count() uint64 { return h.n }

// Min and Max are the exact extremes (0 when empty).
func (h *Histogram) Min() time.Duration {
	if h.n == 0 {
		return 0
	}
	return time.Duration(h.min)
}

func (h *Histogram) Max() time.Duration { return time.Duration(h.max) }

// Mean is the exact mean (0 when empty).
func (h *Histogram) Mean() time.Duration {
	if h.n == 0 {
		return 0
	}
	return time.Duration(h.sum / float64(h.n))
}

// Quantile returns the value at quantile q (0 < q <= 1) by the nearest-rank
// method: the sample at rank ceil(q*n). It answers with the middle of that
// sample's bucket, clamped to the exact min and max, so the error is within
// half a bucket width. An empty histogram answers 0.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	if q <= 0 {
		return time.Duration(h.min)
	}
	if q >= 1 {
		return time.Duration(h.max)
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	if rank < 1 {
		rank = 1
	}
	var seen uint64
	for i, c := range h.counts {
		if c == 0 {
			continue
		}
		seen += c
		if seen >= rank {
			lo, hi := bounds(i)
			v := lo + (hi-lo)/2
			if v < h.min {
				v = h.min
			}
			if v > h.max {
				v = h.max
			}
			return time.Duration(v)
		}
	}
	return time.Duration(h.max)
}
