package server

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/distlock/distlock/lockapi"
	"github.com/distlock/distlock/raftfsm"
)

// Packing: once the cluster's protocol version is 2 (every voter runs a
// build that reads batch entries), the leader packs the commands waiting
// at a moment into one raft entry, with at most packInFlight entries
// uncommitted at a time: while that one commits, the next commands gather
// for the next entry. One entry per command costs raft a log record, a
// replication message slot, an FSM call and a future each; packed, those
// costs are shared. Measured with tests/bench's raftceiling before this was
// built: hashicorp/raft alone went from 9.2-13.4k to 13.8-17.4k commands/s
// at 64 clients and from 24.6-31.8k to 47.8-52.3k at 256 on the reference
// machine. A lone command travels alone, in the plain format, at once.
//
// Under protocol version 1 every command is still its own entry, submitted
// as soon as it arrives (raft batches the entries into one append).
const (
	// packInFlight is how many packed entries may be uncommitted at once.
	// One measured best: 64 clients 9,068/9,297/7,868/9,081 cycles/s
	// against 8,032/8,058/7,025/8,686 with two (same minutes, alternating),
	// 256 clients equal or better, one client and WAIT handovers no worse:
	// fewer, larger entries leave more of two busy cores to everything else.
	packInFlight = 1
	// maxPack and maxPackBytes bound one packed entry. raft's log cache
	// keeps the last logCacheSize entries in memory, so these also bound
	// that: at most 32 MiB of entries.
	maxPack      = 512
	maxPackBytes = 64 << 10
	// packQueue is how many commands may wait for the packer.
	packQueue = 4096
)

// proposal is one command on its way into the log.
type proposal struct {
	data     []byte
	deadline time.Time // the caller's; zero for none
	done     chan struct{}
	res      raftfsm.Result
	err      error // from raft, or lockapi.ErrShuttingDown / ErrTimeout
	// then, when set, is called with the outcome in place of closing done
	// (applyAsync, notifyEarly); it must not block.
	then func()
}

// notifyEarly makes p call early with apply's outcome just before its
// caller is woken (applyNotify).
func (p *proposal) notifyEarly(early func(raftfsm.Result, error)) {
	p.then = func() {
		early(outcome(p.res, p.err))
		close(p.done)
	}
}

func (p *proposal) finish(res raftfsm.Result, err error) {
	p.res, p.err = res, err
	if p.then != nil {
		p.then()
		return
	}
	close(p.done)
}

// packer feeds proposals into raft in arrival order (see the comment at
// the top of this file).
type packer struct {
	in       chan *proposal
	slots    chan struct{}
	inflight sync.WaitGroup
	// stopped is closed once the loop has returned and every entry it
	// submitted has been answered: a proposal still unanswered then was
	// never submitted.
	stopped chan struct{}
}

func newPacker() *packer {
	return &packer{in: make(chan *proposal, packQueue), slots: make(chan struct{}, packInFlight), stopped: make(chan struct{})}
}

// propose hands p to the packer, then calls queued (it may be nil: the
// caller's pipeline lets its next command in) and waits for the outcome.
// An error means p was never submitted (ErrShuttingDown, ErrTimeout) or
// comes from raft.
func (n *Node) propose(ctx context.Context, p *proposal, queued func()) error {
	select {
	case n.pack.in <- p:
	case <-ctx.Done():
		return fmt.Errorf("%w before the command was submitted", lockapi.ErrTimeout)
	case <-n.pack.stopped:
		return lockapi.ErrShuttingDown
	}
	if queued != nil {
		queued()
	}
	select {
	case <-p.done:
		return p.err
	case <-n.pack.stopped:
		select {
		case <-p.done:
			return p.err
		default:
			return lockapi.ErrShuttingDown // still in the queue: never submitted
		}
	}
}

// packLoop takes proposals in arrival order and submits them until the
// node closes.
func (n *Node) packLoop() {
	defer close(n.pack.stopped)
	defer n.pack.inflight.Wait()
	for {
		var first *proposal
		select {
		case <-n.ctx.Done():
			return
		case first = <-n.pack.in:
		}
		if n.fsm.ClusterVersion() < 2 {
			n.submit([]*proposal{first}, false)
			continue
		}
		select {
		case n.pack.slots <- struct{}{}:
		case <-n.ctx.Done():
			first.finish(raftfsm.Result{}, lockapi.ErrShuttingDown)
			return
		}
		batch, size := []*proposal{first}, len(first.data)
	gather:
		for len(batch) < maxPack && size < maxPackBytes {
			select {
			case p := <-n.pack.in:
				batch = append(batch, p)
				size += len(p.data)
			default:
				break gather
			}
		}
		n.submit(batch, true)
	}
}

// submit proposes batch as one entry (a plain command when it holds one)
// and answers every proposal when the entry is applied; slot says the
// entry holds one of packer.slots, to give back then.
func (n *Node) submit(batch []*proposal, slot bool) {
	release := func() {
		if slot {
			<-n.pack.slots
		}
	}
	now := time.Now()
	timeout := time.Duration(0)
	live := batch[:0]
	for _, p := range batch {
		if p.deadline.IsZero() {
			timeout = max(timeout, applyTimeout)
		} else if left := p.deadline.Sub(now); left > 0 {
			timeout = max(timeout, left)
		} else {
			p.finish(raftfsm.Result{}, fmt.Errorf("%w before the command was submitted", lockapi.ErrTimeout))
			continue
		}
		live = append(live, p)
	}
	if len(live) == 0 {
		release()
		return
	}
	if err := n.queue.enter(); err != nil {
		for _, p := range live {
			p.finish(raftfsm.Result{}, err)
		}
		release()
		return
	}
	data := live[0].data
	if len(live) > 1 {
		cmds := make([][]byte, len(live))
		for i, p := range live {
			cmds[i] = p.data
		}
		data = raftfsm.EncodeBatch(nil, cmds)
	}
	f := n.raft.Apply(data, timeout)
	n.metrics.packed.Observe(float64(len(live)))
	n.pack.inflight.Add(1)
	go func() {
		defer n.pack.inflight.Done()
		err := f.Error()
		n.queue.leave()
		release()
		answer(live, f, err)
	}()
}

// answer hands each proposal of an applied (or failed) entry its result.
func answer(batch []*proposal, f raft.ApplyFuture, err error) {
	if err != nil {
		for _, p := range batch {
			p.finish(raftfsm.Result{}, err)
		}
		return
	}
	switch r := f.Response().(type) {
	case *raftfsm.Result:
		for _, p := range batch {
			p.finish(*r, nil)
		}
	case *raftfsm.BatchResult:
		for i, p := range batch {
			if len(r.Results) == len(batch) {
				p.finish(r.Results[i], nil)
			} else {
				p.finish(r.Results[0], nil) // the batch was refused as a whole
			}
		}
		// raft's log cache holds the entry's future, and the future this
		// response, for the last logCacheSize entries: let the results go
		// (a million locks filled in batches kept 126 MiB of them).
		r.Results = nil
	default:
		err := fmt.Errorf("raft apply returned %T, want a raftfsm result", r)
		for _, p := range batch {
			p.finish(raftfsm.Result{}, err)
		}
	}
}
