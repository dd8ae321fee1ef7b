//go:build unix

package chaos

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"sync"
	"time"
)

// Kind is the kind of a lock operation.
type Kind string

// The operations clients perform.
const (
	KindAcquire Kind = "acquire"
	KindRenew   Kind = "renew"
	KindRelease Kind = "release"
	KindInfo    Kind = "info"
)

// Outcome is what a client learned from an operation.
type Outcome string

const (
	// OK: acquire or renew returned a token, release returned 1, info
	// answered (held or free).
	OK Outcome = "ok"
	// Fail: a definite refusal that changed nothing: acquire nil, renew
	// NOTHELD, release 0.
	Fail Outcome = "fail"
	// Unknown: the operation may or may not have taken effect (timeout,
	// reset connection, UNKNOWN, TIMEOUT, HTTP 504).
	Unknown Outcome = "unknown"
	// Error: the operation definitely took no effect (CLUSTERDOWN, a
	// refused connection, ERR, a failed read).
	Error Outcome = "error"
)

// Op is one client operation with its invoke and complete times.
type Op struct {
	ID       int           `json:"id"`
	Client   int           `json:"client"`
	Owner    string        `json:"owner"`
	Key      string        `json:"key"`
	Kind     Kind          `json:"kind"`
	Node     string        `json:"node"`
	Proto    string        `json:"proto"`
	TTL      time.Duration `json:"ttl,omitempty"`
	Wait     time.Duration `json:"wait,omitempty"`
	ArgToken uint64        `json:"arg_token,omitempty"` // TOKEN argument of renew/release
	Call     int64         `json:"call"`                // ns since the run started
	Return   int64         `json:"return"`              // ns; 0 while pending
	Outcome  Outcome       `json:"outcome"`
	Token    uint64        `json:"token,omitempty"`  // token returned, or info's fencing token
	Holder   string        `json:"holder,omitempty"` // info: the owner; empty when free
	Err      string        `json:"err,omitempty"`
}

// Event is a fault (or a harness phase) with its start and end times.
type Event struct {
	Kind   string `json:"kind"`
	Detail string `json:"detail,omitempty"`
	Start  int64  `json:"start"`
	End    int64  `json:"end"`
}

// Access is one use of the fenced resource by a lock holder.
type Access struct {
	Key       string `json:"key"`
	Client    int    `json:"client"`
	Token     uint64 `json:"token"`
	Write     bool   `json:"write"`
	Stale     bool   `json:"stale"` // performed after the client's own lease ended
	Accepted  bool   `json:"accepted"`
	MaxBefore uint64 `json:"max_before"` // highest token the resource had seen
	Base      int64  `json:"base"`       // writes: the value the client read
	Before    int64  `json:"before"`     // the resource's value before this access
	At        int64  `json:"at"`
	LeaseEnd  int64  `json:"lease_end"`
}

// History records operations, faults and resource accesses against one
// monotonic clock. It is safe for concurrent use.
type History struct {
	start time.Time

	mu       sync.Mutex
	ops      []Op
	events   []Event
	accesses []Access
}

// NewHistory starts a history; its clock starts now.
func NewHistory() *History { return &History{start: time.Now()} }

// Now returns the time since the history started, in nanoseconds, from the
// monotonic clock.
func (h *History) Now() int64 { return int64(time.Since(h.start)) }

// Begin records the invocation of op (its Call is set to now) and returns
// its id for End.
func (h *History) Begin(op Op) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	op.ID = len(h.ops)
	op.Call = h.Now()
	h.ops = append(h.ops, op)
	return op.ID
}

// End records the completion of operation id with result r.
func (h *History) End(id int, r Result) Op {
	now := h.Now()
	h.mu.Lock()
	defer h.mu.Unlock()
	op := &h.ops[id]
	op.Return = now
	op.Outcome, op.Token, op.Holder, op.Err = r.Outcome, r.Token, r.Holder, r.Err
	return *op
}

// AddEvent records the start of an event and returns its index.
func (h *History) AddEvent(kind, detail string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.events = append(h.events, Event{Kind: kind, Detail: detail, Start: h.Now()})
	return len(h.events) - 1
}

// EndEvent records the end of event i, appending to its detail.
func (h *History) EndEvent(i int, detail string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.events[i].End = h.Now()
	if detail != "" {
		if h.events[i].Detail != "" {
			h.events[i].Detail += "; "
		}
		h.events[i].Detail += detail
	}
}

func (h *History) addAccess(a Access) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.accesses = append(h.accesses, a)
}

// Ops returns a copy of the operations, completed or not, in invoke order.
func (h *History) Ops() []Op {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Op(nil), h.ops...)
}

// Events returns a copy of the events.
func (h *History) Events() []Event {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Event(nil), h.events...)
}

// Accesses returns a copy of the resource accesses.
func (h *History) Accesses() []Access {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Access(nil), h.accesses...)
}

// Save writes the history as JSON to path.
func (h *History) Save(path string) error {
	h.mu.Lock()
	doc := struct {
		Note     string   `json:"note"`
		Ops      []Op     `json:"ops"`
		Events   []Event  `json:"events"`
		Accesses []Access `json:"accesses"`
	}{
		Note:     "times are nanoseconds since the run started (one monotonic clock); return 0 = never completed",
		Ops:      h.ops,
		Events:   h.events,
		Accesses: h.accesses,
	}
	b, err := json.MarshalIndent(doc, "", " ")
	h.mu.Unlock()
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

// LoadHistory reads a history saved by Save.
func LoadHistory(path string) (*History, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var doc struct {
		Ops      []Op     `json:"ops"`
		Events   []Event  `json:"events"`
		Accesses []Access `json:"accesses"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &History{ops: doc.Ops, events: doc.Events, accesses: doc.Accesses}, nil
}

// byKey groups completed operations by key, each group in invoke order.
func byKey(ops []Op) map[string][]Op {
	out := map[string][]Op{}
	for _, op := range ops {
		out[op.Key] = append(out[op.Key], op)
	}
	for _, g := range out {
		sort.SliceStable(g, func(i, j int) bool { return g[i].Call < g[j].Call })
	}
	return out
}
