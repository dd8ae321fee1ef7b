package raftfsm

import (
	"github.com/distlock/distlock/lockapi"
)

// Native fast paths for the lock scripts that popular libraries send,
// keyed by the SHA1 of their exact text (see shared research, redis-compat
// §3). Each returns ok=false, before it has changed anything, whenever its
// inputs leave the common path (a missing argument, a non-integer TTL, a
// hash key, an error from a command); the engine then runs the Lua text
// instead. So a native path never decides an error reply, and its replies
// are those of the script (TestNativeMatchesLua checks this on random
// states).
type nativeScript func(e *engine, keys, argv []string) (lockapi.Value, bool)

// natives maps a script's SHA1 to its native implementation.
var natives = map[string]nativeScript{
	// go-redsync/redsync v4 (scripts.go; the old delete of v4.0-v4.11).
	"e950836ed1e694540c503ef9972b8de518044d3b": nativeRedsyncDelete,
	"00583931c4e4d483f6233879c133c71ed5393f9d": nativeDeleteIfValue,
	"d75bb8b5bd13532ddedd17762e772346e39b321e": nativePExpireIfValue,
	"b6b55c439e02c6f52ffb8be7ec8c0d0ac816ea79": nativeRedsyncTouchOrSet,
	// bsm/redislock v0.9.4.
	"a7aba3bc5d6e99b3003da8b9d80a63b9f4092ecf": nativePExpireIfValue,
	"cf0e94b2e9ffc7e04395cf88f7583fc309985910": nativeDeleteIfValue,
	"6484da7d58920897fdc22b7f9afd1a3d47524ea8": nativeRedislockPTTL,
	"80a1b5f2cfccec3b7119ba7721d2127682b691a7": nativeRedislockObtain,
	// redis-py Lock (release, extend, reacquire).
	"c3f8721cbb97f72bc19e972846bd7aaf91901658": nativeRedisPyRelease,
	"a4e8783852e6b949f9ef3a97212805108459a890": nativeRedisPyExtend,
	"1cac51482acf5858da00f6d685d68f886cd6b6b2": nativeRedisPyReacquire,
	// The redis.io distributed-locks page's release script.
	"647c65a442733a1aa440f99908d249d13b4d6c4a": nativeDeleteIfValue,
}

// nativeGet is redis.call("GET", key) for a native path: the value, or
// false as Lua sees a missing key; ok is false for a hash (WRONGTYPE).
func nativeGet(e *engine, key string) (val string, exists, ok bool) {
	l, had := e.get(key)
	if had && l.IsHash() {
		return "", false, false
	}
	return l.Owner, had, true
}

// need reports whether a script has KEYS[1] and ARGV[1..n].
func need(keys, argv []string, n int) bool { return len(keys) >= 1 && len(argv) >= n }

// nativeDeleteIfValue:
//
//	if redis.call("get", KEYS[1]) == ARGV[1] then return redis.call("del", KEYS[1]) else return 0 end
func nativeDeleteIfValue(e *engine, keys, argv []string) (lockapi.Value, bool) {
	if !need(keys, argv, 1) {
		return lockapi.Value{}, false
	}
	val, exists, ok := nativeGet(e, keys[0])
	if !ok {
		return lockapi.Value{}, false
	}
	if exists && val == argv[0] {
		return cmdDel(e, []string{"del", keys[0]}), true
	}
	return lockapi.IntValue(0), true
}

// nativeRedsyncDelete: as nativeDeleteIfValue, but -1 when the key is gone.
func nativeRedsyncDelete(e *engine, keys, argv []string) (lockapi.Value, bool) {
	if !need(keys, argv, 1) {
		return lockapi.Value{}, false
	}
	if _, exists, ok := nativeGet(e, keys[0]); ok && !exists {
		return lockapi.IntValue(-1), true
	}
	return nativeDeleteIfValue(e, keys, argv)
}

// nativePExpireIfValue:
//
//	if redis.call("get", KEYS[1]) == ARGV[1] then return redis.call("pexpire", KEYS[1], ARGV[2]) else return 0 end
func nativePExpireIfValue(e *engine, keys, argv []string) (lockapi.Value, bool) {
	if !need(keys, argv, 2) {
		return lockapi.Value{}, false
	}
	val, exists, ok := nativeGet(e, keys[0])
	if !ok {
		return lockapi.Value{}, false
	}
	if !exists || val != argv[0] {
		return lockapi.IntValue(0), true
	}
	return nativePExpire(e, keys[0], argv[1])
}

// nativePExpire runs PEXPIRE, declining (before any change: PEXPIRE checks
// its arguments first) when it would fail.
func nativePExpire(e *engine, key, ms string) (lockapi.Value, bool) {
	v := cmdExpire(e, []string{"pexpire", key, ms})
	if v.IsError() {
		return lockapi.Value{}, false
	}
	return v, true
}

// nativeRedsyncTouchOrSet:
//
//	if GET == ARGV[1] then return PEXPIRE(KEYS[1], ARGV[2])
//	elseif SET(KEYS[1], ARGV[1], "PX", ARGV[2], "NX") then return 1 else return 0 end
func nativeRedsyncTouchOrSet(e *engine, keys, argv []string) (lockapi.Value, bool) {
	if !need(keys, argv, 2) {
		return lockapi.Value{}, false
	}
	val, exists, ok := nativeGet(e, keys[0])
	if !ok {
		return lockapi.Value{}, false
	}
	if exists && val == argv[0] {
		return nativePExpire(e, keys[0], argv[1])
	}
	v := cmdSet(e, []string{"set", keys[0], argv[0], "PX", argv[1], "NX"})
	switch v.Kind {
	case lockapi.KindError:
		return lockapi.Value{}, false
	case lockapi.KindNil:
		return lockapi.IntValue(0), true
	}
	return lockapi.IntValue(1), true
}

// nativeRedislockPTTL:
//
//	if redis.call("get", KEYS[1]) == ARGV[1] then return redis.call("pttl", KEYS[1]) else return -3 end
func nativeRedislockPTTL(e *engine, keys, argv []string) (lockapi.Value, bool) {
	if !need(keys, argv, 1) {
		return lockapi.Value{}, false
	}
	val, exists, ok := nativeGet(e, keys[0])
	if !ok {
		return lockapi.Value{}, false
	}
	if exists && val == argv[0] {
		return cmdTTL(e, []string{"pttl", keys[0]}), true
	}
	return lockapi.IntValue(-3), true
}

// nativeRedislockObtain:
//
//	if redis.call("set", KEYS[1], ARGV[1], "NX", "PX", ARGV[3]) then return redis.status_reply("OK") end
//	local offset = tonumber(ARGV[2])
//	if redis.call("getrange", KEYS[1], 0, offset-1) == string.sub(ARGV[1], 1, offset) then
//	  return redis.call("set", KEYS[1], ARGV[1], "PX", ARGV[3]) end
func nativeRedislockObtain(e *engine, keys, argv []string) (lockapi.Value, bool) {
	if !need(keys, argv, 3) {
		return lockapi.Value{}, false
	}
	offset, ok := lockapi.ParseInt(argv[1])
	if !ok || offset < 1 || offset > 1<<20 {
		return lockapi.Value{}, false
	}
	if _, _, ok := nativeGet(e, keys[0]); !ok {
		return lockapi.Value{}, false // GETRANGE of a hash fails
	}
	v := cmdSet(e, []string{"set", keys[0], argv[0], "NX", "PX", argv[2]})
	switch v.Kind {
	case lockapi.KindError:
		return lockapi.Value{}, false
	case lockapi.KindStatus:
		return lockapi.StatusValue("OK"), true
	}
	prefix := cmdGetRange(e, []string{"getrange", keys[0], "0", formatInt(offset - 1)})
	want := argv[0]
	if int64(len(want)) > offset {
		want = want[:offset]
	}
	if prefix.Kind != lockapi.KindBulk || prefix.Str != want {
		return lockapi.NilValue(), true
	}
	return cmdSet(e, []string{"set", keys[0], argv[0], "PX", argv[2]}), true
}

// redisPyOwned is the redis-py scripts' opening:
//
//	local token = redis.call('get', KEYS[1])
//	if not token or token ~= ARGV[1] then return 0 end
func redisPyOwned(e *engine, keys, argv []string, n int) (owned, ok bool) {
	if !need(keys, argv, n) {
		return false, false
	}
	val, exists, ok := nativeGet(e, keys[0])
	return ok && exists && val == argv[0], ok
}

// nativeRedisPyRelease: then redis.call('del', KEYS[1]); return 1.
func nativeRedisPyRelease(e *engine, keys, argv []string) (lockapi.Value, bool) {
	owned, ok := redisPyOwned(e, keys, argv, 1)
	switch {
	case !ok:
		return lockapi.Value{}, false
	case !owned:
		return lockapi.IntValue(0), true
	}
	cmdDel(e, []string{"del", keys[0]})
	return lockapi.IntValue(1), true
}

// nativeRedisPyReacquire: then redis.call('pexpire', KEYS[1], ARGV[2]); return 1.
func nativeRedisPyReacquire(e *engine, keys, argv []string) (lockapi.Value, bool) {
	owned, ok := redisPyOwned(e, keys, argv, 2)
	switch {
	case !ok:
		return lockapi.Value{}, false
	case !owned:
		return lockapi.IntValue(0), true
	}
	if _, ok := nativePExpire(e, keys[0], argv[1]); !ok {
		return lockapi.Value{}, false
	}
	return lockapi.IntValue(1), true
}

// nativeRedisPyExtend: then
//
//	local expiration = redis.call('pttl', KEYS[1]); if expiration < 0 then return 0 end
//	local newttl = ARGV[2]; if ARGV[3] == "0" then newttl = ARGV[2] + expiration end
//	redis.call('pexpire', KEYS[1], newttl); return 1
func nativeRedisPyExtend(e *engine, keys, argv []string) (lockapi.Value, bool) {
	owned, ok := redisPyOwned(e, keys, argv, 3)
	switch {
	case !ok:
		return lockapi.Value{}, false
	case !owned:
		return lockapi.IntValue(0), true
	}
	exp := cmdTTL(e, []string{"pttl", keys[0]}).Int
	if exp < 0 {
		return lockapi.IntValue(0), true
	}
	newTTL := argv[1]
	if argv[2] == "0" {
		add, ok := lockapi.ParseInt(argv[1])
		if !ok || add > 1<<52 || add < -(1<<52) {
			return lockapi.Value{}, false // Lua arithmetic on other numbers
		}
		newTTL = formatInt(add + exp)
	}
	if _, ok := nativePExpire(e, keys[0], newTTL); !ok {
		return lockapi.Value{}, false
	}
	return lockapi.IntValue(1), true
}
