package raftfsm

import (
	"math"
	"strings"
	"time"

	"github.com/distlock/distlock/lockapi"
)

// String-key commands. Each follows Redis 7.0's t_string.c / expire.c in
// argument checking order and reply text, so that clients (and the
// differential tests against redis-server) see the same replies.

// GET key
func cmdGet(e *engine, args []string) lockapi.Value {
	l, ok := e.get(args[1])
	switch {
	case !ok:
		return lockapi.NilValue()
	case l.IsHash():
		return errWrongType
	}
	return lockapi.BulkValue(l.Owner)
}

// setFlags are SET's parsed options.
type setFlags struct {
	nx, xx, get, keepTTL bool
	unit                 string // "ex", "px", "exat", "pxat" or ""
	expire               string
}

// parseSetFlags parses SET's options, in any order and case, with the
// compatibility rules of Redis's parseExtendedStringArgumentsOrReply.
func parseSetFlags(args []string) (setFlags, bool) {
	var f setFlags
	for j := 0; j < len(args); j++ {
		opt := strings.ToLower(args[j])
		hasNext := j+1 < len(args)
		switch {
		case opt == "nx" && !f.xx:
			f.nx = true
		case opt == "xx" && !f.nx:
			f.xx = true
		case opt == "get":
			f.get = true
		case opt == "keepttl" && f.unit == "":
			f.keepTTL = true
		case (opt == "ex" || opt == "px" || opt == "exat" || opt == "pxat") &&
			!f.keepTTL && (f.unit == "" || f.unit == opt) && hasNext:
			f.unit, f.expire = opt, args[j+1]
			j++
		default:
			return f, false
		}
	}
	return f, true
}

// expireDeadline converts an expire argument (unit ex, px, exat or pxat)
// into a cluster-time deadline, checking it as Redis's SET does. Absolute
// times are converted with the entry's wall clock: PXAT t means
// t - wall milliseconds from now.
func (e *engine) expireDeadline(unit, arg, cmd string) (time.Duration, *lockapi.Value) {
	ms, ok := lockapi.ParseInt(arg)
	if !ok {
		return 0, &errNotInteger
	}
	seconds := unit == "ex" || unit == "exat"
	if ms <= 0 || (seconds && ms > math.MaxInt64/1000) {
		v := errExpireTime(cmd)
		return 0, &v
	}
	if seconds {
		ms *= 1000
	}
	if unit == "ex" || unit == "px" {
		if ms > math.MaxInt64-e.wall { // Redis adds its clock and overflows
			v := errExpireTime(cmd)
			return 0, &v
		}
		return e.deadlineIn(ms), nil
	}
	rel := ms - e.wall
	if rel <= 0 {
		return e.now, nil // already expired
	}
	return e.deadlineIn(rel), nil
}

// SET key value [NX|XX] [GET] [EX s|PX ms|EXAT t|PXAT t|KEEPTTL]
func cmdSet(e *engine, args []string) lockapi.Value {
	key, value := args[1], args[2]
	fl, ok := parseSetFlags(args[3:])
	if !ok {
		return errSyntax
	}
	deadline := noDeadline
	if fl.unit != "" {
		d, bad := e.expireDeadline(fl.unit, fl.expire, "set")
		if bad != nil {
			return *bad
		}
		deadline = d
	}
	old, had := e.get(key)
	reply := lockapi.OKValue()
	if fl.get {
		switch {
		case had && old.IsHash():
			return errWrongType
		case had:
			reply = lockapi.BulkValue(old.Owner)
		default:
			reply = lockapi.NilValue()
		}
	}
	if (fl.nx && had) || (fl.xx && !had) {
		if fl.get {
			return reply
		}
		return lockapi.NilValue()
	}
	ttl := time.Duration(0)
	switch {
	case fl.keepTTL && had:
		deadline, ttl = old.Deadline, old.TTL
	case deadline != noDeadline:
		ttl = deadline - e.now
	}
	e.setString(old, had, key, value, ttl, deadline)
	return reply
}

// DEL key [key ...] / UNLINK key [key ...]
func cmdDel(e *engine, args []string) lockapi.Value {
	n := int64(0)
	for _, k := range args[1:] {
		if l, ok := e.get(k); ok {
			e.delete(l)
			n++
		}
	}
	return lockapi.IntValue(n)
}

// EXISTS key [key ...]
func cmdExists(e *engine, args []string) lockapi.Value {
	n := int64(0)
	for _, k := range args[1:] {
		if _, ok := e.get(k); ok {
			n++
		}
	}
	return lockapi.IntValue(n)
}

// TYPE key
func cmdType(e *engine, args []string) lockapi.Value {
	l, ok := e.get(args[1])
	switch {
	case !ok:
		return lockapi.StatusValue("none")
	case l.IsHash():
		return lockapi.StatusValue("hash")
	}
	return lockapi.StatusValue("string")
}

// PEXPIRE/EXPIRE key ttl [NX|XX|GT|LT], PEXPIREAT/EXPIREAT key time [...]
func cmdExpire(e *engine, args []string) lockapi.Value {
	cmd := strings.ToLower(args[0])
	var nx, xx, gt, lt bool
	for _, a := range args[3:] {
		switch strings.ToLower(a) {
		case "nx":
			nx = true
		case "xx":
			xx = true
		case "gt":
			gt = true
		case "lt":
			lt = true
		default:
			return lockapi.ErrorValue("ERR Unsupported option " + a)
		}
	}
	if nx && (xx || gt || lt) {
		return lockapi.ErrorValue("ERR NX and XX, GT or LT options at the same time are not compatible")
	}
	if gt && lt {
		return lockapi.ErrorValue("ERR GT and LT options at the same time are not compatible")
	}
	when, ok := lockapi.ParseInt(args[2])
	if !ok {
		return errNotInteger
	}
	if cmd == "expire" || cmd == "expireat" {
		if when > math.MaxInt64/1000 || when < math.MinInt64/1000 {
			return errExpireTime(cmd)
		}
		when *= 1000
	}
	// Redis works in absolute unix milliseconds; so do the checks, with
	// the entry's wall clock as Redis's clock.
	if cmd == "pexpire" || cmd == "expire" {
		if when > math.MaxInt64-e.wall {
			return errExpireTime(cmd)
		}
		when += e.wall
	}
	l, had := e.get(args[1])
	if !had {
		return lockapi.IntValue(0)
	}
	rel := when - e.wall // milliseconds from now
	var deadline time.Duration
	if rel > 0 {
		deadline = e.deadlineIn(rel)
	} else {
		deadline = e.now
	}
	switch {
	case nx && l.HasTTL(), xx && !l.HasTTL():
		return lockapi.IntValue(0)
	case gt && (!l.HasTTL() || deadline <= l.Deadline):
		return lockapi.IntValue(0)
	case lt && l.HasTTL() && deadline >= l.Deadline:
		return lockapi.IntValue(0)
	}
	if rel <= 0 {
		e.delete(l)
		return lockapi.IntValue(1)
	}
	e.withDeadline(l, deadline)
	return lockapi.IntValue(1)
}

// PTTL key / TTL key
func cmdTTL(e *engine, args []string) lockapi.Value {
	l, ok := e.get(args[1])
	switch {
	case !ok:
		return lockapi.IntValue(-2)
	case !l.HasTTL():
		return lockapi.IntValue(-1)
	}
	ms := remainingMillis(l.Deadline - e.now)
	if strings.EqualFold(args[0], "ttl") {
		return lockapi.IntValue((ms + 500) / 1000)
	}
	return lockapi.IntValue(ms)
}

// remainingMillis converts a remaining lease to whole milliseconds, rounding
// up so that a live key never reports 0 (Redis's clock has millisecond
// resolution, so its keys expire on a millisecond boundary).
func remainingMillis(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Millisecond - 1) / time.Millisecond)
}

// PERSIST key
func cmdPersist(e *engine, args []string) lockapi.Value {
	l, ok := e.get(args[1])
	if !ok || !l.HasTTL() {
		return lockapi.IntValue(0)
	}
	e.withDeadline(l, noDeadline)
	return lockapi.IntValue(1)
}

// GETRANGE key start end
func cmdGetRange(e *engine, args []string) lockapi.Value {
	start, ok1 := lockapi.ParseInt(args[2])
	end, ok2 := lockapi.ParseInt(args[3])
	if !ok1 || !ok2 {
		return errNotInteger
	}
	l, ok := e.get(args[1])
	switch {
	case !ok:
		return lockapi.BulkValue("")
	case l.IsHash():
		return errWrongType
	}
	s := l.Owner
	n := int64(len(s))
	if start < 0 && end < 0 && start > end {
		return lockapi.BulkValue("")
	}
	if start < 0 {
		start += n
	}
	if end < 0 {
		end += n
	}
	start, end = max(start, 0), max(end, 0)
	if end >= n {
		end = n - 1
	}
	if n == 0 || start > end {
		return lockapi.BulkValue("")
	}
	return lockapi.BulkValue(s[start : end+1])
}

// STRLEN key
func cmdStrlen(e *engine, args []string) lockapi.Value {
	l, ok := e.get(args[1])
	switch {
	case !ok:
		return lockapi.IntValue(0)
	case l.IsHash():
		return errWrongType
	}
	return lockapi.IntValue(int64(len(l.Owner)))
}

// MGET key [key ...]
func cmdMGet(e *engine, args []string) lockapi.Value {
	out := make([]lockapi.Value, 0, len(args)-1)
	for _, k := range args[1:] {
		if l, ok := e.get(k); ok && !l.IsHash() {
			out = append(out, lockapi.BulkValue(l.Owner))
		} else {
			out = append(out, lockapi.NilValue())
		}
	}
	return lockapi.ArrayValue(out...)
}

// MSET key value [key value ...] / MSETNX key value [key value ...]
func cmdMSet(e *engine, args []string) lockapi.Value {
	name := strings.ToLower(args[0])
	if len(args)%2 == 0 {
		return errWrongArgsOf(name)
	}
	if name == "msetnx" {
		for j := 1; j < len(args); j += 2 {
			if _, ok := e.get(args[j]); ok {
				return lockapi.IntValue(0)
			}
		}
	}
	for j := 1; j < len(args); j += 2 {
		old, had := e.get(args[j])
		e.setString(old, had, args[j], args[j+1], 0, noDeadline)
	}
	if name == "msetnx" {
		return lockapi.IntValue(1)
	}
	return lockapi.OKValue()
}

// PUBLISH channel message: there is no pub/sub; nobody receives it.
func cmdPublish(e *engine, args []string) lockapi.Value { return lockapi.IntValue(0) }

// DBSIZE
func cmdDBSize(e *engine, args []string) lockapi.Value {
	n, _ := e.f.countLive(e.now)
	return lockapi.IntValue(int64(n))
}

// TIME: the entry's wall clock (frozen for a whole script), as seconds and
// microseconds.
func cmdTime(e *engine, args []string) lockapi.Value {
	sec, ms := e.wall/1000, e.wall%1000
	if ms < 0 {
		sec, ms = sec-1, ms+1000
	}
	return lockapi.ArrayValue(lockapi.BulkValue(formatInt(sec)), lockapi.BulkValue(formatInt(ms*1000)))
}
