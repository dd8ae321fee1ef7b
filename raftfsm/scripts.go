package raftfsm

import (
	"sort"
	"strings"
	"sync"

	lua "github.com/yuin/gopher-lua"

	"github.com/distlock/distlock/lockapi"
)

// maxScripts bounds the replicated script cache. When it is full, adding a
// script evicts the oldest one (in apply order), on every replica alike.
const maxScripts = 1000

// errNoScript is Redis's exact reply to EVALSHA of an unknown script;
// clients match on it to fall back to EVAL or SCRIPT LOAD.
var errNoScript = lockapi.ErrorValue("NOSCRIPT No matching script. Please use EVAL.")

// scriptEntry is one cached script body and its insertion sequence number.
type scriptEntry struct {
	body string
	seq  uint64
}

// scriptCache is the replicated script cache: SHA1 -> body. It is part of
// the snapshot, so EVALSHA works on a new leader after a failover.
type scriptCache struct {
	m   map[string]scriptEntry
	seq uint64 // last sequence number given out
}

func (c *scriptCache) get(sha string) (string, bool) {
	s, ok := c.m[sha]
	return s.body, ok
}

func (c *scriptCache) add(sha, body string) {
	if _, ok := c.m[sha]; ok {
		return
	}
	if c.m == nil {
		c.m = make(map[string]scriptEntry)
	}
	if len(c.m) >= maxScripts {
		oldest, min := "", uint64(1<<64-1)
		for k, v := range c.m {
			if v.seq < min {
				oldest, min = k, v.seq
			}
		}
		delete(c.m, oldest)
	}
	c.seq++
	c.m[sha] = scriptEntry{body: body, seq: c.seq}
}

func (c *scriptCache) flush() { c.m = nil }

// copy returns an independent copy (for a snapshot).
func (c *scriptCache) copy() scriptCache {
	out := scriptCache{seq: c.seq, m: make(map[string]scriptEntry, len(c.m))}
	for k, v := range c.m {
		out.m[k] = v
	}
	return out
}

// sorted returns the SHAs in ascending order.
func (c *scriptCache) sorted() []string {
	shas := make([]string, 0, len(c.m))
	for k := range c.m {
		shas = append(shas, k)
	}
	sort.Strings(shas)
	return shas
}

// protoCache keeps compiled scripts by SHA1. It is local to a node and not
// replicated state: compiling is deterministic, so it only saves work.
type protoCache struct {
	mu sync.Mutex
	m  map[string]*lua.FunctionProto
}

// compiled returns the compiled body, compiling it if needed.
func (p *protoCache) compiled(sha, body string) (*lua.FunctionProto, error) {
	p.mu.Lock()
	proto, ok := p.m[sha]
	p.mu.Unlock()
	if ok {
		return proto, nil
	}
	proto, err := compileScript(body)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.m == nil || len(p.m) >= 2*maxScripts {
		p.m = make(map[string]*lua.FunctionProto)
	}
	p.m[sha] = proto
	return proto, nil
}

func compileError(err error) lockapi.Value {
	return lockapi.ErrorValue("ERR Error compiling script (new function): " + err.Error())
}

// EVAL script numkeys [key ...] [arg ...], EVALSHA sha1 numkeys ...,
// EVAL_RO, EVALSHA_RO
func cmdEval(e *engine, args []string) lockapi.Value {
	name := strings.ToLower(args[0])
	bySha := strings.HasPrefix(name, "evalsha")
	ro := strings.HasSuffix(name, "_ro")
	if bySha && len(args[1]) != 40 {
		return errNoScript
	}
	numkeys, ok := lockapi.ParseInt(args[2])
	switch {
	case !ok:
		return errNotInteger
	case numkeys > int64(len(args)-3):
		return lockapi.ErrorValue("ERR Number of keys can't be greater than number of args")
	case numkeys < 0:
		return lockapi.ErrorValue("ERR Number of keys can't be negative")
	}
	keys, argv := args[3:3+numkeys], args[3+numkeys:]
	sha, body := strings.ToLower(args[1]), args[1]
	if bySha {
		if body, ok = e.f.scripts.get(sha); !ok {
			return errNoScript
		}
	} else {
		sha = sha1hex(body)
	}
	proto, err := e.f.protos.compiled(sha, body)
	if err != nil {
		return compileError(err)
	}
	if !e.readOnly {
		e.f.scripts.add(sha, body)
	}
	if native := natives[sha]; native != nil && !ro && !e.readOnly && !e.f.noNatives {
		if v, ok := native(e, keys, argv); ok {
			return v
		}
	}
	return e.runLua(sha, proto, keys, argv, ro)
}

// scriptHelp is SCRIPT HELP's reply.
var scriptHelp = []string{
	"SCRIPT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
	"EXISTS <sha1> [<sha1> ...]",
	"    Return information about the existence of the scripts in the script cache.",
	"FLUSH [ASYNC|SYNC]",
	"    Flush the Lua scripts cache.",
	"KILL",
	"    Kill the currently executing Lua script.",
	"LOAD <script>",
	"    Load a script into the scripts cache without executing it.",
	"HELP",
	"    Print this help.",
}

// SCRIPT LOAD script | EXISTS sha1 [sha1 ...] | FLUSH [ASYNC|SYNC] | KILL | HELP
func cmdScript(e *engine, args []string) lockapi.Value {
	sub := strings.ToLower(args[1])
	arity := map[string]int{"load": 3, "exists": -3, "flush": -2, "kill": 2, "help": 2}
	a, known := arity[sub]
	switch {
	case !known:
		return lockapi.ErrorValue("ERR unknown subcommand '" + trunc(args[1], 128) + "'. Try SCRIPT HELP.")
	case !arityOK(a, len(args)):
		return errWrongArgsOf("script|" + sub)
	}
	switch sub {
	case "load":
		sha := sha1hex(args[2])
		if _, err := e.f.protos.compiled(sha, args[2]); err != nil {
			return compileError(err)
		}
		e.f.scripts.add(sha, args[2])
		return lockapi.BulkValue(sha)
	case "exists":
		out := make([]lockapi.Value, 0, len(args)-2)
		for _, sha := range args[2:] {
			_, ok := e.f.scripts.get(strings.ToLower(sha))
			out = append(out, lockapi.IntValue(map[bool]int64{true: 1, false: 0}[ok]))
		}
		return lockapi.ArrayValue(out...)
	case "flush":
		if len(args) > 3 || (len(args) == 3 && !strings.EqualFold(args[2], "sync") && !strings.EqualFold(args[2], "async")) {
			return lockapi.ErrorValue("ERR SCRIPT FLUSH only support SYNC|ASYNC option")
		}
		e.f.scripts.flush()
		return lockapi.OKValue()
	case "kill":
		return lockapi.ErrorValue("NOTBUSY No scripts in execution right now.")
	}
	out := make([]lockapi.Value, len(scriptHelp))
	for i, l := range scriptHelp {
		out[i] = lockapi.StatusValue(l)
	}
	return lockapi.ArrayValue(out...)
}

// CheckScript answers, before a command is proposed, what the leader can
// tell without the log: NOSCRIPT for an EVALSHA of an unknown script and
// the compile error of an EVAL or SCRIPT LOAD body. It returns false when
// the command should be proposed. The state machine checks the same again
// when it applies the entry (a SCRIPT FLUSH may come in between).
func (f *FSM) CheckScript(args [][]byte) (lockapi.Value, bool) {
	if len(args) < 2 {
		return lockapi.Value{}, false
	}
	name := strings.ToLower(string(args[0]))
	var body string
	switch {
	case (name == "evalsha" || name == "evalsha_ro") && len(args) >= 3:
		f.mu.RLock()
		_, ok := f.scripts.get(strings.ToLower(string(args[1])))
		f.mu.RUnlock()
		if !ok && len(args[1]) == 40 && validNumkeys(args) {
			return errNoScript, true
		}
		return lockapi.Value{}, false
	case (name == "eval" || name == "eval_ro") && len(args) >= 3 && validNumkeys(args):
		body = string(args[1])
	case name == "script" && len(args) == 3 && strings.EqualFold(string(args[1]), "load"):
		body = string(args[2])
	default:
		return lockapi.Value{}, false
	}
	if _, err := f.protos.compiled(sha1hex(body), body); err != nil {
		return compileError(err), true
	}
	return lockapi.Value{}, false
}

// validNumkeys reports whether an EVAL's numkeys argument is usable.
func validNumkeys(args [][]byte) bool {
	n, ok := lockapi.ParseInt(string(args[2]))
	return ok && n >= 0 && n <= int64(len(args)-3)
}
