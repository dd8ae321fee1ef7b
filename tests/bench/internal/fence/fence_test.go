package fence

import (
	"sync"
	"testing"
)

func TestIncreasingTokensPass(t *testing.T) {
	c := New()
	c.Grant("a", 0, 5, true)
	c.Grant("a", 1, 7, true)
	c.Grant("b", 0, 6, true) // other key: independent
	c.Grant("a", 1, 9, true)
	r := c.Report()
	if r.Violations != 0 || r.Checked != 2 || r.Grants != 4 || r.Keys != 2 {
		t.Fatalf("%+v", r)
	}
	if r.Handovers != 1 { // a: 0 -> 1 once; 1 -> 1 is no handover
		t.Fatalf("handovers %d", r.Handovers)
	}
}

func TestEqualAndDecreasingAreViolations(t *testing.T) {
	c := New()
	c.Grant("k", 0, 10, true)
	c.Grant("k", 1, 10, true) // reused
	c.Grant("k", 2, 8, true)  // went back
	c.Grant("k", 3, 11, true) // fine: above the highest seen
	r := c.Report()
	if r.Violations != 2 || len(r.Examples) != 2 || r.Checked != 3 {
		t.Fatalf("%+v", r)
	}
}

func TestDecreaseComparedToHighestSeen(t *testing.T) {
	c := New()
	c.Grant("k", 0, 10, true)
	c.Grant("k", 0, 3, true)  // violation
	c.Grant("k", 0, 5, true)  // still below 10: violation
	c.Grant("k", 0, 12, true) // ok
	if r := c.Report(); r.Violations != 2 {
		t.Fatalf("%+v", r)
	}
}

func TestNoTokensCountsGrantsOnly(t *testing.T) {
	c := New()
	c.Grant("k", 0, 0, false)
	c.Grant("k", 1, 0, false)
	c.Grant("k", 1, 0, false)
	r := c.Report()
	if r.Grants != 3 || r.Checked != 0 || r.Violations != 0 || r.Handovers != 1 {
		t.Fatalf("%+v", r)
	}
}

func TestExamplesBounded(t *testing.T) {
	c := New()
	for i := 0; i < 100; i++ {
		c.Grant("k", i, 1, true)
	}
	r := c.Report()
	if r.Violations != 99 || len(r.Examples) != MaxExamples {
		t.Fatalf("violations %d examples %d", r.Violations, len(r.Examples))
	}
}

func TestAdd(t *testing.T) {
	a, b := New(), New()
	a.Grant("x", 0, 1, true)
	a.Grant("x", 0, 1, true)
	b.Grant("y", 1, 2, true)
	b.Grant("y", 1, 3, true)
	r := a.Report().Add(b.Report())
	if r.Grants != 4 || r.Checked != 2 || r.Violations != 1 || r.Keys != 2 || len(r.Examples) != 1 {
		t.Fatalf("%+v", r)
	}
}

func TestConcurrent(t *testing.T) {
	c := New()
	var mu sync.Mutex // hands out tokens in order, as a lock service would
	next := uint64(0)
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < 1000; i++ {
				mu.Lock()
				next++
				c.Grant("hot", w, next, true)
				mu.Unlock()
			}
		}(w)
	}
	wg.Wait()
	if r := c.Report(); r.Violations != 0 || r.Grants != 8000 {
		t.Fatalf("%+v", r)
	}
}
