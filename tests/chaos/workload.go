//go:build unix

package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"time"
)

// keySpec is one hot key and the TTL its clients use.
type keySpec struct {
	name string
	ttl  time.Duration
}

// actor issues operations as one client id; it keeps one connection per
// node and protocol.
type actor struct {
	r     *runner
	id    int
	owner string
	rng   *rand.Rand
	resp  map[int]*respClient
	http  map[int]*httpClient
}

func newActor(r *runner, id int, owner string) *actor {
	return &actor{r: r, id: id, owner: owner, rng: rand.New(rand.NewPCG(uint64(r.cfg.Seed), uint64(id)+1)),
		resp: map[int]*respClient{}, http: map[int]*httpClient{}}
}

func (a *actor) client(node int, proto string) lockClient {
	nd := a.r.c.nodes[node]
	if proto == "http" {
		if a.http[node] == nil {
			a.http[node] = newHTTPClient(nd.httpAddr(), a.r.cfg.OpTimeout)
		}
		return a.http[node]
	}
	if a.resp[node] == nil {
		a.resp[node] = &respClient{addr: nd.respAddr(), timeout: a.r.cfg.OpTimeout}
	}
	return a.resp[node]
}

func (a *actor) close() {
	for _, c := range a.resp {
		c.close()
	}
	for _, c := range a.http {
		c.close()
	}
}

// do records op (sent to node over proto) around f.
func (a *actor) do(node int, proto string, op Op, f func(lockClient) Result) Op {
	op.Client, op.Owner, op.Node, op.Proto = a.id, a.owner, a.r.c.nodes[node].id, proto
	id := a.r.h.Begin(op)
	return a.r.h.End(id, f(a.client(node, proto)))
}

func (a *actor) acquire(node int, proto string, k keySpec, wait time.Duration) Op {
	return a.do(node, proto, Op{Kind: KindAcquire, Key: k.name, TTL: k.ttl, Wait: wait},
		func(c lockClient) Result { return c.acquire(k.name, a.owner, k.ttl, wait) })
}

func (a *actor) renew(node int, proto string, k keySpec, token uint64) Op {
	return a.do(node, proto, Op{Kind: KindRenew, Key: k.name, TTL: k.ttl, ArgToken: token},
		func(c lockClient) Result { return c.renew(k.name, a.owner, k.ttl, token) })
}

func (a *actor) release(node int, proto string, k keySpec, token uint64) Op {
	return a.do(node, proto, Op{Kind: KindRelease, Key: k.name, ArgToken: token},
		func(c lockClient) Result { return c.release(k.name, a.owner, token) })
}

func (a *actor) info(node int, proto string, key string) Op {
	return a.do(node, proto, Op{Kind: KindInfo, Key: key},
		func(c lockClient) Result { return c.info(key) })
}

// sleep waits d or until ctx ends; it reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func between(rng *rand.Rand, lo, hi time.Duration) time.Duration {
	return lo + time.Duration(rng.Int64N(int64(hi-lo)+1))
}

// worker contends for one key: acquire (sometimes with WAIT), a fenced
// read-modify-write of the resource while its own lease lasts, then renew,
// re-acquire or release. It stays on one node until a request fails, then
// moves to another. A worker whose stall flag is set (the paused-holder
// fault) sleeps past its lease in the middle of its critical section and
// then writes anyway, as a client paused by GC would.
type worker struct {
	*actor
	key   keySpec
	proto string
	home  int

	held     bool
	token    uint64
	leaseEnd int64 // Call of the last successful acquire/renew + TTL

	holding atomic.Bool // read by the nemesis
	stall   atomic.Bool // set by the nemesis
}

// margin is how much of its lease a worker keeps in reserve: it does not
// start an access with less than this left.
func (w *worker) margin() int64 { return int64(w.key.ttl / 5) }

func (w *worker) note(op Op) {
	if op.Outcome == Unknown || op.Outcome == Error {
		w.home = w.rng.IntN(len(w.r.c.nodes))
	}
}

func (w *worker) run(ctx context.Context) {
	defer w.close()
	for ctx.Err() == nil {
		if w.held {
			w.holdStep(ctx)
		} else {
			w.acquireStep(ctx)
		}
		w.holding.Store(w.held)
		if w.rng.Float64() < 0.15 {
			w.info(w.rng.IntN(len(w.r.c.nodes)), w.proto, w.key.name)
		}
		sleep(ctx, between(w.rng, 5*time.Millisecond, 25*time.Millisecond))
	}
	w.holding.Store(false)
}

func (w *worker) acquireStep(ctx context.Context) {
	var wait time.Duration
	if w.rng.Float64() < 0.4 {
		wait = between(w.rng, 100*time.Millisecond, w.key.ttl)
	}
	op := w.acquire(w.home, w.proto, w.key, wait)
	w.note(op)
	switch op.Outcome {
	case OK:
		w.held, w.token, w.leaseEnd = true, op.Token, op.Call+int64(w.key.ttl)
	case Fail:
		sleep(ctx, between(w.rng, 10*time.Millisecond, 60*time.Millisecond))
	default:
		// Unknown: the next acquire (same owner) tells; Error: back off.
		sleep(ctx, between(w.rng, 50*time.Millisecond, 200*time.Millisecond))
	}
}

func (w *worker) holdStep(ctx context.Context) {
	if !w.critical(ctx) {
		if w.rng.Float64() < 0.5 {
			w.note(w.release(w.home, w.proto, w.key, w.token))
		}
		w.held = false
		return
	}
	switch p := w.rng.Float64(); {
	case p < 0.45:
		op := w.renew(w.home, w.proto, w.key, w.token)
		w.note(op)
		switch op.Outcome {
		case OK:
			w.leaseEnd = op.Call + int64(w.key.ttl)
		case Fail:
			w.held = false
		}
	case p < 0.85:
		w.note(w.release(w.home, w.proto, w.key, w.token))
		w.held = false // whatever the answer: the client has let go
	default:
		op := w.acquire(w.home, w.proto, w.key, 0) // same owner: extends
		w.note(op)
		switch op.Outcome {
		case OK:
			w.token, w.leaseEnd = op.Token, op.Call+int64(w.key.ttl)
		case Fail:
			w.held = false
		}
	}
}

// critical does one fenced read-modify-write. It returns false when the
// client's lease is (nearly) over, so it no longer holds the lock.
func (w *worker) critical(ctx context.Context) bool {
	if w.r.h.Now() >= w.leaseEnd-w.margin() {
		return false
	}
	v, ok := w.r.res.access(w.key.name, w.id, w.token, false, 0, w.leaseEnd)
	if !ok {
		return false
	}
	sleep(ctx, between(w.rng, 0, 10*time.Millisecond))
	if w.stall.CompareAndSwap(true, false) {
		ev := w.r.h.AddEvent("holder-stalled", fmt.Sprintf("c%d (%s) holding %s token %d stalls past its lease", w.id, w.owner, w.key.name, w.token))
		sleep(ctx, time.Duration(w.leaseEnd-w.r.h.Now())+w.key.ttl/2)
		_, ok := w.r.res.access(w.key.name, w.id, w.token, true, v, w.leaseEnd)
		w.r.h.EndEvent(ev, fmt.Sprintf("stale write accepted=%v", ok))
		return true // it still believes it holds the lock: renew/release will tell
	}
	if w.r.h.Now() >= w.leaseEnd-w.margin() {
		return false
	}
	w.r.res.access(w.key.name, w.id, w.token, true, v, w.leaseEnd)
	return true
}

// reader reads one key through every node in turn, over both protocols, so
// a node that answers from stale state is read from too.
func (a *actor) reader(ctx context.Context, key string) {
	defer a.close()
	for i := 0; ctx.Err() == nil; i++ {
		proto := "resp"
		if i%2 == 1 {
			proto = "http"
		}
		a.info(i%len(a.r.c.nodes), proto, key)
		sleep(ctx, between(a.rng, 15*time.Millisecond, 45*time.Millisecond))
	}
}
