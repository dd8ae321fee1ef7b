// Package fence checks that the fencing tokens a lock service hands out
// only grow: per key, every grant's token must be strictly greater than the
// token of the grant before it. It also counts handovers (a grant to a
// different client than the previous grant of the same key).
//
// Grants must be reported in grant order. The benchmark reports a grant
// before it releases the lock, and the next grant of the key can only
// happen after that release (or after the lease expires, which a run's TTL
// is chosen to prevent), so reporting from many goroutines under the
// checker's mutex preserves that order.
package fence

import (
	"fmt"
	"sync"
)

// MaxExamples bounds how many violations are kept verbatim.
const MaxExamples = 10

type keyState struct {
	last    uint64
	hasLast bool
	holder  int
	grants  uint64
}

// Checker is safe for concurrent use.
type Checker struct {
	mu         sync.Mutex
	keys       map[string]*keyState
	grants     uint64
	checked    uint64
	handovers  uint64
	violations uint64
	examples   []string
}

// New returns an empty checker.
func New() *Checker { return &Checker{keys: make(map[string]*keyState)} }

// Grant records that client was granted key. When hasToken is false (the
// system hands out no token) only grants and handovers are counted. It
// reports whether the grant was a handover.
func (c *Checker) Grant(key string, client int, token uint64, hasToken bool) (handover bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.keys[key]
	if st == nil {
		st = &keyState{holder: -1}
		c.keys[key] = st
	}
	c.grants++
	if st.grants > 0 && st.holder != client {
		c.handovers++
		handover = true
	}
	st.grants++
	st.holder = client
	if !hasToken {
		return handover
	}
	if st.hasLast {
		c.checked++
		if token <= st.last {
			c.violations++
			if len(c.examples) < MaxExamples {
				c.examples = append(c.examples, fmt.Sprintf("key %q: token %d granted to client %d after token %d", key, token, client, st.last))
			}
		}
	}
	if !st.hasLast || token > st.last {
		st.last = token
	}
	st.hasLast = true
	return handover
}

// Report is a checker's summary.
type Report struct {
	// Grants is the number of grants recorded.
	Grants uint64 `json:"grants"`
	// Checked is the number of grants compared with a previous token of
	// the same key.
	Checked uint64 `json:"checked"`
	// Handovers counts grants to a different client than the key's
	// previous grant.
	Handovers uint64 `json:"handovers"`
	// Violations counts tokens not strictly greater than the previous one.
	Violations uint64   `json:"violations"`
	Examples   []string `json:"examples,omitempty"`
	// Keys is the number of distinct keys seen.
	Keys int `json:"keys"`
}

// Report summarizes the checker.
func (c *Checker) Report() Report {
	c.mu.Lock()
	defer c.mu.Unlock()
	return Report{
		Grants: c.grants, Checked: c.checked, Handovers: c.handovers,
		Violations: c.violations, Examples: append([]string(nil), c.examples...),
		Keys: len(c.keys),
	}
}

// Add merges reports of checkers that saw disjoint key sets.
func (r Report) Add(o Report) Report {
	r.Grants += o.Grants
	r.Checked += o.Checked
	r.Handovers += o.Handovers
	r.Violations += o.Violations
	r.Keys += o.Keys
	for _, e := range o.Examples {
		if len(r.Examples) < MaxExamples {
			r.Examples = append(r.Examples, e)
		}
	}
	return r
}
