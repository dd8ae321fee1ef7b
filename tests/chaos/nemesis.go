//go:build unix

package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"syscall"
	"time"
)

// The faults the nemesis can inject. Each one is applied, held for a
// seeded duration and undone before the next one starts.
const (
	FaultKillLeader     = "kill-leader"    // kill -9 the leader, restart it
	FaultKillRandom     = "kill-random"    // kill -9 one node, restart it
	FaultKillMajority   = "kill-majority"  // kill -9 a majority, restart them
	FaultKillAll        = "kill-all"       // kill -9 every node, restart, check durability
	FaultPauseLeader    = "pause-leader"   // SIGSTOP the leader past the election timeout, SIGCONT
	FaultStrobe         = "strobe"         // SIGSTOP/SIGCONT random nodes in short bursts (GC-like stalls, a starved machine)
	FaultIsolateLeader  = "isolate-leader" // cut every link to and from the leader
	FaultIsolateOne     = "isolate-one"    // cut every link to and from one follower
	FaultHalves         = "halves"         // split the nodes in two random groups
	FaultOneWay         = "one-way"        // cut links in one direction only
	FaultClock          = "clock"          // jump nodes' wall clocks (either way)
	FaultClockForward   = "clock-forward"  // ever larger forward jumps on every node
	FaultPauseHolder    = "pause-holder"   // a lock holder stalls past its TTL, then writes
	faultWeightsDefault = "kill-leader,kill-random,kill-majority,kill-all,pause-leader,strobe,isolate-leader,isolate-one,halves,one-way,clock,pause-holder"
)

// AllFaults lists every fault the nemesis knows, for flag help.
var AllFaults = []string{FaultKillLeader, FaultKillRandom, FaultKillMajority, FaultKillAll, FaultPauseLeader,
	FaultStrobe, FaultIsolateLeader, FaultIsolateOne, FaultHalves, FaultOneWay, FaultClock, FaultClockForward, FaultPauseHolder}

// parseFaults parses "kind[:weight],..." ("" or "all" = the default mix).
func parseFaults(s string) ([]string, error) {
	if s == "" || s == "all" {
		s = faultWeightsDefault
	}
	known := map[string]bool{}
	for _, f := range AllFaults {
		known[f] = true
	}
	var out []string
	for _, item := range strings.Split(s, ",") {
		name, w, _ := strings.Cut(strings.TrimSpace(item), ":")
		if !known[name] {
			return nil, fmt.Errorf("unknown fault %q (known: %s)", name, strings.Join(AllFaults, ", "))
		}
		n := 1
		if w != "" {
			if _, err := fmt.Sscan(w, &n); err != nil || n < 1 || n > 100 {
				return nil, fmt.Errorf("fault %q: bad weight %q", name, w)
			}
		}
		for i := 0; i < n; i++ {
			out = append(out, name)
		}
	}
	return out, nil
}

// nemesis injects faults from a seeded schedule: the weighted fault list
// is shuffled and dealt in order, reshuffled when used up, so a run of N
// faults covers every kind before repeating one. Gaps and hold times are
// drawn from the same seeded source; only the nodes a fault hits (the
// current leader, say) depend on the run.
type nemesis struct {
	r      *runner
	rng    *rand.Rand
	faults []string // weighted: a kind appears once per unit of weight
	deck   []string
	skew   time.Duration
}

// next deals the next fault kind.
func (n *nemesis) next() string {
	if len(n.deck) == 0 {
		n.deck = append([]string(nil), n.faults...)
		n.rng.Shuffle(len(n.deck), func(i, j int) { n.deck[i], n.deck[j] = n.deck[j], n.deck[i] })
	}
	kind := n.deck[0]
	n.deck = n.deck[1:]
	return kind
}

// run injects faults until ctx ends; the fault in progress is undone.
func (n *nemesis) run(ctx context.Context) {
	for {
		if !sleep(ctx, between(n.rng, 200*time.Millisecond, time.Second)) {
			return
		}
		kind := n.next()
		hold := between(n.rng, 500*time.Millisecond, 2500*time.Millisecond)
		n.inject(ctx, kind, hold)
	}
}

// inject applies one fault, holds it (bounded by ctx) and undoes it.
func (n *nemesis) inject(ctx context.Context, kind string, hold time.Duration) {
	r, c := n.r, n.r.c
	ev := r.h.AddEvent(kind, "")
	detail := ""
	defer func() { r.h.EndEvent(ev, detail) }()
	nodes := len(c.nodes)
	leader := func() int {
		if l := c.leader(); l >= 0 {
			return l
		}
		return n.rng.IntN(nodes)
	}
	switch kind {
	case FaultKillLeader, FaultKillRandom, FaultKillMajority:
		var victims []int
		switch kind {
		case FaultKillLeader:
			victims = []int{leader()}
		case FaultKillRandom:
			victims = []int{n.rng.IntN(nodes)}
		default:
			victims = n.rng.Perm(nodes)[:nodes/2+1]
		}
		for _, i := range victims {
			c.kill(i)
		}
		detail = "killed " + n.names(victims)
		sleep(ctx, hold)
		for _, i := range victims {
			if err := c.start(i); err != nil {
				detail += fmt.Sprintf("; restart %s: %v", c.nodes[i].id, err)
			}
		}
	case FaultKillAll:
		detail = r.killAll(ctx, min(hold, time.Second))
	case FaultPauseLeader:
		l := leader()
		d := max(hold, 3*r.cfg.ElectionTimeout)
		c.signal(l, syscall.SIGSTOP)
		detail = fmt.Sprintf("paused %s for %s", c.nodes[l].id, d.Round(time.Millisecond))
		sleep(ctx, d)
		c.signal(l, syscall.SIGCONT)
	case FaultStrobe:
		end := time.Now().Add(hold)
		stalls := 0
		for time.Now().Before(end) && ctx.Err() == nil {
			i := n.rng.IntN(nodes)
			c.signal(i, syscall.SIGSTOP)
			sleep(ctx, between(n.rng, 20*time.Millisecond, 2*r.cfg.ElectionTimeout))
			c.signal(i, syscall.SIGCONT)
			stalls++
			sleep(ctx, between(n.rng, 0, r.cfg.ElectionTimeout))
		}
		detail = fmt.Sprintf("%d short stalls", stalls)
	case FaultIsolateLeader, FaultIsolateOne:
		var i int
		if kind == FaultIsolateLeader {
			i = leader()
		} else {
			i = n.follower(leader())
		}
		mode := n.cutMode()
		rest := others(nodes, []int{i})
		c.setLinks([]int{i}, rest, mode)
		c.setLinks(rest, []int{i}, mode)
		detail = fmt.Sprintf("isolated %s (%s)", c.nodes[i].id, mode)
		sleep(ctx, hold)
		c.setLinks([]int{i}, rest, linkUp)
		c.setLinks(rest, []int{i}, linkUp)
	case FaultHalves:
		perm := n.rng.Perm(nodes)
		a, b := perm[:nodes/2], perm[nodes/2:]
		mode := n.cutMode()
		c.setLinks(a, b, mode)
		c.setLinks(b, a, mode)
		detail = fmt.Sprintf("split %s | %s (%s)", n.names(a), n.names(b), mode)
		sleep(ctx, hold)
		c.setLinks(a, b, linkUp)
		c.setLinks(b, a, linkUp)
	case FaultOneWay:
		// Either the leader cannot send (its followers elect a new
		// leader but it hears them), or one random link goes dark.
		from, to := []int{leader()}, []int(nil)
		if n.rng.IntN(2) == 0 {
			to = others(nodes, from)
		} else {
			to = []int{n.follower(from[0])}
		}
		mode := n.cutMode()
		c.setLinks(from, to, mode)
		detail = fmt.Sprintf("cut %s -> %s (%s)", n.names(from), n.names(to), mode)
		sleep(ctx, hold)
		c.setLinks(from, to, linkUp)
	case FaultClock:
		jumps := []time.Duration{time.Hour, -time.Hour, 10 * time.Minute, -10 * time.Minute, 30 * time.Second, -30 * time.Second, 24 * time.Hour}
		var targets []int
		if n.rng.IntN(2) == 0 {
			targets = []int{leader()}
		} else {
			targets = n.rng.Perm(nodes)[:1+n.rng.IntN(nodes)]
		}
		var parts []string
		for _, i := range targets {
			d := jumps[n.rng.IntN(len(jumps))]
			c.setSkew(i, d)
			parts = append(parts, fmt.Sprintf("%s%+v", c.nodes[i].id, d))
		}
		detail = "wall clocks " + strings.Join(parts, " ")
		sleep(ctx, hold)
		for _, i := range targets {
			c.setSkew(i, 0)
		}
	case FaultClockForward:
		// Never undone: each jump goes further ahead, on every node.
		n.skew += between(n.rng, 5*time.Minute, time.Hour).Round(time.Minute)
		for i := range c.nodes {
			c.setSkew(i, n.skew)
		}
		detail = fmt.Sprintf("wall clocks of every node now %+v", n.skew)
		sleep(ctx, hold)
	case FaultPauseHolder:
		detail = n.pauseHolder(ctx, hold)
	}
}

// pauseHolder asks a worker that holds its lock to stall past its lease.
func (n *nemesis) pauseHolder(ctx context.Context, hold time.Duration) string {
	deadline := time.Now().Add(hold)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		ws := n.r.workers
		for _, i := range n.rng.Perm(len(ws)) {
			if w := ws[i]; w.holding.Load() {
				w.stall.Store(true)
				return fmt.Sprintf("asked c%d (%s) to stall", w.id, w.key.name)
			}
		}
		sleep(ctx, 20*time.Millisecond)
	}
	return "no holder found"
}

// cutMode picks how a cut link behaves: swallowing bytes (timeouts) or
// refusing connections (fast errors).
func (n *nemesis) cutMode() linkState {
	if n.rng.IntN(3) == 0 {
		return linkRefuse
	}
	return linkBlackhole
}

// follower returns a node other than leader.
func (n *nemesis) follower(leader int) int {
	o := others(len(n.r.c.nodes), []int{leader})
	return o[n.rng.IntN(len(o))]
}

func (n *nemesis) names(idx []int) string {
	var s []string
	for _, i := range idx {
		s = append(s, n.r.c.nodes[i].id)
	}
	return strings.Join(s, ",")
}

// others returns the node indexes in [0,n) not in not.
func others(n int, not []int) []int {
	skip := map[int]bool{}
	for _, i := range not {
		skip[i] = true
	}
	var out []int
	for i := 0; i < n; i++ {
		if !skip[i] {
			out = append(out, i)
		}
	}
	return out
}
