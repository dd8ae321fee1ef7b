package resp

import (
	"context"
	"sync"
	"time"

	"github.com/tidwall/redcon"

	"github.com/distlock/distlock/lockapi"
)

// Pipelining. A client that sends several commands without waiting for the
// replies gets them back in order, as from Redis, and the commands take
// effect in order. Running them one after another would cost one replicated
// commit (two fsyncs and two round trips) each; instead a run of
// back-to-back writes that each become one log entry (SET, DEL, EVALSHA,
// LOCK.ACQUIRE without WAIT, LOCK.RENEW, LOCK.RELEASE...) runs concurrently:
// every command gets a [lockapi.Turn] chained to the one before it, the
// service queues them for raft in pipeline order, and their commits share
// raft's batches. Reads, waiting acquires and connection commands run alone,
// after everything before them has answered, so they see its effects.

// maxPipelineRun bounds the commands of one pipeline run in flight at once.
const maxPipelineRun = 256

// concurrent reports whether args may run concurrently with the pipelined
// writes around it: a write that becomes exactly one log entry, taken in
// turn. A LOCK.ACQUIRE with options (WAIT) may wait in a queue after its
// first attempt, so it runs alone.
func (s *Server) concurrent(args [][]byte) bool {
	cmd := s.lookup(args[0])
	if cmd == nil || !cmd.pipelined {
		return false
	}
	return cmd.name != "lock.acquire" || len(args) == 4
}

// commandContext returns the context of one of c's commands: cancelled when
// the server closes and after commandTimeout plus extra, carrying c's turn
// when the command is one of a pipelined run.
func (c *client) commandContext(extra time.Duration) (context.Context, context.CancelFunc) {
	ctx, cancel := c.srv.commandContext(extra)
	if c.turn != nil {
		ctx = lockapi.WithTurn(ctx, c.turn)
	}
	return ctx, cancel
}

// runPipeline runs cmds, the commands c had pipelined from the one redcon
// handed over on, and queues their replies in order.
func (s *Server) runPipeline(c *client, conn redcon.Conn, cmds []redcon.Command) {
	for i := 0; i < len(cmds) && !c.quitting; {
		j := i
		for j < len(cmds) && j-i < maxPipelineRun && s.concurrent(cmds[j].Args) {
			j++
		}
		if j-i < 2 {
			s.dispatch(c, cmds[i].Args)
			conn.WriteRaw(c.out)
			c.resetOut()
			i++
			continue
		}
		s.runConcurrently(c, conn, cmds[i:j])
		i = j
	}
	if c.quitting {
		_ = conn.Close() // the commands after QUIT are not run
	}
}

// runConcurrently runs a run of pipelined writes at once, each with a turn
// chained to the previous one's, and queues their replies in order. It
// returns when every command has answered, so none outlives the read
// buffer its arguments point into.
func (s *Server) runConcurrently(c *client, conn redcon.Conn, run []redcon.Command) {
	subs := make([]client, len(run))
	var (
		wg   sync.WaitGroup
		prev *lockapi.Turn
	)
	for k, cmd := range run {
		sub := &subs[k]
		*sub = *c
		sub.out, sub.turn = nil, lockapi.NewTurn(prev)
		prev = sub.turn
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer sub.turn.Done() // a command refused before the log lets the next go
			s.dispatch(sub, cmd.Args)
		}()
	}
	wg.Wait()
	for k := range subs {
		conn.WriteRaw(subs[k].out)
	}
}
