package hist

import (
	"math/rand"
	"slices"
	"testing"
	"time"
)

func TestIndexBoundsRoundTrip(t *testing.T) {
	prevHi := uint64(0)
	for i := 0; i < numBuckets; i++ {
		lo, hi := bounds(i)
		if i > 0 && lo != prevHi+1 {
			t.Fatalf("bucket %d starts at %d, previous ended at %d", i, lo, prevHi)
		}
		if index(lo) != i || index(hi) != i {
			t.Fatalf("bucket %d [%d,%d] maps back to %d,%d", i, lo, hi, index(lo), index(hi))
		}
		if lo >= 1<<subBits && float64(hi-lo+1)/float64(lo) > 1.0/halfSub+1e-12 {
			t.Fatalf("bucket %d too wide: [%d,%d]", i, lo, hi)
		}
		prevHi = hi
		if hi == ^uint64(0) {
			if i != numBuckets-1 {
				t.Fatalf("max uint64 reached at bucket %d of %d", i, numBuckets)
			}
			break
		}
	}
	if index(^uint64(0)) != numBuckets-1 {
		t.Fatalf("max value maps to %d, want %d", index(^uint64(0)), numBuckets-1)
	}
}

func TestEmpty(t *testing.T) {
	h := New()
	if h.Quantile(0.5) != 0 || h.Count() != 0 || h.Min() != 0 || h.Max() != 0 || h.Mean() != 0 {
		t.Fatal("empty histogram should answer zeros")
	}
}

func TestSmallExact(t *testing.T) {
	h := New()
	for v := 1; v <= 100; v++ {
		h.Record(time.Duration(v))
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 50}, {0.99, 99}, {0.999, 100}, {0.01, 1}, {1, 100}} {
		if got := h.Quantile(c.q); got != c.want {
			t.Errorf("q=%v: got %d want %d", c.q, got, c.want)
		}
	}
	if h.Mean() != 50 { // 50.5 truncated
		t.Errorf("mean %v", h.Mean())
	}
}

func TestQuantilesWithinError(t *testing.T) {
	r := rand.New(rand.NewSource(1))
	h := New()
	var samples []time.Duration
	for i := 0; i < 200000; i++ {
		// log-normal-ish spread from ~10µs to ~1s
		d := time.Duration(float64(10*time.Microsecond) * (1 + r.ExpFloat64()*r.ExpFloat64()*50))
		samples = append(samples, d)
		h.Record(d)
	}
	slices.Sort(samples)
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999} {
		exact := samples[int(q*float64(len(samples))+0.999999)-1]
		got := h.Quantile(q)
		rel := float64(got-exact) / float64(exact)
		if rel < -0.01 || rel > 0.01 {
			t.Errorf("q=%v: got %v exact %v (rel %.4f)", q, got, exact, rel)
		}
	}
	if h.Min() != samples[0] || h.Max() != samples[len(samples)-1] {
		t.Errorf("min/max %v/%v want %v/%v", h.Min(), h.Max(), samples[0], samples[len(samples)-1])
	}
}

func TestMerge(t *testing.T) {
	a, b, all := New(), New(), New()
	for i := 1; i <= 1000; i++ {
		d := time.Duration(i) * time.Microsecond
		all.Record(d)
		if i%2 == 0 {
			a.Record(d)
		} else {
			b.Record(d)
		}
	}
	m := New()
	m.Merge(a)
	m.Merge(b)
	m.Merge(New())
	m.Merge(nil)
	for _, q := range []float64{0.5, 0.99, 0.999} {
		if m.Quantile(q) != all.Quantile(q) {
			t.Errorf("q=%v merged %v single %v", q, m.Quantile(q), all.Quantile(q))
		}
	}
	if m.Count() != 1000 || m.Min() != time.Microsecond || m.Max() != time.Millisecond {
		t.Errorf("count/min/max %d %v %v", m.Count(), m.Min(), m.Max())
	}
}

func TestNegativeIsZero(t *testing.T) {
	h := New()
	h.Record(-5)
	if h.Max() != 0 || h.Quantile(0.5) != 0 {
		t.Fatal("negative sample should count as 0")
	}
}

func BenchmarkRecord(b *testing.B) {
	h := New()
	for i := 0; i < b.N; i++ {
		h.Record(time.Duration(i&0xfffff) * 100)
	}
}

func BenchmarkQuantile(b *testing.B) {
	h := New()
	for i := 0; i < 100000; i++ {
		h.Record(time.Duration(i) * time.Microsecond)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		_ = h.Quantile(0.999)
	}
}
