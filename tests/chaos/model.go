//go:build unix

package chaos

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
)

// The porcupine model of one lock (histories are partitioned by key).
//
// The state is who holds the lock, with which fencing token, the highest
// token granted so far, and the earliest instant the current lease may run
// out. A lease granted or renewed by an operation invoked at Call with a
// TTL cannot end before Call+TTL: the leader stamps the lease after the
// request arrives and its cluster clock never runs faster than the
// harness's (same host, same CLOCK_MONOTONIC), and after a failover it
// pauses. So a step may first let the lease expire, but only if the
// operation returned at or after that instant. (A client uses one TTL per
// key, so a renewal never shortens a lease.)
//
// Floor is a lower bound on the current linearization point: the largest
// Call linearized so far and any expiry instant used. An operation that
// returned before Floor cannot come next.
//
// Operations of unknown outcome return at +inf. Rather than make porcupine
// search for the point where such an operation took effect (exponential
// when there are many), its effect is kept pending in the state and may
// fire before a later step: an acquire grants the lock to its client
// (token unknown until an operation reveals it) when it is free, a release
// frees the lock if its client still holds that token. A fired acquire
// stays pending (it may, permissively, fire again). An unknown
// renew can only lengthen a lease, so it is a no-op here (the model stays
// permissive). A pending effect is dropped pendingHorizon after its
// invocation, or once a newer grant has made a release moot. The state is
// a set of possible lock states; one that differs from another only by
// fewer pending effects allows nothing more, so it is dropped.

// pendingHorizon is how long after its invocation an operation of unknown
// outcome may still take effect. Every fault heals within seconds and a
// forwarded request gives up after 10s plus its WAIT, so this is generous;
// if the server ever applied a request later, the checker would report a
// violation (never hide one).
const pendingHorizon = int64(30 * time.Second)

// lockInput is an operation's input.
type lockInput struct {
	Kind   Kind
	Client int
	TTL    int64  // ns
	Token  uint64 // renew/release TOKEN argument; 0 = none
	Call   int64
	Return int64 // math.MaxInt64 when the outcome is unknown
}

// lockOutput is an operation's output.
type lockOutput struct {
	Outcome Outcome // OK, Fail or Unknown
	Token   uint64  // acquire/renew token, info token
	Holder  int     // info: the holder's client id, -1 when free, -2 a stranger
}

// lockState is one possible state of a lock. It is comparable with ==.
type lockState struct {
	Holder   int // client id, -1 free
	Token    uint64
	MaxToken uint64
	Deadline int64 // the lease cannot end before this
	Floor    int64
	Pending  string // pending effects, encoded sorted (see pendings)
}

// pending is an effect that an operation of unknown outcome may still have.
type pending struct {
	Kind   Kind // KindAcquire or KindRelease
	Client int
	Call   int64
	TTL    int64
	Token  uint64
}

// pendingSize is the size of one encoded pending effect.
const pendingSize = 8 + 1 + 4 + 8 + 8

func (p pending) encode() string {
	var b [pendingSize]byte
	binary.BigEndian.PutUint64(b[0:], uint64(p.Call))
	b[8] = p.Kind[0]
	binary.BigEndian.PutUint32(b[9:], uint32(int32(p.Client)))
	binary.BigEndian.PutUint64(b[13:], uint64(p.TTL))
	binary.BigEndian.PutUint64(b[21:], p.Token)
	return string(b[:])
}

func decodePending(r string) pending {
	p := pending{Call: int64(binary.BigEndian.Uint64([]byte(r[0:8]))), Client: int(int32(binary.BigEndian.Uint32([]byte(r[9:13])))),
		TTL: int64(binary.BigEndian.Uint64([]byte(r[13:21]))), Token: binary.BigEndian.Uint64([]byte(r[21:29]))}
	p.Kind = KindRelease
	if r[8] == KindAcquire[0] {
		p.Kind = KindAcquire
	}
	return p
}

// records splits the encoded pending effects.
func (s lockState) records() []string {
	out := make([]string, 0, len(s.Pending)/pendingSize)
	for i := 0; i+pendingSize <= len(s.Pending); i += pendingSize {
		out = append(out, s.Pending[i:i+pendingSize])
	}
	return out
}

// withPending returns s with the effect p added.
func (s lockState) withPending(p pending) lockState {
	recs := append(s.records(), p.encode())
	sort.Strings(recs)
	s.Pending = strings.Join(recs, "")
	return s
}

// without returns s without its i-th pending effect.
func (s lockState) without(i int) lockState {
	s.Pending = s.Pending[:i*pendingSize] + s.Pending[(i+1)*pendingSize:]
	return s
}

// retire drops pending effects that can no longer happen.
func (s lockState) retire() lockState {
	if s.Pending == "" {
		return s
	}
	var keep []string
	for _, r := range s.records() {
		p := decodePending(r)
		if p.Call < s.Floor-pendingHorizon || (p.Kind == KindRelease && p.Token != 0 && s.MaxToken > p.Token) {
			continue
		}
		keep = append(keep, r)
	}
	s.Pending = strings.Join(keep, "")
	return s
}

// tokenIs reports whether the holder's token may be t.
func (s lockState) tokenIs(t uint64) bool {
	return s.Token == t || (s.Token == 0 && t > s.MaxToken)
}

// holds reports whether client may hold the lock with token t (0: any).
func (s lockState) holds(client int, t uint64) bool {
	return s.Holder == client && (t == 0 || s.tokenIs(t))
}

// surelyHolds reports whether client certainly holds the lock with token t.
func (s lockState) surelyHolds(client int, t uint64) bool {
	return s.Holder == client && (t == 0 || s.Token == t)
}

// resolve returns s with its token now known to be t.
func (s lockState) resolve(t uint64) lockState {
	s.Token = t
	s.MaxToken = max(s.MaxToken, t)
	return s
}

func (s lockState) lease(in lockInput) lockState {
	s.Deadline = in.Call + in.TTL
	return s
}

// free returns s with the lock free.
func (s lockState) free() lockState {
	s.Holder, s.Token, s.Deadline = -1, 0, 0
	return s
}

// lockStep returns every state the lock may be in after the operation.
// The lease may first run out. Pending effects fire lazily: only when the
// operation cannot be explained without them, then a pending release and
// a pending acquire may fire (in that order) just before it. An effect
// nobody has observed can always be postponed to the first operation that
// depends on it: it has no other consequence (its lease lower bound is
// fixed by its invocation), so firing it later is never less permissive,
// and the state set stays small.
func lockStep(s lockState, in lockInput, out lockOutput) []lockState {
	floor := max(s.Floor, in.Call)
	if floor > in.Return {
		return nil
	}
	s.Floor = floor
	s = s.retire()
	pre := []lockState{s}
	if s.Holder >= 0 && s.Deadline <= in.Return {
		e := s.free()
		e.Floor = max(floor, s.Deadline)
		pre = append(pre, e)
	}
	var next []lockState
	for _, p := range pre {
		next = append(next, stepOne(p, in, out)...)
	}
	if len(next) > 0 || s.Pending == "" {
		return next
	}
	var fired []lockState
	for _, p := range pre {
		for i, r := range p.records() {
			if pd := decodePending(r); pd.Kind == KindRelease && p.holds(pd.Client, pd.Token) {
				q := p.without(i).free()
				q.MaxToken = max(q.MaxToken, pd.Token)
				fired = append(fired, q)
			}
		}
	}
	for _, p := range append(pre, fired...) {
		if p.Holder >= 0 {
			continue
		}
		// One grant per client with pending acquires, with the earliest
		// lease end among them. The entries stay: the model lets them fire
		// again, which is permissive but keeps the state set small.
		earliest := map[int]int64{}
		for _, r := range p.records() {
			if pd := decodePending(r); pd.Kind == KindAcquire {
				if d, ok := earliest[pd.Client]; !ok || pd.Call+pd.TTL < d {
					earliest[pd.Client] = pd.Call + pd.TTL
				}
			}
		}
		for client, d := range earliest {
			q := p
			q.Holder, q.Token, q.Deadline = client, 0, d
			fired = append(fired, q)
		}
	}
	for _, p := range fired {
		next = append(next, stepOne(p, in, out)...)
	}
	return next
}

func stepOne(c lockState, in lockInput, out lockOutput) []lockState {
	me := in.Client
	if out.Outcome == Unknown {
		switch in.Kind {
		case KindAcquire:
			return []lockState{c.withPending(pending{Kind: KindAcquire, Client: me, Call: in.Call, TTL: in.TTL})}
		case KindRelease:
			if in.Token != 0 && c.MaxToken > in.Token {
				return []lockState{c} // a newer grant exists: the release is moot
			}
			return []lockState{c.withPending(pending{Kind: KindRelease, Client: me, Call: in.Call, Token: in.Token})}
		}
		return []lockState{c}
	}
	switch in.Kind {
	case KindAcquire:
		switch {
		case out.Outcome == OK && c.Holder < 0 && out.Token > c.MaxToken:
			return []lockState{{Holder: me, Token: out.Token, MaxToken: out.Token, Deadline: in.Call + in.TTL, Floor: c.Floor, Pending: c.Pending}}
		case out.Outcome == OK && c.Holder == me && c.tokenIs(out.Token):
			return []lockState{c.resolve(out.Token).lease(in)}
		case out.Outcome == Fail && c.Holder >= 0 && c.Holder != me:
			return []lockState{c}
		}
	case KindRenew:
		switch {
		case out.Outcome == OK && c.holds(me, in.Token) && c.tokenIs(out.Token) && (in.Token == 0 || in.Token == out.Token):
			return []lockState{c.resolve(out.Token).lease(in)}
		case out.Outcome == Fail && !c.surelyHolds(me, in.Token):
			return []lockState{c}
		}
	case KindRelease:
		switch {
		case out.Outcome == OK && c.holds(me, in.Token):
			f := c.free()
			f.MaxToken = max(c.MaxToken, in.Token)
			return []lockState{f}
		case out.Outcome == Fail && !c.surelyHolds(me, in.Token):
			return []lockState{c}
		}
	case KindInfo:
		switch {
		case out.Holder == -1 && c.Holder < 0:
			return []lockState{c}
		case out.Holder >= 0 && c.Holder == out.Holder && c.tokenIs(out.Token):
			return []lockState{c.resolve(out.Token)}
		}
	}
	return nil
}

// canonical sorts, deduplicates and prunes a set of states: a state that
// equals another but for a subset of its pending effects is dropped.
func canonical(states []lockState) []lockState {
	type core struct {
		Holder          int
		Token, MaxToken uint64
		Deadline, Floor int64
	}
	groups := map[core][]lockState{}
	for _, s := range states {
		k := core{s.Holder, s.Token, s.MaxToken, s.Deadline, s.Floor}
		groups[k] = append(groups[k], s)
	}
	var out []lockState
	for _, g := range groups {
		sort.Slice(g, func(i, j int) bool { return len(g[i].Pending) > len(g[j].Pending) })
	next:
		for i, s := range g {
			for _, t := range g[:i] {
				if subset(s.Pending, t.Pending) {
					continue next
				}
			}
			out = append(out, s)
		}
	}
	sort.Slice(out, func(i, j int) bool { return less(out[i], out[j]) })
	return out
}

// subset reports whether every record of a is in b (both sorted).
func subset(a, b string) bool {
	j := 0
	for i := 0; i+pendingSize <= len(a); i += pendingSize {
		r := a[i : i+pendingSize]
		for j+pendingSize <= len(b) && b[j:j+pendingSize] < r {
			j += pendingSize
		}
		if j+pendingSize > len(b) || b[j:j+pendingSize] != r {
			return false
		}
	}
	return true
}

func less(a, b lockState) bool {
	switch {
	case a.Holder != b.Holder:
		return a.Holder < b.Holder
	case a.Token != b.Token:
		return a.Token < b.Token
	case a.MaxToken != b.MaxToken:
		return a.MaxToken < b.MaxToken
	case a.Deadline != b.Deadline:
		return a.Deadline < b.Deadline
	case a.Floor != b.Floor:
		return a.Floor < b.Floor
	}
	return a.Pending < b.Pending
}

func hashState(s lockState) uint64 {
	h := fnv.New64a()
	var b [40]byte
	binary.BigEndian.PutUint64(b[0:], uint64(s.Holder))
	binary.BigEndian.PutUint64(b[8:], s.Token)
	binary.BigEndian.PutUint64(b[16:], s.MaxToken)
	binary.BigEndian.PutUint64(b[24:], uint64(s.Deadline))
	binary.BigEndian.PutUint64(b[32:], uint64(s.Floor))
	h.Write(b[:])
	h.Write([]byte(s.Pending))
	return h.Sum64()
}

func describeState(s lockState) string {
	p := ""
	if n := len(s.Pending) / pendingSize; n > 0 {
		p = fmt.Sprintf(", %d pending", n)
	}
	if s.Holder < 0 {
		return fmt.Sprintf("free (max token %d%s)", s.MaxToken, p)
	}
	tok := fmt.Sprint(s.Token)
	if s.Token == 0 {
		tok = fmt.Sprintf(">%d?", s.MaxToken)
	}
	return fmt.Sprintf("c%d token %s until >=%.3fs%s", s.Holder, tok, float64(s.Deadline)/1e9, p)
}

// lockModel is the porcupine model, partitioned by key. Its state is a
// canonical set ([]lockState) of possible lock states.
func lockModel() porcupine.Model {
	return porcupine.Model{
		Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
			keys := map[string][]porcupine.Operation{}
			for _, op := range history {
				k := op.Metadata.(opMeta).Key
				keys[k] = append(keys[k], op)
			}
			names := make([]string, 0, len(keys))
			for k := range keys {
				names = append(names, k)
			}
			sort.Strings(names)
			out := make([][]porcupine.Operation, 0, len(keys))
			for _, k := range names {
				out = append(out, keys[k])
			}
			return out
		},
		Init: func() interface{} { return []lockState{{Holder: -1}} },
		Step: func(state, input, output interface{}) (bool, interface{}) {
			in, out := input.(lockInput), output.(lockOutput)
			var next []lockState
			for _, s := range state.([]lockState) {
				next = append(next, lockStep(s, in, out)...)
			}
			next = canonical(next)
			return len(next) > 0, next
		},
		Equal: func(a, b interface{}) bool {
			x, y := a.([]lockState), b.([]lockState)
			if len(x) != len(y) {
				return false
			}
			for i := range x {
				if x[i] != y[i] {
					return false
				}
			}
			return true
		},
		Hash: func(state interface{}) uint64 {
			var h uint64
			for _, s := range state.([]lockState) {
				h ^= hashState(s)
			}
			return h
		},
		DescribeOperation: describeOp,
		DescribeState: func(state interface{}) string {
			var parts []string
			for _, s := range state.([]lockState) {
				parts = append(parts, describeState(s))
			}
			return "{" + strings.Join(parts, " | ") + "}"
		},
		DescribeOperationMetadata: func(info interface{}) string {
			md := info.(opMeta)
			return fmt.Sprintf("op %d on %s via %s/%s %s", md.ID, md.Key, md.Node, md.Proto, md.Err)
		},
	}
}

// opMeta travels with each porcupine operation for partitioning and
// display.
type opMeta struct {
	ID    int
	Key   string
	Node  string
	Proto string
	Err   string
}

func describeOp(input, output interface{}) string {
	in, out := input.(lockInput), output.(lockOutput)
	arg := ""
	if in.Token != 0 {
		arg = fmt.Sprintf(" token=%d", in.Token)
	}
	res := string(out.Outcome)
	switch {
	case out.Outcome == OK && in.Kind == KindInfo && out.Holder == -1:
		res = "free"
	case out.Outcome == OK && in.Kind == KindInfo:
		res = fmt.Sprintf("c%d token=%d", out.Holder, out.Token)
	case out.Outcome == OK && out.Token != 0:
		res = fmt.Sprintf("token=%d", out.Token)
	}
	return fmt.Sprintf("c%d %s%s -> %s", in.Client, in.Kind, arg, res)
}

// toPorcupine converts a history into porcupine operations: definite
// errors and failed reads are left out (they changed nothing), unknown
// outcomes return at +inf.
func toPorcupine(ops []Op, owners map[string]int) []porcupine.Operation {
	var out []porcupine.Operation
	for _, op := range ops {
		outcome := op.Outcome
		if op.Return == 0 {
			outcome = Unknown
		}
		if outcome == Error || (op.Kind == KindInfo && outcome != OK) {
			continue
		}
		in := lockInput{Kind: op.Kind, Client: op.Client, TTL: int64(op.TTL), Token: op.ArgToken, Call: op.Call, Return: op.Return}
		res := lockOutput{Outcome: outcome, Token: op.Token, Holder: -1}
		if outcome == Unknown {
			in.Return = math.MaxInt64
			res.Token = 0
		}
		if op.Kind == KindInfo && op.Holder != "" {
			id, ok := owners[op.Holder]
			if !ok {
				id = -2
			}
			res.Holder = id
		}
		out = append(out, porcupine.Operation{
			ClientId: op.Client, Input: in, Call: op.Call, Output: res, Return: in.Return,
			Metadata: opMeta{ID: op.ID, Key: op.Key, Node: op.Node, Proto: op.Proto, Err: op.Err},
		})
	}
	return out
}
