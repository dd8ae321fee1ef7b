package server

import (
	"context"
	"time"

	"github.com/distlock/distlock/lockapi"
	"github.com/distlock/distlock/raftfsm"
)

var _ lockapi.KeyService = (*Node)(nil)

// maxArgvBytes bounds the total size of one Redis command proposed to the
// log (the RESP guard already bounds each request).
const maxArgvBytes = 4 << 20

// Do implements [lockapi.KeyService]: it runs a Redis command in the
// replicated key engine. Writes (SET, DEL, EVAL, SCRIPT LOAD...) are stamped
// with the leader's cluster time and wall clock and go through the log;
// reads (GET, PTTL, EVAL_RO...) are served linearizably by the leader.
// Followers forward to the leader.
func (n *Node) Do(ctx context.Context, argv [][]byte) (lockapi.Value, error) {
	if len(argv) == 0 {
		return lockapi.ErrorValue("ERR empty command"), nil
	}
	size := 0
	for _, a := range argv {
		size += len(a)
	}
	if size > maxArgvBytes {
		return lockapi.Value{}, lockapi.Invalidf("command of %d bytes exceeds %d", size, maxArgvBytes)
	}
	addr, local, err := n.route(ctx)
	var v lockapi.Value
	switch {
	case err != nil:
	case local:
		v, err = n.localDo(ctx, argv)
	default:
		var resp fwdResponse
		resp, err = n.forward(ctx, addr, fwdRequest{Op: "do", Argv: argv})
		if err == nil && resp.Value != nil {
			v = *resp.Value
		}
	}
	if err != nil {
		return lockapi.Value{}, n.fail("do", err)
	}
	return v, nil
}

// localDo serves a Redis command on the leader.
func (n *Node) localDo(ctx context.Context, argv [][]byte) (lockapi.Value, error) {
	args := make([]string, len(argv))
	for i, a := range argv {
		args[i] = string(a)
	}
	if !raftfsm.IsWrite(argv) {
		lockapi.TurnFrom(ctx).Done() // reads take no part in a pipeline's order
		var v lockapi.Value
		err := n.readLinearizable(ctx, func(now time.Duration) {
			v = n.fsm.Read(args, now, n.clock.Now().UnixMilli())
		})
		return v, err
	}
	// The shortcut answers from the scripts known now; a pipelined command
	// (it has a turn) may name a script that an EVAL queued just before it
	// defines, so it goes to the log, where the same check runs in order.
	if lockapi.TurnFrom(ctx) == nil {
		if v, done := n.fsm.CheckScript(argv); done {
			return v, nil
		}
	}
	res, err := n.apply(ctx, raftfsm.Command{Op: raftfsm.OpExec, Wall: n.clock.Now().UnixMilli(), Args: args})
	if err != nil {
		return lockapi.Value{}, err
	}
	return res.Reply, nil
}

// KeyStats implements [lockapi.KeyService] from this node's own state.
func (n *Node) KeyStats() lockapi.KeyStats {
	st := n.fsm.Stats()
	return lockapi.KeyStats{Keys: st.Keys, Expires: st.Expires, Scripts: st.Scripts, AppliedIndex: n.fsm.AppliedIndex()}
}
