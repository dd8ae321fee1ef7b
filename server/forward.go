package server

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/distlock/distlock/lockapi"
	"github.com/distlock/distlock/raftfsm"
)

// Forwarding: a follower passes each lock request to the leader over the
// leader's raft port (a connection opened with forwardMagic) and relays the
// answer, so a client pointed at any node just works. The wire is in
// forwardmux.go (frames multiplexed by id) and forwardcodec.go (bodies).

// fwdRequest is a forwarded request.
type fwdRequest struct {
	Op    string
	Key   string
	Owner string
	TTL   time.Duration
	Wait  time.Duration
	// Token is a lock's fencing token (renew, release) or, for "join", the
	// protocol version the joining node runs (0 from a build that did not
	// send one).
	Token    uint64
	Timeout  time.Duration
	NodeID   string
	Addr     string
	RESPAddr string
	HTTPAddr string
	// Argv is the Redis command of a "do" request.
	Argv [][]byte
	// Hops counts forwards so far; a request is forwarded at most once
	// more by a node that is not the leader.
	Hops int
}

// fwdResponse is the leader's answer.
type fwdResponse struct {
	Lock  *lockapi.Lock
	Locks []lockapi.Lock
	Value *lockapi.Value
	Code  string
	Error string
}

// isWrite reports whether a request changes state, so that a lost answer
// leaves its outcome unknown.
func (r fwdRequest) isWrite() bool {
	if r.Op == "do" {
		return raftfsm.IsWrite(r.Argv)
	}
	return r.Op != "info" && r.Op != "list" && r.Op != "version" && r.Op != "member"
}

// errorCodes name the sentinels that cross the wire (and label metrics).
var errorCodes = []struct {
	err  error
	code string
}{
	{lockapi.ErrHeld, "held"}, {lockapi.ErrNotHeld, "not_held"}, {lockapi.ErrNotFound, "not_found"},
	{lockapi.ErrInvalid, "invalid"}, {lockapi.ErrNoLeader, "no_leader"}, {lockapi.ErrNoQuorum, "no_quorum"},
	{lockapi.ErrUnknownOutcome, "unknown_outcome"}, {lockapi.ErrTimeout, "timeout"},
	{lockapi.ErrShuttingDown, "shutting_down"}, {lockapi.ErrWrongType, "wrong_type"},
}

// errorCode returns the code of err's sentinel, or "other".
func errorCode(err error) string {
	for _, e := range errorCodes {
		if errors.Is(err, e.err) {
			return e.code
		}
	}
	return "other"
}

// remoteError is an error returned by the leader: its text, and its
// sentinel for errors.Is.
type remoteError struct {
	msg      string
	sentinel error
}

func (e *remoteError) Error() string { return e.msg }
func (e *remoteError) Unwrap() error { return e.sentinel }

func decodeError(code, msg string) error {
	if code == "" {
		return nil
	}
	for _, e := range errorCodes {
		if e.code == code {
			return &remoteError{msg: msg, sentinel: e.err}
		}
	}
	return errors.New(msg)
}

// forward sends req to the leader at addr and returns its answer. A request
// that was sent but not answered is a write of unknown outcome (or, for a
// read, a definite failure).
func (n *Node) forward(ctx context.Context, addr string, req fwdRequest) (fwdResponse, error) {
	var resp fwdResponse
	deadline, ok := ctx.Deadline()
	if !ok {
		// Front ends always set one; bound the rest here.
		deadline = time.Now().Add(applyTimeout + req.Wait)
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, deadline)
		defer cancel()
	}
	if time.Until(deadline) <= 0 {
		return resp, fmt.Errorf("%w before the request was forwarded", lockapi.ErrTimeout)
	}
	// A pipelined command is sent after the one before it and as an
	// ordered request, which the leader submits to raft in arrival order.
	turn := lockapi.TurnFrom(ctx)
	defer turn.Done()
	if err := turn.Wait(ctx); err != nil {
		return resp, fmt.Errorf("%w waiting for the commands pipelined before this one", lockapi.ErrTimeout)
	}
	kind := frameRequest
	if turn != nil {
		kind = frameOrderedRequest
	}
	var (
		m    *muxConn
		id   uint64
		done <-chan muxResult
		err  error
	)
	// A connection found closed before anything was sent on it is
	// forgotten and replaced; a few tries cover a leader that just
	// dropped it. Until a request is sent, every failure is definite.
	for try := 0; ; try++ {
		if m, err = n.fwd.conn(ctx, addr, min(time.Until(deadline), time.Second)); err != nil {
			if ctx.Err() != nil {
				return resp, fmt.Errorf("%w before the request reached the leader at %s", lockapi.ErrTimeout, addr)
			}
			return resp, fmt.Errorf("%w: cannot reach the leader at %s: %v", lockapi.ErrNoLeader, addr, err)
		}
		req.Timeout = time.Until(deadline)
		if req.Timeout <= 0 {
			return resp, fmt.Errorf("%w before the request was forwarded", lockapi.ErrTimeout)
		}
		if id, done, err = m.start(kind, encodeRequest(req)); err == nil {
			break
		}
		n.fwd.forget(m)
		if try == 2 {
			return resp, fmt.Errorf("%w: cannot reach the leader at %s: %v", lockapi.ErrNoLeader, addr, err)
		}
	}
	turn.Done()
	sentAt := time.Now()
	select {
	case r := <-done:
		if r.err != nil {
			return resp, n.lostAnswer(req, addr, r.err)
		}
		if resp, err = decodeResponse(r.body); err != nil {
			return resp, n.lostAnswer(req, addr, fmt.Errorf("undecodable answer: %w", err))
		}
		return resp, decodeError(resp.Code, resp.Error)
	case <-n.ctx.Done():
		m.abandon(id, sentAt, false)
		return resp, n.lostAnswer(req, addr, lockapi.ErrShuttingDown)
	case <-ctx.Done():
		m.abandon(id, sentAt, errors.Is(ctx.Err(), context.DeadlineExceeded))
		if !req.isWrite() {
			return resp, fmt.Errorf("%w: %v", lockapi.ErrTimeout, ctx.Err())
		}
		return resp, n.lostAnswer(req, addr, ctx.Err())
	}
}

func (n *Node) lostAnswer(req fwdRequest, addr string, err error) error {
	if req.isWrite() {
		return fmt.Errorf("%w (forwarded to %s: %v)", lockapi.ErrUnknownOutcome, addr, err)
	}
	return fmt.Errorf("%w: the leader at %s did not answer: %v", lockapi.ErrNoLeader, addr, err)
}

// serveForward answers the requests multiplexed on one forwarding
// connection until it closes. Each request runs on its own, so concurrent
// requests reach raft together and share its batches; ordered requests
// (pipelined by a client) are chained with turns so that they enter raft in
// the order they arrived. A cancel frame, or the connection's end, cancels
// what is still running (a waiting acquire leaves the queue).
func (n *Node) serveForward(c net.Conn, br *bufio.Reader) {
	n.fwdConns.Add(1)
	defer n.fwdConns.Done()
	defer c.Close()
	ctx, cancelAll := context.WithCancel(n.ctx)
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	w := newFrameWriter(c)
	defer w.stop()
	var (
		mu      sync.Mutex
		running = make(map[uint64]context.CancelFunc)
		wg      sync.WaitGroup
		last    *lockapi.Turn // of the last ordered request
	)
	// On the way out: cancel what runs, wait for it, then stop the writer.
	defer wg.Wait()
	defer cancelAll()
	r := bufio.NewReaderSize(br, 64<<10)
	for {
		kind, id, body, err := readFrame(r)
		if err != nil {
			return
		}
		switch kind {
		case frameCancel:
			mu.Lock()
			if cancel := running[id]; cancel != nil {
				cancel()
			}
			mu.Unlock()
		case frameRequest, frameOrderedRequest:
			req, err := decodeRequest(body)
			if err != nil {
				n.log.Warn("undecodable forwarded request", "peer", c.RemoteAddr(), "err", err)
				return
			}
			if kind == frameRequest && n.serveForwardedWrite(req, func(resp fwdResponse) {
				w.send(frameResponse, id, encodeResponse(resp))
			}) {
				continue
			}
			rctx, cancel := context.WithTimeout(ctx, req.Timeout)
			var turn *lockapi.Turn
			if kind == frameOrderedRequest {
				turn = lockapi.NewTurn(last)
				last = turn
				rctx = lockapi.WithTurn(rctx, turn)
			}
			mu.Lock()
			running[id] = cancel
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer turn.Done()
				resp := n.handleForwarded(rctx, req)
				mu.Lock()
				delete(running, id)
				mu.Unlock()
				cancel()
				w.send(frameResponse, id, encodeResponse(resp))
			}()
		default:
			n.log.Warn("unexpected forwarded frame", "peer", c.RemoteAddr(), "kind", kind)
			return
		}
	}
}

// serveForwardedWrite serves a forwarded acquire without WAIT, renew or
// release on the leader without a goroutine of its own: it queues the
// command for raft, and reply runs with the answer when the entry is
// applied (from the packer, so reply must not block). A goroutine per
// request cost the leader a start and a wake-up for each forwarded command;
// without them, 64 clients spread over three nodes went from 9,308 to
// 10,539 cycles/s on average over six alternating runs and 256 from 14,154
// to 16,004 over three (tests/bench lockbench). It returns false, having done
// nothing, for what takes the general path: other operations, a waiting
// acquire, a release of a key with callers waiting (it may hand the lock
// over), a node that is not a leader ready to serve, a full packer queue.
func (n *Node) serveForwardedWrite(req fwdRequest, reply func(fwdResponse)) bool {
	var c raftfsm.Command
	switch {
	case req.Op == "acquire" && req.Wait == 0:
		c = raftfsm.Command{Op: raftfsm.OpAcquire, Key: req.Key, Owner: req.Owner, TTL: req.TTL}
	case req.Op == "renew":
		c = raftfsm.Command{Op: raftfsm.OpRenew, Key: req.Key, Owner: req.Owner, TTL: req.TTL, Token: req.Token}
	case req.Op == "release" && n.waits.count(req.Key) == 0:
		c = raftfsm.Command{Op: raftfsm.OpRelease, Key: req.Key, Owner: req.Owner, Token: req.Token}
	default:
		return false
	}
	if !n.isLeader() {
		return false
	}
	return n.applyAsync(c, time.Now().Add(req.Timeout), func(res raftfsm.Result, err error) {
		var resp fwdResponse
		switch {
		case err != nil:
			resp = fwdResponse{Code: errorCode(err), Error: err.Error()}
		case c.Op != raftfsm.OpRelease:
			l := n.resultLock(res.Lock)
			resp.Lock = &l
		}
		reply(resp)
	})
}

// handleForwarded serves one forwarded request: locally on the leader, or by
// forwarding it once more to the leader this node knows.
func (n *Node) handleForwarded(ctx context.Context, req fwdRequest) fwdResponse {
	var resp fwdResponse
	var err error
	var l lockapi.Lock
	if !req.isWrite() {
		// Reads and membership calls take no part in a pipeline's order.
		lockapi.TurnFrom(ctx).Done()
	}
	if req.Op == "version" {
		// Asked of this very node (by a leader about to add it as a voter,
		// or raising the cluster's version), whether it leads or not: its
		// build's protocol version and, in the value's string (which older
		// builds ignore), the committed id of the cluster it belongs to.
		v := lockapi.IntValue(int64(n.protocolVersion()))
		v.Str = n.clusterID()
		return fwdResponse{Value: &v}
	}
	if req.Op == "member" {
		return n.answerMember(req.NodeID) // asked of this very node too
	}
	if !n.isLeader() {
		// An ordered request is not passed on: its sender let the next
		// command of the pipeline go once this one was sent, and that one
		// may reach the leader directly, first. Refusing (nothing happened)
		// keeps the pipeline's order.
		if req.Hops >= 1 || lockapi.TurnFrom(ctx) != nil {
			return fwdResponse{Code: "no_leader", Error: n.noLeaderError().Error()}
		}
		addr, local, lerr := n.route(ctx)
		if lerr != nil {
			return fwdResponse{Code: errorCode(lerr), Error: lerr.Error()}
		}
		if !local {
			req.Hops++
			resp, err = n.forward(ctx, addr, req)
			if err != nil && resp.Code == "" {
				resp.Code, resp.Error = errorCode(err), err.Error()
			}
			return resp
		}
		// This node became the leader meanwhile: it serves the request.
	}
	switch req.Op {
	case "acquire":
		l, err = n.localAcquire(ctx, lockapi.AcquireRequest{Key: req.Key, Owner: req.Owner, TTL: req.TTL, Wait: req.Wait})
		resp.Lock = &l
	case "renew":
		l, err = n.localRenew(ctx, lockapi.RenewRequest{Key: req.Key, Owner: req.Owner, TTL: req.TTL, Token: req.Token})
		resp.Lock = &l
	case "release":
		err = n.localRelease(ctx, lockapi.ReleaseRequest{Key: req.Key, Owner: req.Owner, Token: req.Token})
	case "info":
		l, err = n.localInfo(ctx, req.Key)
		resp.Lock = &l
	case "list":
		resp.Locks, err = n.localList(ctx)
	case "do":
		var v lockapi.Value
		if v, err = n.localDo(ctx, req.Argv); err == nil {
			resp.Value = &v
		}
	case "register":
		err = n.localRegister(ctx, req.NodeID, req.RESPAddr, req.HTTPAddr)
	case "join":
		err = n.localJoin(ctx, req.NodeID, req.Addr, req.Token)
	case "leave":
		err = n.localLeave(ctx, req.NodeID)
	default:
		err = lockapi.Invalidf("unknown forwarded operation %q", req.Op)
	}
	if err != nil {
		return fwdResponse{Code: errorCode(err), Error: err.Error()}
	}
	return resp
}
