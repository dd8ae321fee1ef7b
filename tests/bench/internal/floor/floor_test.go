package floor

import (
	"testing"
	"time"
)

func TestMeasure(t *testing.T) {
	r, err := Measure(t.TempDir(), 5, 20)
	if err != nil {
		t.Fatal(err)
	}
	if r.FsyncN != 5 || r.RTTN != 20 || r.FsyncP50Us <= 0 || r.PreallocFsyncP50Us <= 0 || r.RTTP50Us <= 0 {
		t.Fatalf("measure: %+v", r)
	}
	if got, want := r.BoundUs(), 2*(r.FsyncP50Us+r.RTTP50Us); got != want {
		t.Fatalf("bound %v, want %v", got, want)
	}
}

func TestMedian(t *testing.T) {
	cases := []struct {
		in   []time.Duration
		want float64
	}{
		{nil, 0},
		{[]time.Duration{3 * time.Microsecond}, 3},
		{[]time.Duration{9 * time.Microsecond, time.Microsecond, 5 * time.Microsecond}, 5},
	}
	for _, c := range cases {
		if got := median(c.in); got != c.want {
			t.Errorf("median(%v) = %v, want %v", c.in, got, c.want)
		}
	}
}
