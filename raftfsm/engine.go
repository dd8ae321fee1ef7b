package raftfsm

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/distlock/distlock/lockapi"
)

// The key engine: Redis commands (SET, GET, DEL, PEXPIRE, HSET, EVAL...)
// run against the keyspace at one frozen instant. Write commands run inside
// Apply (OpExec), on every replica, at the entry's cluster time; read-only
// commands run on the leader through [FSM.Read]. Every reply, errors
// included, is a [lockapi.Value] decided by the state alone, so replicas
// agree byte for byte.

// engine runs commands for one entry (or one read).
type engine struct {
	f        *FSM
	token    uint64        // fencing token of a grant by this command; 0 for a read
	now      time.Duration // cluster time, frozen for the whole command
	wall     int64         // the leader's wall clock, unix ms (PXAT, TIME)
	readOnly bool          // a read: nothing may change
	script   *scriptRun    // the script being run, if any
}

// cmdSpec describes one command of the engine.
type cmdSpec struct {
	name string
	// arity follows Redis: n means exactly n arguments, -n at least n,
	// the name included.
	arity int
	// write commands change the keyspace (or the script cache).
	write bool
	// noScript commands cannot be called from a script.
	noScript bool
	fn       func(e *engine, args []string) lockapi.Value
}

var commands map[string]*cmdSpec

func init() {
	specs := []*cmdSpec{
		{name: "get", arity: 2, fn: cmdGet},
		{name: "set", arity: -3, write: true, fn: cmdSet},
		{name: "del", arity: -2, write: true, fn: cmdDel},
		{name: "unlink", arity: -2, write: true, fn: cmdDel},
		{name: "exists", arity: -2, fn: cmdExists},
		{name: "type", arity: 2, fn: cmdType},
		{name: "pexpire", arity: -3, write: true, fn: cmdExpire},
		{name: "expire", arity: -3, write: true, fn: cmdExpire},
		{name: "pexpireat", arity: -3, write: true, fn: cmdExpire},
		{name: "expireat", arity: -3, write: true, fn: cmdExpire},
		{name: "pttl", arity: 2, fn: cmdTTL},
		{name: "ttl", arity: 2, fn: cmdTTL},
		{name: "persist", arity: 2, write: true, fn: cmdPersist},
		{name: "getrange", arity: 4, fn: cmdGetRange},
		{name: "strlen", arity: 2, fn: cmdStrlen},
		{name: "mget", arity: -2, fn: cmdMGet},
		{name: "mset", arity: -3, write: true, fn: cmdMSet},
		{name: "msetnx", arity: -3, write: true, fn: cmdMSet},
		{name: "hset", arity: -4, write: true, fn: cmdHSet},
		{name: "hget", arity: 3, fn: cmdHGet},
		{name: "hincrby", arity: 4, write: true, fn: cmdHIncrBy},
		{name: "hexists", arity: 3, fn: cmdHExists},
		{name: "hdel", arity: -3, write: true, fn: cmdHDel},
		{name: "hlen", arity: 2, fn: cmdHLen},
		{name: "publish", arity: 3, fn: cmdPublish},
		{name: "dbsize", arity: 1, fn: cmdDBSize},
		{name: "time", arity: 1, fn: cmdTime},
		{name: "eval", arity: -3, write: true, noScript: true, fn: cmdEval},
		{name: "evalsha", arity: -3, write: true, noScript: true, fn: cmdEval},
		{name: "eval_ro", arity: -3, noScript: true, fn: cmdEval},
		{name: "evalsha_ro", arity: -3, noScript: true, fn: cmdEval},
		{name: "script", arity: -2, write: true, noScript: true, fn: cmdScript},
	}
	commands = make(map[string]*cmdSpec, len(specs))
	for _, s := range specs {
		commands[s.name] = s
	}
}

// IsWrite reports whether the command args (name first) changes state and
// so must go through the log. Unknown commands are not writes: the engine
// answers them with an error wherever it runs.
func IsWrite(args [][]byte) bool {
	if len(args) == 0 {
		return false
	}
	spec := commands[strings.ToLower(string(args[0]))]
	if spec == nil {
		return false
	}
	if spec.name == "script" && len(args) > 1 && strings.EqualFold(string(args[1]), "exists") {
		return false
	}
	return spec.write
}

// exec runs an OpExec command whose grants get fencing token tok. f.mu must
// be held. A panic (a bug: commands return errors as values) is answered
// with an error reply rather than crashing every replica in turn; the code
// is the same on every replica, so so is the outcome.
func (f *FSM) exec(tok uint64, c Command) (v lockapi.Value) {
	defer func() {
		if r := recover(); r != nil {
			v = lockapi.ErrorValue(fmt.Sprintf("ERR internal error: %v", r))
		}
	}()
	e := &engine{f: f, token: tok, now: f.now, wall: c.Wall}
	return e.run(c.Args)
}

// Read runs a read-only command (GET, PTTL, EVAL_RO...) at cluster time now
// and wall clock wall (unix ms), without changing anything. A write command
// is refused. It is safe to call concurrently with Apply.
func (f *FSM) Read(args []string, now time.Duration, wall int64) (v lockapi.Value) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	defer func() {
		if r := recover(); r != nil {
			v = lockapi.ErrorValue(fmt.Sprintf("ERR internal error: %v", r))
		}
	}()
	e := &engine{f: f, now: max(now, f.now), wall: wall, readOnly: true}
	return e.run(args)
}

// run checks and runs one command.
func (e *engine) run(args []string) lockapi.Value {
	if len(args) == 0 {
		return lockapi.ErrorValue("ERR empty command")
	}
	spec := commands[strings.ToLower(args[0])]
	switch {
	case spec == nil:
		return lockapi.ErrorValue(unknownCommand(args))
	case !arityOK(spec.arity, len(args)):
		return lockapi.ErrorValue("ERR wrong number of arguments for '" + spec.name + "' command")
	case e.readOnly && spec.write && !(spec.name == "script" && strings.EqualFold(args[1], "exists")):
		return lockapi.ErrorValue("ERR Write commands are not allowed from read-only scripts.")
	}
	return spec.fn(e, args)
}

func arityOK(arity, n int) bool {
	if arity >= 0 {
		return n == arity
	}
	return n >= -arity
}

// unknownCommand formats Redis 7's unknown-command error.
func unknownCommand(args []string) string {
	var b strings.Builder
	b.WriteString("ERR unknown command '")
	b.WriteString(trunc(args[0], 128))
	b.WriteString("', with args beginning with: ")
	n := 0
	for _, a := range args[1:] {
		if n >= 128 {
			break
		}
		a = trunc(a, 128-n)
		b.WriteString("'" + a + "' ")
		n += len(a) + 3
	}
	return b.String()
}

func trunc(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// Replies shared by many commands, in Redis's words.
var (
	errWrongType   = lockapi.ErrorValue(lockapi.ErrWrongType.Error())
	errSyntax      = lockapi.ErrorValue("ERR syntax error")
	errNotInteger  = lockapi.ErrorValue("ERR value is not an integer or out of range")
	errHashNotInt  = lockapi.ErrorValue("ERR hash value is not an integer")
	errOverflow    = lockapi.ErrorValue("ERR increment or decrement would overflow")
	errWrongArgsOf = func(name string) lockapi.Value {
		return lockapi.ErrorValue("ERR wrong number of arguments for '" + name + "' command")
	}
)

func errExpireTime(cmd string) lockapi.Value {
	return lockapi.ErrorValue("ERR invalid expire time in '" + cmd + "' command")
}

// deadlineIn returns the cluster time ms milliseconds after now (ms > 0),
// saturating below noDeadline.
func (e *engine) deadlineIn(ms int64) time.Duration {
	if ms >= int64(noDeadline-1-e.now)/int64(time.Millisecond) {
		return noDeadline - 1
	}
	return e.now + time.Duration(ms)*time.Millisecond
}

// get returns the live key. f.mu must be held.
func (e *engine) get(key string) (LockState, bool) { return e.f.lookup(key, e.now) }

// store writes l, which replaces old when had is true.
func (e *engine) store(old LockState, had bool, l LockState) {
	if had {
		e.f.replace(old, l)
	} else {
		e.f.put(l)
	}
}

// delete removes the key and wakes anyone waiting for it.
func (e *engine) delete(l LockState) {
	e.f.remove(l)
	e.f.freed(l.Key)
}

// setString stores value under key with the given deadline and TTL. A new
// key, or one that held another value or a hash, gets a new holder: the
// command's fencing token, version 1 (as LOCK.ACQUIRE grants). Setting the
// value a key already holds keeps its token and bumps its version (as a
// same-owner LOCK.ACQUIRE extends).
func (e *engine) setString(old LockState, had bool, key, value string, ttl, deadline time.Duration) LockState {
	l := LockState{Key: key, Owner: value, Token: e.token, Version: 1, TTL: ttl, Deadline: deadline}
	if had && !old.IsHash() && old.Owner == value {
		l.Token, l.Version = old.Token, old.Version+1
	}
	if deadline <= e.now {
		if had {
			e.delete(old)
		}
		return l
	}
	e.store(old, had, l)
	return l
}

// withDeadline returns l with a new deadline (noDeadline: none) and version
// bumped, stored in place of l.
func (e *engine) withDeadline(l LockState, deadline time.Duration) {
	n := l
	n.Deadline = deadline
	n.TTL = 0
	if deadline != noDeadline {
		n.TTL = deadline - e.now
	}
	n.Version++
	e.f.replace(l, n)
}

// formatInt formats an integer in decimal, as Redis replies with one.
func formatInt(n int64) string { return strconv.FormatInt(n, 10) }
