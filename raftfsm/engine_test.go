package raftfsm

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/distlock/distlock/lockapi"
)

// run applies a Redis command at index idx and cluster time now.
func run(t *testing.T, f *FSM, idx uint64, now time.Duration, args ...string) lockapi.Value {
	t.Helper()
	r := applyCmd(t, f, idx, execCmd(now, args...))
	if r.Err != nil {
		t.Fatalf("%v: Err = %v", args, r.Err)
	}
	return r.Reply
}

func TestEngineSetIsALock(t *testing.T) {
	f := New()
	if v := run(t, f, 5, 0, "SET", "k", "alice", "NX", "PX", "30000"); v.String() != "OK" {
		t.Fatalf("SET NX = %v", v)
	}
	l, _ := f.Get("k")
	if l.Owner != "alice" || l.Token != 5 || l.Version != 1 || l.TTL != 30*s || l.Deadline != 30*s {
		t.Fatalf("SET key = %+v", l)
	}
	// LOCK.ACQUIRE by the same owner extends it: same token.
	r := applyCmd(t, f, 6, acq(s, "k", "alice", 60*s))
	if r.Err != nil || !r.Extended || r.Lock.Token != 5 || r.Lock.Version != 2 {
		t.Fatalf("acquire on SET key = %+v", r)
	}
	// SET of the same value keeps the token; another value is a new holder.
	run(t, f, 7, 2*s, "SET", "k", "alice", "PX", "1000")
	if l, _ := f.Get("k"); l.Token != 5 || l.Version != 3 {
		t.Fatalf("same-value SET = %+v", l)
	}
	run(t, f, 8, 2*s, "SET", "k", "bob")
	if l, _ := f.Get("k"); l.Token != 8 || l.Version != 1 || l.HasTTL() {
		t.Fatalf("other-value SET = %+v", l)
	}
	// PEXPIRE renews: token kept, version bumped.
	run(t, f, 9, 2*s, "PEXPIRE", "k", "5000")
	if l, _ := f.Get("k"); l.Token != 8 || l.Version != 2 || l.Deadline != 7*s {
		t.Fatalf("PEXPIRE = %+v", l)
	}
	// A lock made by LOCK.ACQUIRE is a string for GET.
	applyCmd(t, f, 10, acq(2*s, "lk", "carol", 10*s))
	if v := run(t, f, 11, 2*s, "GET", "lk"); v.Str != "carol" {
		t.Fatalf("GET of a lock = %v", v)
	}
	if v := run(t, f, 12, 2*s, "SET", "lk", "x", "NX", "PX", "10"); v.Kind != lockapi.KindNil {
		t.Fatalf("SET NX on a LOCK.ACQUIRE lock = %v", v)
	}
	// Hashes are WRONGTYPE for LOCK.*.
	run(t, f, 13, 2*s, "HSET", "h", "f", "1")
	if r := applyCmd(t, f, 14, acq(2*s, "h", "o", s)); !errors.Is(r.Err, lockapi.ErrWrongType) {
		t.Fatalf("acquire on a hash: %v", r.Err)
	}
	if r := applyCmd(t, f, 15, rel(2*s, "h", "o", 0)); !errors.Is(r.Err, lockapi.ErrWrongType) {
		t.Fatalf("release of a hash: %v", r.Err)
	}
	// DEL frees the lock and wakes waiters.
	var freed []string
	f.OnFree(func(k string) { freed = append(freed, k) })
	run(t, f, 16, 2*s, "DEL", "lk", "h", "none")
	if fmt.Sprint(freed) != "[lk h]" {
		t.Fatalf("freed = %v", freed)
	}
	// Keys without a TTL survive the end of time.
	applyCmd(t, f, 17, exp(1<<62))
	if l, ok := f.Get("k"); ok {
		t.Fatalf("k (with a TTL) survived: %+v", l)
	}
	run(t, f, 18, 1<<62, "SET", "forever", "v")
	applyCmd(t, f, 19, exp(1<<63-1))
	if _, ok := f.Get("forever"); !ok {
		t.Fatal("a key without a TTL expired")
	}
}

func TestEngineAbsoluteExpiry(t *testing.T) {
	f := New()
	wall := int64(1_700_000_000_000) // execCmd's wall clock at now = 0
	run(t, f, 1, 0, "SET", "a", "v", "PXAT", fmt.Sprint(wall+2500))
	if l, _ := f.Get("a"); l.Deadline != 2500*time.Millisecond {
		t.Fatalf("PXAT deadline = %v, want 2.5s of cluster time", l.Deadline)
	}
	run(t, f, 2, 0, "SET", "b", "v", "EXAT", fmt.Sprint(wall/1000-1))
	if _, ok := f.Get("b"); ok {
		t.Fatal("EXAT in the past stored a key")
	}
	run(t, f, 3, s, "PEXPIREAT", "a", fmt.Sprint(wall+1000+4000))
	if l, _ := f.Get("a"); l.Deadline != 5*s {
		t.Fatalf("PEXPIREAT deadline = %v, want 5s", l.Deadline)
	}
	// TIME in a script is the entry's wall clock, frozen.
	v := run(t, f, 4, 2*s, "EVAL", "local a = redis.call('TIME'); local b = redis.call('TIME'); return {a[1], a[2], b[1] == a[1] and b[2] == a[2]}", "0")
	if v.String() != `["1700000002", "0", (integer) 1]` {
		t.Fatalf("TIME = %v", v)
	}
}

func TestEngineReadsDoNotWrite(t *testing.T) {
	f := New()
	run(t, f, 1, 0, "SET", "k", "v", "PX", "1000")
	if v := f.Read([]string{"GET", "k"}, 500*time.Millisecond, 0); v.Str != "v" {
		t.Fatalf("GET = %v", v)
	}
	// A read ahead of the applied time sees the key expired.
	if v := f.Read([]string{"PTTL", "k"}, 2*s, 0); v.Int != -2 {
		t.Fatalf("PTTL after the deadline = %v", v)
	}
	if v := f.Read([]string{"EVAL_RO", "return redis.call('set', KEYS[1], 'x')", "1", "k"}, 0, 0); !strings.HasPrefix(v.Str, "ERR Write commands are not allowed from read-only scripts.") {
		t.Fatalf("EVAL_RO write = %v", v)
	}
	if v := f.Read([]string{"SET", "k", "x"}, 0, 0); !v.IsError() {
		t.Fatalf("SET as a read = %v", v)
	}
	if l, _ := f.Get("k"); l.Owner != "v" {
		t.Fatalf("a read changed the key: %+v", l)
	}
}

func TestScriptSandbox(t *testing.T) {
	tests := []struct{ name, body, want string }{
		{"infinite loop", "while true do end", "(error) ERR Script exceeded its deterministic instruction budget"},
		{"pcall cannot catch the budget", "while true do pcall(function() while true do end end) end", "(error) ERR Script exceeded"},
		{"string doubling", "local s = 'x' while true do s = s .. s end", "(error) ERR Script built a string over 1 MiB"},
		{"string.rep", "return string.rep('x', 1e9)", "(error) ERR user_script:1: string.rep result over"},
		{"format width", "return string.format('%999999d', 1)", "(error) ERR user_script:1: invalid format"},
		{"deep recursion", "local function f() return f() + 1 end return f()", "(error) ERR "},
		{"unpack", "return #{unpack({}, 1, 1e8)}", "(error) ERR "},
		{"self-referencing table", "local t = {} t[1] = t return t", "(error) ERR reached lua stack limit"},
		{"no os", "return os.time()", "(error) ERR user_script:1: Script attempted to access nonexistent global variable 'os'"},
		{"no io", "return io", "(error) ERR user_script:1: Script attempted to access nonexistent global variable 'io'"},
		{"no load", "return loadstring('return 1')()", "(error) ERR user_script:1: Script attempted to access nonexistent global variable 'loadstring'"},
		{"no globals", "x = 1", "(error) ERR user_script:1: Script attempted to create global variable 'x'"},
		{"no patterns", "return string.gsub('a', 'a', 'b')", "(error) ERR "},
		{"plain find", "return {string.find('hello', 'll', 1, true)}", "[(integer) 3, (integer) 4]"},
		{"tostring has no address", "return tostring({})", `"table: 0x0"`},
		{"random is seeded", "return math.random(1000000)", "(integer) "},
		{"no addresses in errors", "local ok, e = pcall(function() local x return x[{}] end) return e", `"user_script:1: attempt to index a non-table object(nil) with key 'table: 0x0'"`},
		{"no addresses in xpcall", "local ok, e = xpcall(function() local x return x[{}] end, function(m) return m end) return e", `"user_script:1: attempt to index a non-table object(nil) with key 'table: 0x0'"`},
		{"no addresses in format", "return string.format('%s %v', {}, function() end)", `"table: 0x0 function: 0x0"`},
		{"error with a function", "error(function() end)", "(error) ERR function script:"},
		{"pairs order is fixed", "local t = {} for _, lib in ipairs({redis, string, math, table, _G}) do for k in pairs(lib) do t[#t+1] = k end end return table.concat(t, ',')", `"`},
		{"string methods are sandboxed", "return ('x'):rep(1e9)", "(error) ERR user_script:1: string.rep result over"},
		{"no pattern methods", "return ('x'):gsub('x', 'y')", "(error) ERR user_script:1: attempt to call a non-function object"},
		{"coroutines absent", "return coroutine", "(error) ERR user_script:1: Script attempted to access nonexistent global variable 'coroutine'"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := New(), New()
			va := run(t, a, 7, 0, "EVAL", tt.body, "0")
			vb := run(t, b, 7, 0, "EVAL", tt.body, "0")
			if !strings.HasPrefix(va.String(), tt.want) {
				t.Fatalf("got %v, want prefix %s", va, tt.want)
			}
			if va.String() != vb.String() || !bytes.Equal(snapshotBytes(t, a), snapshotBytes(t, b)) {
				t.Fatalf("replicas differ: %v vs %v", va, vb)
			}
		})
	}
}

// lockScript reads a lock script from testdata, byte for byte.
func lockScripts(t testing.TB) map[string]string {
	files, _ := filepath.Glob("testdata/lockscripts/*.lua")
	out := map[string]string{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out[sha1hex(string(b))] = string(b)
	}
	return out
}

func TestNativeScriptsHaveTheirTexts(t *testing.T) {
	texts := lockScripts(t)
	for sha := range natives {
		if _, ok := texts[sha]; !ok {
			t.Errorf("native %s has no script text in testdata/lockscripts", sha)
		}
	}
}

// TestNativeMatchesLua runs every native script and its Lua text from
// random states with random arguments on two state machines and requires
// the same replies and byte-identical snapshots.
func TestNativeMatchesLua(t *testing.T) {
	texts := lockScripts(t)
	rng := rand.New(rand.NewSource(1))
	values := []string{"tok", "other", "tokXYZ", "", "1"}
	ttls := []string{"10000", "1", "0", "-5", "abc", "9223372036854775807", "3", "1.5", ""}
	for sha := range natives {
		body := texts[sha]
		native, lua := New(), New()
		lua.noNatives = true
		now := time.Duration(0)
		for i := uint64(1); i <= 400; i++ {
			now += time.Duration(rng.Intn(3000)) * time.Millisecond
			var setup []string
			switch rng.Intn(6) {
			case 0:
				setup = []string{"DEL", "k"}
			case 1:
				setup = []string{"SET", "k", values[rng.Intn(len(values))], "PX", fmt.Sprint(1 + rng.Intn(5000))}
			case 2:
				setup = []string{"SET", "k", values[rng.Intn(len(values))]}
			case 3:
				setup = []string{"HSET", "k", "tok", "1"}
			}
			args := []string{"EVAL", body, "1", "k"}
			for n := rng.Intn(5); n > 0; n-- {
				if rng.Intn(2) == 0 {
					args = append(args, values[rng.Intn(len(values))])
				} else {
					args = append(args, ttls[rng.Intn(len(ttls))])
				}
			}
			if rng.Intn(10) == 0 {
				args[2] = "0"
			}
			for _, f := range []*FSM{native, lua} {
				if setup != nil {
					run(t, f, 2*i, now, setup...)
				}
			}
			vn := run(t, native, 2*i+1, now, args...)
			vl := run(t, lua, 2*i+1, now, args...)
			if vn.String() != vl.String() {
				t.Fatalf("script %s args %q after %q: native %v, Lua %v", sha, args[2:], setup, vn, vl)
			}
			if !bytes.Equal(snapshotBytes(t, native), snapshotBytes(t, lua)) {
				t.Fatalf("script %s args %q after %q: states differ", sha, args[2:], setup)
			}
		}
	}
}

// TestEngineDeterminism applies a random mix of key commands, scripts and
// lock commands to two state machines and compares every reply and the
// snapshots.
func TestEngineDeterminism(t *testing.T) {
	for seed := int64(1); seed <= 5; seed++ {
		a, b := New(), New()
		for i, c := range randomExecLog(seed, 300) {
			ra := a.Apply(&raft.Log{Index: uint64(i + 1), Data: Encode(nil, c)}).(*Result)
			rb := b.Apply(&raft.Log{Index: uint64(i + 1), Data: Encode(nil, c)}).(*Result)
			if ra.Reply.String() != rb.Reply.String() || fmt.Sprint(ra.Err) != fmt.Sprint(rb.Err) {
				t.Fatalf("seed %d entry %d: %v / %v", seed, i+1, ra.Reply, rb.Reply)
			}
		}
		sa, sb := snapshotBytes(t, a), snapshotBytes(t, b)
		if !bytes.Equal(sa, sb) {
			t.Fatalf("seed %d: snapshots differ", seed)
		}
		g := New()
		if err := g.Restore(nopCloser{bytes.NewReader(sa)}); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(snapshotBytes(t, g), sa) {
			t.Fatalf("seed %d: restore does not round-trip", seed)
		}
	}
}

// randomExecLog returns a reproducible mix of Redis commands and lock
// commands over a few keys.
func randomExecLog(seed int64, n int) []Command {
	rng := rand.New(rand.NewSource(seed))
	keys := []string{"a", "b", "h"}
	cmds := [][]string{
		{"SET", "%k", "v%d", "PX", "%t"}, {"SET", "%k", "v%d", "NX", "PX", "%t"}, {"SET", "%k", "v%d"},
		{"DEL", "%k"}, {"PEXPIRE", "%k", "%t"}, {"PERSIST", "%k"}, {"HSET", "%k", "f%d", "1"},
		{"HINCRBY", "%k", "f%d", "2"}, {"HDEL", "%k", "f%d"}, {"GET", "%k"}, {"PTTL", "%k"},
		{"EVAL", "return {math.random(100), redis.call('exists', KEYS[1]), redis.pcall('get', KEYS[1])}", "1", "%k"},
		{"SCRIPT", "LOAD", "return %d"}, {"EVALSHA", "%s", "0"}, {"SCRIPT", "FLUSH"},
	}
	var now time.Duration
	var out []Command
	for i := 0; i < n; i++ {
		now += time.Duration(rng.Intn(500)) * time.Millisecond
		k := keys[rng.Intn(len(keys))]
		if rng.Intn(5) == 0 {
			out = append(out, acq(now, k, fmt.Sprint("o", rng.Intn(2)), time.Duration(1+rng.Intn(2000))*time.Millisecond))
			continue
		}
		tmpl := cmds[rng.Intn(len(cmds))]
		args := make([]string, len(tmpl))
		d := rng.Intn(3)
		for j, a := range tmpl {
			a = strings.ReplaceAll(a, "%k", k)
			a = strings.ReplaceAll(a, "%t", fmt.Sprint(1+rng.Intn(3000)))
			a = strings.ReplaceAll(a, "%s", sha1hex(fmt.Sprintf("return %d", d)))
			a = strings.ReplaceAll(a, "%d", fmt.Sprint(d))
			args[j] = a
		}
		out = append(out, execCmd(now, args...))
	}
	return out
}

// BenchmarkScript compares a lock script on its native path and in Lua.
func BenchmarkScript(b *testing.B) {
	body := lockScripts(b)["e950836ed1e694540c503ef9972b8de518044d3b"] // redsync delete
	for _, name := range []string{"native", "lua"} {
		b.Run(name, func(b *testing.B) {
			f := New()
			f.noNatives = name == "lua"
			for i := 0; i < b.N; i++ {
				idx := uint64(2*i + 1)
				f.Apply(&raft.Log{Index: idx, Data: Encode(nil, execCmd(0, "SET", "k", "v", "PX", "10000"))})
				f.Apply(&raft.Log{Index: idx + 1, Data: Encode(nil, execCmd(0, "EVAL", body, "1", "k", "v"))})
			}
		})
	}
}
