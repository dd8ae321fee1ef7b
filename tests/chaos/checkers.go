//go:build unix

package chaos

import (
	"fmt"
	"math"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"
)

// check runs the offline checkers over the recorded history.
func (r *runner) check(rep *Report) {
	ops := r.h.Ops()
	rep.Ops, rep.OpsByKind, rep.Faults = map[Outcome]int{}, map[Kind]int{}, map[string]int{}
	for _, op := range ops {
		rep.Ops[op.Outcome]++
		rep.OpsByKind[op.Kind]++
	}
	for _, ev := range r.h.Events() {
		rep.Faults[ev.Kind]++
	}
	ten := tenures(ops)
	r.checkLinearizable(ops, rep)
	checkMutex(ten, rep)
	checkReads(ops, ten, rep)
	checkTokens(ops, rep)
	checkResource(r.h.Accesses(), rep)
	r.checkDurability(ops, ten, rep)
}

// checkLinearizable is checker 1: porcupine with the lock model, one key at
// a time (in parallel). An Illegal or timed-out key gets an HTML
// visualisation, with the faults drawn on the same timeline.
func (r *runner) checkLinearizable(ops []Op, rep *Report) {
	model := lockModel()
	groups := byKey(ops)
	var annotations []porcupine.Annotation
	for _, ev := range r.h.Events() {
		annotations = append(annotations, porcupine.Annotation{Tag: "nemesis", Start: ev.Start, End: max(ev.End, ev.Start),
			Description: ev.Kind, Details: ev.Detail, BackgroundColor: "#f5c2c2"})
	}
	rep.Linearizability = map[string]string{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for key, group := range groups {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			hist := toPorcupine(group, r.owners)
			res, info := porcupine.CheckOperationsVerbose(model, hist, r.cfg.LinTimeout)
			mu.Lock()
			rep.Linearizability[key] = fmt.Sprintf("%s (%d ops, %s)", res, len(hist), time.Since(start).Round(time.Millisecond))
			mu.Unlock()
			if res == porcupine.Ok {
				return
			}
			path := filepath.Join(r.cfg.Dir, "linearizability-"+key+".html")
			info.AddAnnotations(annotations)
			if err := porcupine.VisualizePath(model, info, path); err != nil {
				path = fmt.Sprintf("(visualisation failed: %v)", err)
			}
			switch res {
			case porcupine.Illegal:
				rep.violate("linearizability", "key %s: history is not linearizable; see %s", key, path)
			default:
				rep.mu.Lock()
				rep.Inconclusive = append(rep.Inconclusive, fmt.Sprintf("linearizability of %s: porcupine gave up after %s (%s)", key, r.cfg.LinTimeout, path))
				rep.mu.Unlock()
			}
		}()
	}
	wg.Wait()
}

// tenure is a stretch during which a client believed it held a key: from
// learning of the grant (acquire's return) to the end of its lease (the
// last successful acquire/renew's invoke + TTL) or its release's invoke,
// whichever came first.
type tenure struct {
	client   int
	owner    string
	key      string
	token    uint64
	start    int64
	leaseEnd int64
	end      int64
}

// tenures derives every client's tenures from its operations.
func tenures(ops []Op) []tenure {
	type ck struct {
		client int
		key    string
	}
	groups := map[ck][]Op{}
	for _, op := range ops {
		groups[ck{op.Client, op.Key}] = append(groups[ck{op.Client, op.Key}], op)
	}
	var out []tenure
	for _, g := range groups {
		sort.Slice(g, func(i, j int) bool { return g[i].Call < g[j].Call })
		var cur *tenure
		closeAt := func(t int64) {
			if cur != nil {
				cur.end = min(cur.leaseEnd, t)
				out = append(out, *cur)
				cur = nil
			}
		}
		for _, op := range g {
			switch {
			case (op.Kind == KindAcquire || op.Kind == KindRenew) && op.Outcome == OK:
				if cur != nil && cur.token == op.Token {
					cur.leaseEnd = max(cur.leaseEnd, op.Call+int64(op.TTL))
					continue
				}
				closeAt(op.Return)
				cur = &tenure{client: op.Client, owner: op.Owner, key: op.Key, token: op.Token, start: op.Return, leaseEnd: op.Call + int64(op.TTL)}
			case (op.Kind == KindAcquire || op.Kind == KindRenew) && op.Outcome == Fail:
				closeAt(op.Return)
			case op.Kind == KindRelease:
				closeAt(op.Call)
			}
		}
		closeAt(math.MaxInt64)
	}
	return out
}

// checkMutex is checker 2: no two clients' tenures of one key overlap, and
// no token is held by two clients.
func checkMutex(ten []tenure, rep *Report) {
	byKey := map[string][]tenure{}
	for _, t := range ten {
		if t.end > t.start {
			byKey[t.key] = append(byKey[t.key], t)
		}
	}
	for key, ts := range byKey {
		sort.Slice(ts, func(i, j int) bool { return ts[i].start < ts[j].start })
		found := 0
		for i := range ts {
			for j := i + 1; j < len(ts) && ts[j].start < ts[i].end && found < 10; j++ {
				a, b := ts[i], ts[j]
				if a.client != b.client {
					found++
					rep.violate("mutex", "key %s: %s held token %d in [%s, %s] while %s held token %d from %s",
						key, a.owner, a.token, sec(a.start), sec(a.end), b.owner, b.token, sec(b.start))
				}
			}
		}
	}
}

// checkReads is checker 2b: a read made entirely within a client's tenure
// must show that client holding the lock with its token (a stale or early
// "free" answer shows up here even when porcupine cannot decide).
func checkReads(ops []Op, ten []tenure, rep *Report) {
	byKey := map[string][]tenure{}
	for _, t := range ten {
		if t.end > t.start {
			byKey[t.key] = append(byKey[t.key], t)
		}
	}
	found := 0
	for _, op := range ops {
		if op.Kind != KindInfo || op.Outcome != OK || found >= 20 {
			continue
		}
		for _, t := range byKey[op.Key] {
			if t.start <= op.Call && op.Return <= t.end && (op.Holder != t.owner || op.Token != t.token) {
				found++
				shown := "free"
				if op.Holder != "" {
					shown = fmt.Sprintf("%s token %d", op.Holder, op.Token)
				}
				rep.violate("mutex", "key %s: read op %d via %s [%s, %s] shows %s, but %s held token %d in [%s, %s]",
					op.Key, op.ID, op.Node, sec(op.Call), sec(op.Return), shown, t.owner, t.token, sec(t.start), sec(t.end))
				break
			}
		}
	}
}

// checkTokens is checker 3a: a fencing token names one grant (one key, one
// owner), and tokens observed on a key never go down: if an operation that
// saw token A (acquire, renew or read) completed before one that saw token
// B was invoked, then A <= B.
func checkTokens(ops []Op, rep *Report) {
	type grant struct{ key, owner string }
	seen := map[uint64]grant{}
	var obs []Op
	for _, op := range ops {
		if op.Outcome != OK || op.Token == 0 {
			continue
		}
		g := grant{op.Key, op.Owner}
		if op.Kind == KindInfo {
			g.owner = op.Holder
		}
		if prev, ok := seen[op.Token]; ok && prev != g {
			rep.violate("fencing", "token %d granted twice: %s/%s and %s/%s (op %d)", op.Token, prev.key, prev.owner, g.key, g.owner, op.ID)
		}
		seen[op.Token] = g
		obs = append(obs, op)
	}
	for key, group := range byKey(obs) {
		byReturn := append([]Op(nil), group...)
		sort.Slice(byReturn, func(i, j int) bool { return byReturn[i].Return < byReturn[j].Return })
		var best Op
		next, found := 0, 0
		for _, op := range group { // in invoke order
			for next < len(byReturn) && byReturn[next].Return < op.Call {
				if byReturn[next].Token > best.Token {
					best = byReturn[next]
				}
				next++
			}
			if op.Token < best.Token && found < 10 {
				found++
				rep.violate("fencing", "key %s: op %d (%s by %s via %s, invoked %s) saw token %d after op %d (%s by %s, completed %s) saw token %d",
					key, op.ID, op.Kind, op.Owner, op.Node, sec(op.Call), op.Token, best.ID, best.Kind, best.Owner, sec(best.Return), best.Token)
			}
		}
	}
}

// checkResource is checker 3b: the fenced resource never accepted a write
// based on a stale read (lost update), and never turned away a holder that
// was within its own lease (which would mean a newer token existed while
// its lease was still running). Accesses by paused holders after their
// lease are counted; fencing must turn them away once a newer holder has
// touched the resource.
func checkResource(acc []Access, rep *Report) {
	lost, refused := 0, 0
	for i, a := range acc {
		if a.Stale {
			rep.StaleAccesses++
			if !a.Accepted {
				rep.StaleRejected++
			}
			// Once another client has used the resource after this
			// client's lease ended, the stale write must be turned away.
			for _, b := range acc[:i] {
				if a.Write && a.Accepted && b.Key == a.Key && b.Client != a.Client && b.Accepted && b.At > a.LeaseEnd {
					rep.violate("fencing", "%s: stale write by c%d with token %d at %s was accepted, though c%d used token %d at %s after that lease ended (%s)",
						a.Key, a.Client, a.Token, sec(a.At), b.Client, b.Token, sec(b.At), sec(a.LeaseEnd))
					break
				}
			}
			continue
		}
		if a.Accepted && a.Write && a.Base != a.Before && lost < 10 {
			lost++
			rep.violate("fencing", "lost update on %s: c%d wrote with token %d at %s on a read of %d, but the value was %d",
				a.Key, a.Client, a.Token, sec(a.At), a.Base, a.Before)
		}
		if !a.Accepted && refused < 10 {
			refused++
			rep.violate("fencing", "%s: c%d was refused with token %d at %s, within its lease (until %s): the resource had seen token %d",
				a.Key, a.Client, a.Token, sec(a.At), sec(a.LeaseEnd), a.MaxBefore)
		}
	}
}

// checkDurability is checker 4, for every kill-all: the probe lock taken
// just before it is still held with its token afterwards; a grant made
// after the restart has a token above every token acknowledged before the
// kill; and a hot key that a client believed it held at the kill, with more
// lease left than the time from restart to the audit read, is still held
// by that client with that token (the cluster clock stops while every node
// is down, so leases only get longer).
func (r *runner) checkDurability(ops []Op, ten []tenure, rep *Report) {
	for n, k := range r.killAlls {
		if k.ReadyAt == 0 {
			r.timing(rep, k.KillAt, "liveness", "kill-all #%d: the cluster did not become ready within 30s of the restart", n)
			continue
		}
		if k.ProbeToken != 0 {
			switch s := k.ProbeSeen; {
			case s == nil || s.Outcome != OK:
				rep.violate("durability", "kill-all #%d: probe %s could not be read back after the restart", n, k.ProbeKey)
			case s.Holder != r.auditor.owner || s.Token != k.ProbeToken:
				rep.violate("durability", "kill-all #%d: probe %s held with token %d before, after restart holder %q token %d",
					n, k.ProbeKey, k.ProbeToken, s.Holder, s.Token)
			}
		}
		var maxAck uint64
		seenBefore := map[uint64]bool{}
		pending := map[string]bool{} // owner/key with an unknown acquire before the kill
		for _, op := range ops {
			if op.Return != 0 && op.Return < k.KillAt && op.Outcome == OK {
				maxAck = max(maxAck, op.Token)
			}
			if op.Call < k.KillAt && op.Token != 0 {
				seenBefore[op.Token] = true
			}
			if op.Kind == KindAcquire && op.Outcome == Unknown && op.Call < k.KillAt && op.Call > k.KillAt-int64(30*time.Second) {
				pending[op.Owner+"/"+op.Key] = true
			}
		}
		for _, op := range ops {
			if op.Kind == KindAcquire && op.Outcome == OK && op.Call > k.RestartAt && !seenBefore[op.Token] &&
				!pending[op.Owner+"/"+op.Key] && op.Token <= maxAck {
				rep.violate("durability", "kill-all #%d: op %d granted token %d after the restart, not above token %d acknowledged before",
					n, op.ID, op.Token, maxAck)
			}
		}
		r.checkAudits(n, k, ops, ten, rep)
	}
}

// checkAudits checks the auditor's reads of the hot keys after kill-all n.
func (r *runner) checkAudits(n int, k killAllRecord, ops []Op, ten []tenure, rep *Report) {
	for _, a := range ops {
		if a.Client != r.auditor.id || a.Kind != KindInfo || a.Outcome != OK || a.Call < k.ReadyAt || a.Call > k.ReadyAt+int64(10*time.Second) {
			continue
		}
		for _, t := range ten {
			if t.key != a.Key || t.start >= k.KillAt || t.end <= k.KillAt || a.Return-k.RestartAt >= t.leaseEnd-k.KillAt {
				continue
			}
			released := false
			for _, op := range ops {
				if op.Client == t.client && op.Key == t.key && op.Kind == KindRelease && op.Call >= k.KillAt && op.Call <= a.Return {
					released = true
				}
			}
			if !released && (a.Holder != t.owner || a.Token != t.token) {
				rep.violate("durability", "kill-all #%d: %s held %s with token %d and %s of lease left at the kill, but %s after the restart read holder %q token %d",
					n, t.owner, t.key, t.token, time.Duration(t.leaseEnd-k.KillAt).Round(time.Millisecond), sec(a.Return), a.Holder, a.Token)
			}
		}
	}
}

// sec formats a history time as seconds.
func sec(t int64) string {
	if t == math.MaxInt64 {
		return "+inf"
	}
	return fmt.Sprintf("%.3fs", float64(t)/1e9)
}
