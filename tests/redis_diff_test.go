//go:build unix

package tests

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// The differential tests run the same command sequences against a real
// Redis (Debian's redis-server, started here on a free loopback port) and a
// node, and require the same replies. Exceptions, where SPEC.md or the
// design says otherwise, are not compared: the texts of Lua runtime and
// compile errors (gopher-lua words them differently), INFO, HELLO, COMMAND,
// CLIENT LIST and TIME; and TTLs, which are compared within 2 s.

// startRedisServer runs redis-server on a free port until the test ends.
func startRedisServer(t *testing.T) string {
	t.Helper()
	bin := requireTool(t, "redis-server")
	port := freePort(t)
	dir := t.TempDir()
	cmd := exec.Command(bin, "--port", fmt.Sprint(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir)
	logf, err := os.Create(filepath.Join(dir, "redis.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		logf.Close()
	})
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer c.Close()
	poll(t, 10*time.Second, "redis-server up", func() bool { return c.Ping(context.Background()).Err() == nil })
	return addr
}

// reply renders a go-redis result for comparison.
func reply(v any, err error) string {
	if err != nil {
		return "err:" + err.Error()
	}
	switch v := v.(type) {
	case map[any]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, fmt.Sprintf("%#v=%s", k, reply(v[k], nil)))
		}
		sort.Strings(keys)
		return "map{" + strings.Join(keys, " ") + "}"
	case []any:
		parts := make([]string, len(v))
		for i, e := range v {
			parts[i] = reply(e, nil)
		}
		return "[" + strings.Join(parts, " ") + "]"
	}
	return fmt.Sprintf("%#v", v)
}

// sameReply compares two rendered replies. Remaining TTLs differ by the
// time between the two calls: for PTTL and TTL, and for a script's integer
// reply of 1000 or more (a PTTL it returned), two non-negative integers
// within 2000 of each other are the same.
func sameReply(cmd string, a, b string) bool {
	if a == b {
		return true
	}
	var x, y int64
	if _, err := fmt.Sscanf(a, "%d", &x); err != nil {
		return false
	}
	if _, err := fmt.Sscanf(b, "%d", &y); err != nil {
		return false
	}
	switch strings.ToLower(cmd) {
	case "pttl", "ttl":
		return x >= 0 && y >= 0 && x-y < 2000 && y-x < 2000
	case "eval", "evalsha":
		return x >= 1000 && y >= 1000 && x-y < 2000 && y-x < 2000
	}
	return false
}

// diffPair is a Redis and a node client speaking the same protocol.
type diffPair struct {
	t           *testing.T
	redis, node *redis.Client
}

func newDiffPair(t *testing.T, redisAddr, nodeAddr string, proto int) *diffPair {
	opts := func(addr string) *redis.Options {
		return &redis.Options{Addr: addr, Protocol: proto, MaxRetries: -1, ReadTimeout: 10 * time.Second}
	}
	d := &diffPair{t: t, redis: redis.NewClient(opts(redisAddr)), node: redis.NewClient(opts(nodeAddr))}
	t.Cleanup(func() { d.redis.Close(); d.node.Close() })
	return d
}

// do runs args on both and fails the test if the replies differ.
func (d *diffPair) do(ctx context.Context, args ...any) string {
	d.t.Helper()
	want := reply(d.redis.Do(ctx, args...).Result())
	got := reply(d.node.Do(ctx, args...).Result())
	if !sameReply(fmt.Sprint(args[0]), want, got) {
		d.t.Errorf("%q:\n redis: %s\n  node: %s", trimArgs(args), want, got)
	}
	return got
}

func trimArgs(args []any) []string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = fmt.Sprintf("%.60v", a)
	}
	return out
}

// diffCommands are the key-command sequences compared against Redis.
var diffCommands = [][]any{
	{"SET", "k", "v"}, {"GET", "k"}, {"SET", "k", "v2", "NX"}, {"set", "k", "v3", "xx"}, {"GET", "k"},
	{"SET", "k", "v", "NX", "XX"}, {"SET", "k", "v", "px", "0"}, {"SET", "k", "v", "PX", "-5"},
	{"SET", "k", "v", "EX", "abc"}, {"SET", "k", "v", "PX", "100", "EX", "10"}, {"SET", "k", "v", "PX", "30000", "px", "30000"},
	{"PTTL", "k"}, {"SET", "k", "v5", "GET"}, {"SET", "nokey", "v", "GET"}, {"SET", "k", "v6", "KEEPTTL"}, {"PTTL", "k"},
	{"SET", "k", "v", "KEEPTTL", "PX", "10"}, {"SET", "k", "v", "EX", "9223372036854775807"}, {"SET", "k", "v", "PX", "9223372036854775807"},
	{"SET", "past", "v", "PXAT", "1"}, {"GET", "past"}, {"EXISTS", "past"}, {"SET", "past", "v", "EXAT", "1"}, {"GET", "past"},
	{"SET", "fut", "v", "PXAT", fmt.Sprint(time.Now().Add(time.Hour).UnixMilli())}, {"TTL", "fut"},
	{"SET", "fut2", "v", "NX", "GET", "EX", "100"}, {"SET", "fut2", "w", "NX", "GET"}, {"TTL", "fut2"},
	{"SET", "01", "v", "PX", "01"}, {"SET", "k", "v", "PX", "+5"}, {"SET", "k", "v", "foo"},
	{"EXISTS", "k", "k", "nokey"}, {"DEL", "k", "nokey", "k"}, {"UNLINK", "nokey"}, {"EXISTS", "k"},
	{"PEXPIRE", "k", "1000"}, {"SET", "k", "v"}, {"TTL", "k"}, {"PTTL", "nokey"}, {"PEXPIRE", "k", "30000", "NX"},
	{"PEXPIRE", "k", "30000", "NX"}, {"PEXPIRE", "k", "40000", "XX"}, {"PEXPIRE", "k", "20000", "GT"},
	{"PEXPIRE", "k", "50000", "GT"}, {"PEXPIRE", "k", "60000", "LT"}, {"PEXPIRE", "k", "10000", "lt"}, {"PTTL", "k"},
	{"PEXPIRE", "k", "abc"}, {"PEXPIRE", "k", "100", "foo"}, {"PEXPIRE", "k", "abc", "foo"}, {"PEXPIRE", "k", "100", "nx", "xx"},
	{"PEXPIRE", "k", "100", "gt", "lt"}, {"EXPIRE", "k", "9223372036854775807"}, {"PEXPIRE", "k", "9223372036854775807"},
	{"EXPIRE", "k", "100"}, {"TTL", "k"}, {"PERSIST", "k"}, {"PERSIST", "k"}, {"TTL", "k"}, {"PEXPIRE", "k", "100", "LT"},
	{"PERSIST", "nokey"}, {"PEXPIRE", "k", "-1"}, {"EXISTS", "k"}, {"PEXPIREAT", "nokey", "1"},
	{"SET", "k", "hello world"}, {"EXPIREAT", "k", fmt.Sprint(time.Now().Add(time.Hour).Unix())}, {"TTL", "k"},
	{"PEXPIREAT", "k", "1"}, {"GET", "k"},
	{"SET", "s", "hello"}, {"GETRANGE", "s", "0", "2"}, {"GETRANGE", "s", "-3", "-1"}, {"GETRANGE", "s", "5", "1"},
	{"GETRANGE", "s", "-1", "-3"}, {"GETRANGE", "s", "0", "100"}, {"GETRANGE", "nokey", "0", "1"}, {"GETRANGE", "s", "a", "b"},
	{"STRLEN", "s"}, {"STRLEN", "nokey"}, {"MGET", "s", "nokey"}, {"MSET", "a", "1", "b", "2"}, {"MSET", "a"},
	{"MSET", "a", "1", "b"}, {"MSETNX", "a", "1", "c", "3"}, {"MSETNX", "c", "3", "d", "4"}, {"MGET", "a", "b", "c", "d"},
	{"HSET", "h", "f", "1", "g", "2"}, {"HSET", "h", "f", "3"}, {"HSET", "h", "f"}, {"HGET", "h", "f"}, {"HGET", "h", "nof"},
	{"HGET", "s", "f"}, {"HGET", "nokey", "f"}, {"HINCRBY", "h", "f", "5"}, {"HINCRBY", "h", "f", "x"},
	{"HSET", "h", "str", "abc"}, {"HINCRBY", "h", "str", "1"}, {"HINCRBY", "h", "big", "9223372036854775807"},
	{"HINCRBY", "h", "big", "1"}, {"HINCRBY", "h", "new", "-3"}, {"HEXISTS", "h", "f"}, {"HEXISTS", "h", "nof"},
	{"HEXISTS", "s", "f"}, {"HLEN", "h"}, {"HLEN", "nokey"}, {"HLEN", "s"}, {"MGET", "h", "s"}, {"TYPE", "h"}, {"TYPE", "s"},
	{"TYPE", "nokey"}, {"GET", "h"}, {"SET", "h", "x", "GET"}, {"HINCRBY", "s", "f", "1"}, {"HDEL", "h", "f", "g", "nof"},
	{"HDEL", "h", "str", "big", "new"}, {"HDEL", "h", "f", "g", "nof"}, {"HLEN", "h"},
	{"HSET", "h2", "a", "1"}, {"PEXPIRE", "h2", "50000"}, {"HSET", "h2", "b", "2"}, {"PTTL", "h2"}, {"SET", "h2", "str"}, {"PTTL", "h2"},
	{"GET"}, {"SET", "k"}, {"NOSUCHCMD", "a"}, {"HSET", "h"}, {"PUBLISH", "ch", "msg"}, {"DBSIZE"},
	// Scripts.
	{"EVAL", "return 1", "0"}, {"EVAL", "return 1", "-1"}, {"EVAL", "return 1", "2", "a"}, {"EVAL", "return 1", "abc"},
	{"EVALSHA", "abc", "0"}, {"EVALSHA", strings.Repeat("a", 40), "0"}, {"EVALSHA", strings.Repeat("a", 40), "5"},
	{"SCRIPT", "LOAD", "return 'loaded'"}, {"EVALSHA", "0a3ded6c8a61da3b2b36e4d32a7c2c4d3ac8ab2f", "0"},
	{"SCRIPT", "EXISTS", "0a3ded6c8a61da3b2b36e4d32a7c2c4d3ac8ab2f", "0A3DED6C8A61DA3B2B36E4D32A7C2C4D3AC8AB2F", "ffff"},
	{"EVALSHA", "0A3DED6C8A61DA3B2B36E4D32A7C2C4D3AC8AB2F", "0"},
	{"SCRIPT", "FLUSH", "foo"}, {"SCRIPT", "FLUSH"}, {"SCRIPT", "EXISTS", "0a3ded6c8a61da3b2b36e4d32a7c2c4d3ac8ab2f"},
	{"SCRIPT", "LOAD"}, {"SCRIPT", "FOO"}, {"SCRIPT", "KILL"},
	{"EVAL", "return {1,2,3.7,'x',false,nil,5}", "0"}, {"EVAL", "return {err='boom'}", "0"}, {"EVAL", "return {ok='fine'}", "0"},
	{"EVAL", "return redis.error_reply('MY bad thing')", "0"}, {"EVAL", "return redis.status_reply('FINE')", "0"},
	{"EVAL", "return true", "0"}, {"EVAL", "return false", "0"}, {"EVAL", "return nil", "0"}, {"EVAL", "return 3.99", "0"},
	{"EVAL", "return -3.99", "0"}, {"EVAL", "return {1,{2,{3,'x'}},{}}", "0"}, {"EVAL", "return redis.call('get','missing')", "0"},
	{"EVAL", "return redis.pcall('nosuch')", "0"}, {"EVAL", "return redis.pcall('get', KEYS[1])", "1", "h"},
	{"EVAL", "local x = 1\nreturn redis.call('get', KEYS[1])", "1", "h"}, {"EVAL", "return redis.call('nosuch')", "0"},
	{"EVAL", "error({err='E1 x'})", "0"}, {"EVAL", "return redis.call()", "0"}, {"EVAL", "return redis.call('get', {})", "0"},
	{"EVAL", "redis.call('set', KEYS[1], 1.5) return redis.call('get', KEYS[1])", "1", "num"},
	{"EVAL", "redis.call('set', KEYS[1], 30000) return redis.call('get', KEYS[1])", "1", "num"},
	{"EVAL", "redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2]) return redis.call('pttl', KEYS[1]) > 29000", "1", "sk", "v", "30000"},
	{"EVAL", "return redis.call('pexpire', KEYS[1], 'abc')", "1", "sk"},
	{"EVAL", "return {redis.call('hset', KEYS[1], 'a', 1), redis.call('hincrby', KEYS[1], 'a', 2), redis.call('hget', KEYS[1], 'a')}", "1", "hh"},
	{"EVAL", "return redis.call('set', KEYS[1], 'x')", "1", "sk"}, {"EVAL", "return redis.call('del', KEYS[1], KEYS[2])", "2", "sk", "hh"},
	{"EVAL", "return #KEYS + #ARGV", "2", "a", "b", "c"}, {"EVAL", "return tonumber(ARGV[1]) + 1", "0", "41"},
	{"EVAL", "return string.sub(ARGV[1], 1, 3) .. string.len(ARGV[1])", "0", "abcdef"},
	{"EVAL_RO", "return redis.call('get', KEYS[1])", "1", "s"}, {"EVAL", "return redis.call('pttl', KEYS[1])", "1", "s"},
}

// TestRedisDiffCommands compares the key commands and scripts with Redis,
// in RESP2 and RESP3.
func TestRedisDiffCommands(t *testing.T) {
	redisAddr := startRedisServer(t)
	p := newProc(t, "node1")
	p.start()
	for _, proto := range []int{2, 3} {
		t.Run(fmt.Sprintf("resp%d", proto), func(t *testing.T) {
			ctx := ctxFor(t)
			d := newDiffPair(t, redisAddr, p.respAddr(), proto)
			// Start from empty keyspaces.
			d.redis.FlushAll(ctx)
			d.node.Do(ctx, "DEL", "k", "nokey", "past", "fut", "fut2", "01", "s", "a", "b", "c", "d", "h", "h2", "num", "sk", "hh")
			d.node.Do(ctx, "SCRIPT", "FLUSH")
			for _, args := range diffCommands {
				d.do(ctx, args...)
			}
		})
	}
}

// lockScripts loads the lock scripts the libraries send, byte for byte
// (their SHA1s are checked in raftfsm's tests).
func lockScripts(t *testing.T) map[string]string {
	t.Helper()
	files, err := filepath.Glob("../raftfsm/testdata/lockscripts/*.lua")
	if err != nil || len(files) == 0 {
		t.Fatalf("lock scripts: %v (%d files)", err, len(files))
	}
	out := map[string]string{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out[strings.TrimSuffix(filepath.Base(f), ".lua")] = string(b)
	}
	return out
}

// lockStates set a key up before a script runs.
var lockStates = map[string][][]any{
	"absent":      nil,
	"own":         {{"SET", "lk", "tok", "PX", "30000"}},
	"own-no-ttl":  {{"SET", "lk", "tok"}},
	"other":       {{"SET", "lk", "other", "PX", "30000"}},
	"hash":        {{"HSET", "lk", "tok", "1"}},
	"hash-ttl":    {{"HSET", "lk", "tok", "2"}, {"PEXPIRE", "lk", "30000"}},
	"own-prefix":  {{"SET", "lk", "tokXYZ", "PX", "30000"}},
	"second-held": {{"SET", "lk2", "tok", "PX", "30000"}},
}

// lockArgs are the KEYS and ARGV each script is run with.
var lockArgs = [][]string{
	{"1", "lk", "tok", "10000"},
	{"1", "lk", "tok", "abc"},
	{"1", "lk", "tok"},
	{"1", "lk", "tok", "3000", "20000"},
	{"1", "lk", "tok", "10000", "0"},
	{"1", "lk", "tok", "10000", "5000"},
	{"1", "lk", "tokABC", "3000", "20000"},
	{"1", "lk", "20000", "tok"},
	{"2", "lk", "lk2", "tok", "10000"},
	{"0"},
}

// TestRedisDiffLockScripts runs every known lock script (redsync,
// bsm/redislock, redis-py, node-redlock v4/v5, the redis.io release,
// Redisson's lock) on Redis and on a node, from the same states and with the
// same arguments, and requires the same replies and the same key afterwards.
// On the node the well-known ones take the native fast path.
func TestRedisDiffLockScripts(t *testing.T) {
	redisAddr := startRedisServer(t)
	p := newProc(t, "node1")
	p.start()
	scripts := lockScripts(t)
	names := make([]string, 0, len(scripts))
	for n := range scripts {
		names = append(names, n)
	}
	sort.Strings(names)
	states := make([]string, 0, len(lockStates))
	for s := range lockStates {
		states = append(states, s)
	}
	sort.Strings(states)
	ctx := ctxFor(t)
	d := newDiffPair(t, redisAddr, p.respAddr(), 2)
	for _, name := range names {
		body := scripts[name]
		for _, state := range states {
			for _, args := range lockArgs {
				for _, c := range []*redis.Client{d.redis, d.node} {
					c.Del(ctx, "lk", "lk2")
					for _, step := range lockStates[state] {
						if err := c.Do(ctx, step...).Err(); err != nil {
							t.Fatalf("%s setup %v: %v", state, step, err)
						}
					}
				}
				ev := []any{"EVAL", body}
				for _, a := range args {
					ev = append(ev, a)
				}
				before := t.Failed()
				d.do(ctx, ev...)
				d.do(ctx, "TYPE", "lk")
				d.do(ctx, "GET", "lk")
				d.do(ctx, "PTTL", "lk")
				d.do(ctx, "HGET", "lk", "tok")
				d.do(ctx, "GET", "lk2")
				if !before && t.Failed() {
					t.Logf("^ script %s, state %s, args %v", name, state, args)
				}
			}
		}
	}
}
