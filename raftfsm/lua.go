package raftfsm

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"math"
	"math/rand/v2"
	"regexp"
	"strconv"
	"strings"
	"time"

	lua "github.com/yuin/gopher-lua"

	"github.com/distlock/distlock/lockapi"
)

// Scripts run in gopher-lua inside Apply, on every replica, so the sandbox
// must make them deterministic (see DESIGN.md, "Scripts"):
//
//   - only the base, table, string and math libraries are opened, without
//     load/loadstring/dofile/loadfile/print/collectgarbage/getfenv/setfenv/
//     newproxy, string.dump and the pattern-matching functions (gopher-lua's
//     backtracking matcher has no step bound); string.find works with plain
//     patterns;
//   - time is the entry's: PTTL, expiry and TIME all see one frozen instant;
//   - math.random is a PCG seeded from the command's sequence number;
//   - tostring of a table or function prints no address;
//   - a deterministic budget bounds the work: gopher-lua calls the context's
//     Done once per VM instruction, so a context that counts those calls
//     stops a script after exactly scriptInstructions instructions on every
//     replica (a wall-clock deadline would stop it at different points on
//     different replicas). The same hook charges large strings that appear
//     in the running function's registers against scriptBytes and refuses a
//     string over scriptMaxString; the string functions that can build large
//     strings in Go (rep, format, table.concat) check sizes themselves, and
//     redis.call is limited to scriptCalls calls.

// Limits of one script run. Changing them changes replies, so every replica
// must run the same values: they are constants, not configuration.
const (
	scriptInstructions = 2_000_000
	scriptCalls        = 100_000
	scriptMaxString    = 1 << 20
	scriptBytes        = 128 << 20
	// scriptChargeMin is the smallest string the budgets count: each
	// instruction costs one more per scriptChargeMin bytes of such strings
	// in the running function's registers.
	scriptChargeMin = 4096
	// maxReplyElems and maxReplyDepth bound the conversion of a returned
	// table (which may refer to itself) into a reply.
	maxReplyElems = 1 << 20
	maxReplyDepth = 100
)

var (
	errScriptBudget = errors.New("ERR Script exceeded its deterministic instruction budget (2000000 instructions)")
	errScriptBytes  = errors.New("ERR Script built too much string data (budget 128 MiB)")
	errScriptString = errors.New("ERR Script built a string over 1 MiB")
	errScriptCalls  = errors.New("ERR Script made too many redis.call calls (at most 100000)")
)

// closedChan is returned by budget.Done once the budget is spent.
var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// budget is the deterministic context of one script run: Done is called by
// gopher-lua before every VM instruction.
type budget struct {
	L       *lua.LState
	left    int
	bytes   int
	lastSum int
	err     error
}

var _ context.Context = (*budget)(nil)

func (b *budget) Deadline() (time.Time, bool) { return time.Time{}, false }
func (b *budget) Value(any) any               { return nil }
func (b *budget) Err() error                  { return b.err }

// Done counts one instruction and checks the strings in the current frame.
func (b *budget) Done() <-chan struct{} {
	if b.err != nil {
		return closedChan
	}
	sum := 0
	for i, top := 1, b.L.GetTop(); i <= top; i++ {
		if s, ok := b.L.Get(i).(lua.LString); ok && len(s) >= scriptChargeMin {
			if len(s) > scriptMaxString {
				b.err = errScriptString
				return closedChan
			}
			sum += len(s)
		}
	}
	// An instruction costs one, plus one per scriptChargeMin bytes of the
	// large strings it may touch (compare, hash, copy).
	b.left -= 1 + sum/scriptChargeMin
	if b.left < 0 {
		b.err = errScriptBudget
		return closedChan
	}
	if sum > b.lastSum {
		b.bytes -= sum - b.lastSum
		if b.bytes < 0 {
			b.err = errScriptBytes
			return closedChan
		}
	}
	b.lastSum = sum
	return nil
}

// fail makes the budget spent with err: every further instruction raises,
// so even pcall cannot keep the script going.
func (b *budget) fail(err error) {
	if b.err == nil {
		b.err = err
	}
}

// scriptRun is the state of one script execution.
type scriptRun struct {
	e        *engine
	sha      string
	readOnly bool
	calls    int
	budget   *budget
	rng      *rand.Rand
	keys     []string
	argv     []string
}

// sha1hex returns the lower-case hex SHA1 of s, as Redis names scripts.
func sha1hex(s string) string {
	h := sha1.Sum([]byte(s))
	return hex.EncodeToString(h[:])
}

// compileScript compiles a script body as Redis's "user_script".
func compileScript(body string) (*lua.FunctionProto, error) {
	chunk, err := parseChunk(body)
	if err != nil {
		return nil, err
	}
	return lua.Compile(chunk, "user_script")
}

// runLua runs a compiled script with KEYS and ARGV and converts its result.
func (e *engine) runLua(sha string, proto *lua.FunctionProto, keys, argv []string, readOnly bool) lockapi.Value {
	L := lua.NewState(lua.Options{SkipOpenLibs: true, CallStackSize: 256,
		RegistrySize: 4 << 10, RegistryMaxSize: 64 << 10, RegistryGrowStep: 4 << 10})
	defer L.Close()
	run := &scriptRun{e: e, sha: sha, readOnly: readOnly || e.readOnly,
		rng: rand.New(rand.NewPCG(e.token, 0x9e3779b97f4a7c15)), keys: keys, argv: argv}
	run.budget = &budget{L: L, left: scriptInstructions, bytes: scriptBytes}
	run.openLibs(L)
	e.script = run
	defer func() { e.script = nil }()

	L.SetContext(run.budget)
	L.Push(L.NewFunctionFromProto(proto))
	err := L.PCall(0, 1, nil)
	if run.budget.err != nil {
		return lockapi.ErrorValue(run.budget.err.Error())
	}
	if err != nil {
		return run.errorReply(err)
	}
	return luaToValue(L.Get(-1), 0, new(int))
}

// userLine finds the script line an error was raised at in a stack trace.
var userLine = regexp.MustCompile(`user_script:(\d+):`)

// errorReply formats an error raised out of a script as Redis 7.0 does:
// "<message> script: <sha>, on @user_script:<line>.", where the message is
// the err field of a raised table, or "ERR " and the error text.
func (r *scriptRun) errorReply(err error) lockapi.Value {
	var msg string
	ae, ok := err.(*lua.ApiError)
	if !ok {
		return lockapi.ErrorValue("ERR " + err.Error())
	}
	if t, ok := ae.Object.(*lua.LTable); ok {
		if s, ok := t.RawGetString("err").(lua.LString); ok {
			msg = string(s)
		} else {
			msg = "ERR " + lua.LVAsString(ae.Object)
		}
	} else if s, ok := ae.Object.(lua.LString); ok {
		msg = "ERR " + string(s)
	} else if n, ok := ae.Object.(lua.LNumber); ok {
		msg = "ERR " + n.String()
	} else {
		msg = "ERR " + ae.Object.Type().String()
	}
	line := ""
	if m := userLine.FindStringSubmatch(ae.StackTrace); m != nil {
		line = m[1]
	} else if m := userLine.FindStringSubmatch(msg); m != nil {
		line = m[1]
	}
	msg = sanitize(msg)
	if line == "" {
		return lockapi.ErrorValue(msg + " script: " + r.sha)
	}
	return lockapi.ErrorValue(msg + " script: " + r.sha + ", on @user_script:" + line + ".")
}

// call implements redis.call (raise = true) and redis.pcall.
func (r *scriptRun) call(L *lua.LState, raise bool) int {
	fail := func(msg string) int {
		t := L.NewTable()
		t.RawSetString("err", lua.LString(msg))
		if raise {
			L.Error(t, 1)
			return 0
		}
		L.Push(t)
		return 1
	}
	n := L.GetTop()
	if n == 0 {
		return fail("ERR Please specify at least one argument for this redis lib call")
	}
	args := make([]string, n)
	for i := 1; i <= n; i++ {
		switch v := L.Get(i).(type) {
		case lua.LString:
			args[i-1] = string(v)
		case lua.LNumber:
			args[i-1] = formatLuaNumber(float64(v))
		default:
			return fail("ERR Lua redis lib command arguments must be strings or integers")
		}
	}
	r.calls++
	if r.calls > scriptCalls {
		r.budget.fail(errScriptCalls)
		L.RaiseError("%s", errScriptCalls.Error())
		return 0
	}
	spec := commands[strings.ToLower(args[0])]
	switch {
	case spec == nil:
		return fail("ERR Unknown Redis command called from script")
	case spec.noScript:
		return fail("ERR This Redis command is not allowed from script")
	case !arityOK(spec.arity, n):
		return fail("ERR Wrong number of args calling Redis command from script")
	case spec.write && r.readOnly:
		return fail("ERR Write commands are not allowed from read-only scripts.")
	}
	v := spec.fn(r.e, args)
	if v.Kind == lockapi.KindError {
		return fail(v.Str)
	}
	L.Push(valueToLua(L, v))
	return 1
}

// formatLuaNumber converts a Lua number passed to redis.call into its
// argument string, as Redis's fpconv_dtoa does: integers in plain digits.
func formatLuaNumber(f float64) string {
	if f == math.Trunc(f) && math.Abs(f) < 1e21 {
		return strconv.FormatFloat(f, 'f', -1, 64)
	}
	return strconv.FormatFloat(f, 'g', 17, 64)
}

// valueToLua converts a command reply for a script, as Redis does:
// integer -> number, bulk -> string, null -> false, status -> {ok=...},
// error -> {err=...}, array -> table.
func valueToLua(L *lua.LState, v lockapi.Value) lua.LValue {
	switch v.Kind {
	case lockapi.KindInt:
		return lua.LNumber(v.Int)
	case lockapi.KindBulk:
		return lua.LString(v.Str)
	case lockapi.KindStatus:
		t := L.NewTable()
		t.RawSetString("ok", lua.LString(v.Str))
		return t
	case lockapi.KindError:
		t := L.NewTable()
		t.RawSetString("err", lua.LString(v.Str))
		return t
	case lockapi.KindArray:
		t := L.CreateTable(len(v.Elems), 0)
		for i, el := range v.Elems {
			t.RawSetInt(i+1, valueToLua(L, el))
		}
		return t
	}
	return lua.LFalse
}

// luaToValue converts a script's result into a reply, as Redis does: a
// number is truncated to an integer, true is 1, false and nil are null, a
// table with an err or ok string field is an error or status reply, and any
// other table is an array up to its first nil.
func luaToValue(lv lua.LValue, depth int, elems *int) lockapi.Value {
	switch v := lv.(type) {
	case lua.LString:
		return lockapi.BulkValue(string(v))
	case lua.LNumber:
		return lockapi.IntValue(luaNumberToInt(float64(v)))
	case lua.LBool:
		if v {
			return lockapi.IntValue(1)
		}
		return lockapi.NilValue()
	case *lua.LTable:
		if s, ok := v.RawGetString("err").(lua.LString); ok {
			return lockapi.ErrorValue(string(s))
		}
		if s, ok := v.RawGetString("ok").(lua.LString); ok {
			return lockapi.StatusValue(string(s))
		}
		if depth >= maxReplyDepth {
			return lockapi.ErrorValue("ERR reached lua stack limit")
		}
		out := []lockapi.Value{}
		for i := 1; ; i++ {
			el := v.RawGetInt(i)
			if el == lua.LNil {
				break
			}
			if *elems++; *elems > maxReplyElems {
				return lockapi.ErrorValue("ERR script reply is too large")
			}
			c := luaToValue(el, depth+1, elems)
			if c.Kind == lockapi.KindError && c.Str == "ERR reached lua stack limit" {
				return c
			}
			out = append(out, c)
		}
		return lockapi.ArrayValue(out...)
	}
	return lockapi.NilValue()
}

// luaNumberToInt truncates like C's (long long) cast does on amd64: NaN and
// out-of-range values become the smallest int64, on every architecture.
func luaNumberToInt(f float64) int64 {
	if math.IsNaN(f) || f >= 9.223372036854775807e18 || f < -9.223372036854775808e18 {
		return math.MinInt64
	}
	return int64(f)
}
