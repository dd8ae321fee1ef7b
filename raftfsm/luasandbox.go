package raftfsm

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"

	lua "github.com/yuin/gopher-lua"
	"github.com/yuin/gopher-lua/ast"
	"github.com/yuin/gopher-lua/parse"
)

// parseChunk parses a script body.
func parseChunk(body string) ([]ast.Stmt, error) {
	return parse.Parse(strings.NewReader(body), "user_script")
}

// removed lists the library functions scripts cannot use: I/O, loading
// code, the garbage collector, environments, and string functions whose
// cost is not bounded (see lua.go).
var removed = map[string][]string{
	"":       {"dofile", "loadfile", "load", "loadstring", "print", "collectgarbage", "getfenv", "setfenv", "newproxy", "_printregs", "module", "require", "gcinfo"},
	"string": {"dump", "gsub", "gmatch", "match"},
}

// openLibs opens the sandbox's libraries and the redis table in L.
func (r *scriptRun) openLibs(L *lua.LState) {
	for _, lib := range []struct {
		name string
		fn   lua.LGFunction
	}{{lua.BaseLibName, lua.OpenBase}, {lua.TabLibName, lua.OpenTable}, {lua.StringLibName, lua.OpenString}, {lua.MathLibName, lua.OpenMath}} {
		L.Push(L.NewFunction(lib.fn))
		L.Push(lua.LString(lib.name))
		L.Call(1, 0)
	}
	g := L.G.Global
	// Tables keep insertion order for pairs(), so every change to them is
	// made in a fixed order (never by ranging over a Go map).
	for _, lib := range []string{"", "string"} {
		t := g
		if lib != "" {
			t = g.RawGetString(lib).(*lua.LTable)
		}
		for _, n := range removed[lib] {
			t.RawSetString(n, lua.LNil)
		}
	}
	str := g.RawGetString("string").(*lua.LTable)
	str.RawSetString("rep", L.NewFunction(strRep))
	str.RawSetString("format", L.NewFunction(strFormat(str.RawGetString("format"))))
	str.RawSetString("find", L.NewFunction(strFindPlain))
	g.RawGetString("table").(*lua.LTable).RawSetString("concat", L.NewFunction(tableConcat))
	g.RawSetString("tostring", L.NewFunction(safeToString(g.RawGetString("tostring"))))
	g.RawSetString("pcall", L.NewFunction(safePcall(g.RawGetString("pcall"))))
	g.RawSetString("xpcall", L.NewFunction(safeXpcall(g.RawGetString("xpcall"))))
	m := g.RawGetString("math").(*lua.LTable)
	m.RawSetString("random", L.NewFunction(r.mathRandom))
	m.RawSetString("randomseed", L.NewFunction(func(L *lua.LState) int { return 0 }))

	// gopher-lua registers library functions by ranging over Go maps, so
	// the libraries' pairs() order differs from run to run: rebuild every
	// library table, and the globals, in sorted key order.
	for _, lib := range []string{"math", "string", "table"} {
		g.RawSetString(lib, sortedCopy(L, g.RawGetString(lib).(*lua.LTable)))
	}
	// Methods on strings ("x"):rep(...) go through the string metatable:
	// point it at the sandboxed string table.
	if mt, ok := L.GetMetatable(lua.LString("")).(*lua.LTable); ok {
		mt.RawSetString("__index", g.RawGetString("string"))
	}
	g = sortedCopy(L, g)
	g.RawSetString("_G", g)
	L.G.Global, L.Env = g, g

	g.RawSetString("KEYS", stringTable(L, r.keys))
	g.RawSetString("ARGV", stringTable(L, r.argv))
	g.RawSetString("redis", r.redisTable(L))

	// Globals cannot be created or read before they exist, as in Redis.
	mt := L.NewTable()
	mt.RawSetString("__newindex", L.NewFunction(func(L *lua.LState) int {
		L.RaiseError("Script attempted to create global variable '%s'", L.ToString(2))
		return 0
	}))
	mt.RawSetString("__index", L.NewFunction(func(L *lua.LState) int {
		L.RaiseError("Script attempted to access nonexistent global variable '%s'", L.ToString(2))
		return 0
	}))
	L.SetMetatable(g, mt)
}

// sortedCopy returns a copy of t's string-keyed fields inserted in sorted
// order, so that pairs() walks it in that order on every replica.
func sortedCopy(L *lua.LState, t *lua.LTable) *lua.LTable {
	fields := map[string]lua.LValue{}
	t.ForEach(func(k, v lua.LValue) {
		if s, ok := k.(lua.LString); ok {
			fields[string(s)] = v
		}
	})
	out := L.CreateTable(0, len(fields))
	for _, k := range slices.Sorted(maps.Keys(fields)) {
		out.RawSetString(k, fields[k])
	}
	return out
}

func stringTable(L *lua.LState, ss []string) *lua.LTable {
	t := L.CreateTable(len(ss), 0)
	for i, s := range ss {
		t.RawSetInt(i+1, lua.LString(s))
	}
	return t
}

// redisTable builds the redis library of the sandbox.
func (r *scriptRun) redisTable(L *lua.LState) *lua.LTable {
	t := L.NewTable()
	fns := map[string]lua.LGFunction{
		"call":  func(L *lua.LState) int { return r.call(L, true) },
		"pcall": func(L *lua.LState) int { return r.call(L, false) },
		"error_reply": func(L *lua.LState) int {
			e := L.NewTable()
			e.RawSetString("err", lua.LString(L.CheckString(1)))
			L.Push(e)
			return 1
		},
		"status_reply": func(L *lua.LState) int {
			s := L.NewTable()
			s.RawSetString("ok", lua.LString(L.CheckString(1)))
			L.Push(s)
			return 1
		},
		"sha1hex": func(L *lua.LState) int {
			L.Push(lua.LString(sha1hex(L.CheckString(1))))
			return 1
		},
		"log":                func(L *lua.LState) int { return 0 },
		"set_repl":           func(L *lua.LState) int { return 0 },
		"replicate_commands": func(L *lua.LState) int { L.Push(lua.LTrue); return 1 },
		"breakpoint":         func(L *lua.LState) int { L.Push(lua.LFalse); return 1 },
		"debug":              func(L *lua.LState) int { return 0 },
		"setresp": func(L *lua.LState) int {
			if L.CheckInt(1) != 2 {
				L.RaiseError("RESP3 replies inside scripts are not supported by this server")
			}
			return 0
		},
	}
	for _, name := range slices.Sorted(maps.Keys(fns)) {
		t.RawSetString(name, L.NewFunction(fns[name]))
	}
	for i, name := range []string{"LOG_DEBUG", "LOG_VERBOSE", "LOG_NOTICE", "LOG_WARNING"} {
		t.RawSetString(name, lua.LNumber(i))
	}
	for i, name := range []string{"REPL_NONE", "REPL_AOF", "REPL_SLAVE", "REPL_ALL"} {
		t.RawSetString(name, lua.LNumber(i))
	}
	t.RawSetString("REPL_REPLICA", lua.LNumber(2))
	return t
}

// mathRandom is Lua 5.1's math.random over the run's seeded PCG.
func (r *scriptRun) mathRandom(L *lua.LState) int {
	switch L.GetTop() {
	case 0:
		L.Push(lua.LNumber(r.rng.Float64()))
	case 1:
		n := L.CheckInt64(1)
		if n < 1 {
			L.ArgError(1, "interval is empty")
		}
		L.Push(lua.LNumber(r.rng.Int64N(n) + 1))
	default:
		lo, hi := L.CheckInt64(1), L.CheckInt64(2)
		if lo > hi || hi-lo < 0 {
			L.ArgError(2, "interval is empty")
		}
		L.Push(lua.LNumber(lo + r.rng.Int64N(hi-lo+1)))
	}
	return 1
}

// strRep is string.rep with a bound on the result.
func strRep(L *lua.LState) int {
	s, n := L.CheckString(1), L.CheckInt64(2)
	if n <= 0 || s == "" {
		L.Push(lua.LString(""))
		return 1
	}
	if n > int64(scriptMaxString)/int64(len(s)) {
		L.RaiseError("string.rep result over %d bytes", scriptMaxString)
	}
	L.Push(lua.LString(strings.Repeat(s, int(n))))
	return 1
}

// addresses matches the memory addresses gopher-lua prints for tables,
// functions and userdata (in error messages, say); they differ between
// replicas, so they are replaced before a script can see them.
var addresses = regexp.MustCompile(`(table|function|userdata|thread|channel): 0x[0-9a-f]+`)

// sanitize removes memory addresses from a message.
func sanitize(s string) string { return addresses.ReplaceAllString(s, "$1: 0x0") }

// safePcall wraps pcall so that an error message it returns carries no
// memory address.
func safePcall(orig lua.LValue) lua.LGFunction {
	return func(L *lua.LState) int {
		top := L.GetTop()
		L.Push(orig)
		for i := 1; i <= top; i++ {
			L.Push(L.Get(i))
		}
		L.Call(top, lua.MultRet)
		n := L.GetTop() - top
		if n >= 2 && L.Get(top+1) == lua.LFalse {
			if msg, ok := L.Get(top + 2).(lua.LString); ok {
				L.Replace(top+2, lua.LString(sanitize(string(msg))))
			}
		}
		return n
	}
}

// safeXpcall wraps xpcall so that the handler sees error messages without
// memory addresses.
func safeXpcall(orig lua.LValue) lua.LGFunction {
	return func(L *lua.LState) int {
		fn, h := L.CheckFunction(1), L.CheckFunction(2)
		wrapped := L.NewFunction(func(L *lua.LState) int {
			v := L.Get(1)
			if msg, ok := v.(lua.LString); ok {
				v = lua.LString(sanitize(string(msg)))
			}
			L.Push(h)
			L.Push(v)
			L.Call(1, 1)
			return 1
		})
		top := L.GetTop()
		L.Push(orig)
		L.Push(fn)
		L.Push(wrapped)
		L.Call(2, lua.MultRet)
		return L.GetTop() - top
	}
}

// strFormat wraps string.format, refusing widths and precisions over 99
// (as Lua 5.1 does) so a format cannot allocate without bound, and passing
// tables and functions as their type names (Go's fmt would print their
// addresses).
func strFormat(orig lua.LValue) lua.LGFunction {
	fn := orig.(*lua.LFunction)
	return func(L *lua.LState) int {
		f := L.CheckString(1)
		for i := 0; i < len(f); i++ {
			if f[i] != '%' {
				continue
			}
			digits := 0
			for i++; i < len(f) && strings.IndexByte("-+ #0123456789.", f[i]) >= 0; i++ {
				if f[i] >= '0' && f[i] <= '9' {
					if digits++; digits > 2 {
						L.RaiseError("invalid format (width or precision too long)")
					}
				} else {
					digits = 0
				}
			}
		}
		top := L.GetTop()
		L.Push(fn)
		for i := 1; i <= top; i++ {
			v := L.Get(i)
			switch v.(type) {
			case lua.LString, lua.LNumber, lua.LBool, *lua.LNilType:
			default:
				v = lua.LString(v.Type().String() + ": 0x0")
			}
			L.Push(v)
		}
		L.Call(top, 1)
		return 1
	}
}

// strFindPlain is string.find for plain substrings (the 4th argument true,
// or a pattern without magic characters). Patterns are refused.
func strFindPlain(L *lua.LState) int {
	s, pat := L.CheckString(1), L.CheckString(2)
	init := L.OptInt(3, 1)
	plain := lua.LVAsBool(L.Get(4))
	if !plain && strings.ContainsAny(pat, "^$*+?.([%-") {
		L.RaiseError("string.find with patterns is not supported by this server (pass plain = true)")
	}
	if init < 0 {
		init = max(len(s)+init+1, 1)
	} else if init == 0 {
		init = 1
	}
	if init > len(s)+1 {
		L.Push(lua.LNil)
		return 1
	}
	i := strings.Index(s[init-1:], pat)
	if i < 0 {
		L.Push(lua.LNil)
		return 1
	}
	L.Push(lua.LNumber(init + i))
	L.Push(lua.LNumber(init + i + len(pat) - 1))
	return 2
}

// tableConcat is table.concat with a bound on the result.
func tableConcat(L *lua.LState) int {
	t := L.CheckTable(1)
	sep := L.OptString(2, "")
	i, j := L.OptInt(3, 1), L.OptInt(4, t.Len())
	var b strings.Builder
	for k := i; k <= j; k++ {
		v := t.RawGetInt(k)
		if !lua.LVCanConvToString(v) {
			L.RaiseError("invalid value (at index %d) in table for 'concat'", k)
		}
		s := lua.LVAsString(v)
		if b.Len()+len(s)+len(sep) > scriptMaxString {
			L.RaiseError("table.concat result over %d bytes", scriptMaxString)
		}
		b.WriteString(s)
		if k < j {
			b.WriteString(sep)
		}
	}
	L.Push(lua.LString(b.String()))
	return 1
}

// safeToString is tostring without memory addresses, which differ between
// replicas.
func safeToString(orig lua.LValue) lua.LGFunction {
	fn := orig.(*lua.LFunction)
	return func(L *lua.LState) int {
		v := L.CheckAny(1)
		switch v.Type() {
		case lua.LTTable, lua.LTFunction, lua.LTUserData, lua.LTThread, lua.LTChannel:
			if mt, ok := L.GetMetaField(v, "__tostring").(*lua.LFunction); ok {
				L.Push(mt)
				L.Push(v)
				L.Call(1, 1)
				return 1
			}
			L.Push(lua.LString(fmt.Sprintf("%s: 0x0", v.Type())))
			return 1
		}
		L.Push(fn)
		L.Push(v)
		L.Call(1, 1)
		return 1
	}
}
