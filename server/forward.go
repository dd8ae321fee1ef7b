package server

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/distlock/distlock/lockapi"
	"github.com/distlock/distlock/raftfsm"
)

// Forwarding: a follower passes each lock request to the leader over the
// leader's raft port (a connection opened with forwardMagic) and relays the
// answer, so a client pointed at any node just works. Frames are a 4-byte
// big-endian length and a JSON body; one request at a time per connection.

// maxFrame bounds a forwarded frame (a LOCK.LIST of many locks is the
// largest).
const maxFrame = 256 << 20

// forwardIdleTimeout closes forwarding connections idle this long.
const forwardIdleTimeout = 5 * time.Minute

// fwdRequest is a forwarded request.
type fwdRequest struct {
	Op       string        `json:"op"`
	Key      string        `json:"key,omitempty"`
	Owner    string        `json:"owner,omitempty"`
	TTL      time.Duration `json:"ttl,omitempty"`
	Wait     time.Duration `json:"wait,omitempty"`
	Token    uint64        `json:"token,omitempty"`
	Timeout  time.Duration `json:"timeout,omitempty"`
	NodeID   string        `json:"node_id,omitempty"`
	Addr     string        `json:"addr,omitempty"`
	RESPAddr string        `json:"resp_addr,omitempty"`
	HTTPAddr string        `json:"http_addr,omitempty"`
	// Argv is the Redis command of a "do" request.
	Argv [][]byte `json:"argv,omitempty"`
	// Hops counts forwards so far; a request is forwarded at most once
	// more by a node that is not the leader.
	Hops int `json:"hops,omitempty"`
}

// fwdResponse is the leader's answer.
type fwdResponse struct {
	Lock  *lockapi.Lock  `json:"lock,omitempty"`
	Locks []lockapi.Lock `json:"locks,omitempty"`
	Value *lockapi.Value `json:"value,omitempty"`
	Code  string         `json:"code,omitempty"`
	Error string         `json:"error,omitempty"`
}

// isWrite reports whether a request changes state, so that a lost answer
// leaves its outcome unknown.
func (r fwdRequest) isWrite() bool {
	if r.Op == "do" {
		return raftfsm.IsWrite(r.Argv)
	}
	return r.Op != "info" && r.Op != "list"
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

func writeFrame(w io.Writer, v any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return err
	}
	buf := make([]byte, 4, 4+len(body))
	binary.BigEndian.PutUint32(buf, uint32(len(body)))
	_, err = w.Write(append(buf, body...))
	return err
}

func readFrame(r io.Reader, v any) error {
	var head [4]byte
	if _, err := io.ReadFull(r, head[:]); err != nil {
		return err
	}
	n := binary.BigEndian.Uint32(head[:])
	if n > maxFrame {
		return fmt.Errorf("forwarded frame of %d bytes exceeds %d", n, maxFrame)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return err
	}
	return json.Unmarshal(body, v)
}

// forwarder keeps idle connections to leaders.
type forwarder struct {
	mu      sync.Mutex
	idle    map[string][]net.Conn
	dialMap map[string]string
}

// maxIdlePerAddr bounds the idle connections kept per leader.
const maxIdlePerAddr = 64

func (f *forwarder) get(addr string, timeout time.Duration) (net.Conn, error) {
	f.mu.Lock()
	for len(f.idle[addr]) > 0 {
		conns := f.idle[addr]
		c := conns[len(conns)-1]
		f.idle[addr] = conns[:len(conns)-1]
		f.mu.Unlock()
		if alive(c) {
			return c, nil
		}
		c.Close()
		f.mu.Lock()
	}
	f.mu.Unlock()
	c, err := dialPeer(f.dialMap, addr, timeout)
	if err != nil {
		return nil, err
	}
	if _, err := c.Write([]byte{forwardMagic}); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// alive reports whether an idle connection is still open: a read that
// returns at once with EOF or a reset means the peer closed it.
func alive(c net.Conn) bool {
	c.SetReadDeadline(time.Now().Add(time.Microsecond))
	var b [1]byte
	_, err := c.Read(b[:])
	c.SetReadDeadline(time.Time{})
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func (f *forwarder) put(addr string, c net.Conn) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.idle == nil {
		f.idle = make(map[string][]net.Conn)
	}
	if len(f.idle[addr]) >= maxIdlePerAddr {
		c.Close()
		return
	}
	f.idle[addr] = append(f.idle[addr], c)
}

func (f *forwarder) close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, conns := range f.idle {
		for _, c := range conns {
			c.Close()
		}
	}
	f.idle = nil
}

// forward sends req to the leader at addr and returns its answer. A request
// that was sent but not answered is a write of unknown outcome (or, for a
// read, a definite failure).
func (n *Node) forward(ctx context.Context, addr string, req fwdRequest) (fwdResponse, error) {
	var resp fwdResponse
	deadline := time.Now().Add(applyTimeout + req.Wait)
	if dl, ok := ctx.Deadline(); ok {
		deadline = dl
	}
	req.Timeout = time.Until(deadline)
	if req.Timeout <= 0 {
		return resp, fmt.Errorf("%w before the request was forwarded", lockapi.ErrTimeout)
	}
	c, err := n.fwd.get(addr, min(req.Timeout, time.Second))
	if err != nil {
		return resp, fmt.Errorf("%w: cannot reach the leader at %s: %v", lockapi.ErrNoLeader, addr, err)
	}
	c.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
	defer stop()
	if err := writeFrame(c, req); err != nil {
		c.Close()
		return resp, n.lostAnswer(req, addr, err)
	}
	if err := readFrame(c, &resp); err != nil {
		c.Close()
		if ctx.Err() != nil && !req.isWrite() {
			return resp, fmt.Errorf("%w: %v", lockapi.ErrTimeout, ctx.Err())
		}
		return resp, n.lostAnswer(req, addr, err)
	}
	if !stop() {
		c.Close() // its deadline was cut short
	} else {
		c.SetDeadline(time.Time{})
		n.fwd.put(addr, c)
	}
	return resp, decodeError(resp.Code, resp.Error)
}

func (n *Node) lostAnswer(req fwdRequest, addr string, err error) error {
	if req.isWrite() {
		return fmt.Errorf("%w (forwarded to %s: %v)", lockapi.ErrUnknownOutcome, addr, err)
	}
	return fmt.Errorf("%w: the leader at %s did not answer: %v", lockapi.ErrNoLeader, addr, err)
}

// serveForward answers forwarded requests on one connection until it closes.
func (n *Node) serveForward(c net.Conn, br *bufio.Reader) {
	n.fwdConns.Add(1)
	defer n.fwdConns.Done()
	defer c.Close()
	stop := context.AfterFunc(n.ctx, func() { c.Close() })
	defer stop()
	for {
		c.SetReadDeadline(time.Now().Add(forwardIdleTimeout))
		var req fwdRequest
		if err := readFrame(br, &req); err != nil {
			return
		}
		c.SetReadDeadline(time.Time{})
		ctx, cancel := context.WithTimeout(n.ctx, req.Timeout)
		var watching chan struct{}
		var gone bool
		if req.Wait > 0 {
			// The caller sends nothing while it waits: a read that ends
			// other than by our own deadline means it went away, which
			// takes it out of the queue.
			watching = make(chan struct{})
			go func() {
				defer close(watching)
				var b [1]byte
				_, err := br.Read(b[:])
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					return
				}
				gone = true
				cancel()
			}()
		}
		resp := n.handleForwarded(ctx, req)
		cancel()
		if watching != nil {
			c.SetReadDeadline(time.Now())
			<-watching
			c.SetReadDeadline(time.Time{})
			if gone {
				return
			}
		}
		if err := writeFrame(c, resp); err != nil {
			return
		}
	}
}

// handleForwarded serves one forwarded request: locally on the leader, or by
// forwarding it once more to the leader this node knows.
func (n *Node) handleForwarded(ctx context.Context, req fwdRequest) fwdResponse {
	var resp fwdResponse
	var err error
	var l lockapi.Lock
	if !n.isLeader() {
		if req.Hops >= 1 {
			return fwdResponse{Code: "no_leader", Error: n.noLeaderError().Error()}
		}
		addr, _, lerr := n.route(ctx)
		if lerr != nil {
			return fwdResponse{Code: errorCode(lerr), Error: lerr.Error()}
		}
		req.Hops++
		resp, err = n.forward(ctx, addr, req)
		if err != nil && resp.Code == "" {
			resp.Code, resp.Error = errorCode(err), err.Error()
		}
		return resp
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
		err = n.localJoin(ctx, req.NodeID, req.Addr)
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
