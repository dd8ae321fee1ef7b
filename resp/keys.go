package resp

import (
	"slices"

	"github.com/distlock/distlock/lockapi"
)

// keyCommands are the Redis key commands, run by the replicated key engine
// through [lockapi.KeyService.Do]: they share one keyspace with the LOCK.*
// commands (SET k v NX PX 30000 is LOCK.ACQUIRE k v 30000). Each entry gives
// Redis's arity, flags and key positions, which COMMAND reports.
var keyCommands = []*command{
	{name: "get", arity: 2, flags: ro, first: 1, last: 1, step: 1},
	{name: "set", arity: -3, flags: wr, first: 1, last: 1, step: 1},
	{name: "del", arity: -2, flags: wr, first: 1, last: -1, step: 1},
	{name: "unlink", arity: -2, flags: wr, first: 1, last: -1, step: 1},
	{name: "exists", arity: -2, flags: ro, first: 1, last: -1, step: 1},
	{name: "type", arity: 2, flags: ro, first: 1, last: 1, step: 1},
	{name: "pexpire", arity: -3, flags: wr, first: 1, last: 1, step: 1},
	{name: "expire", arity: -3, flags: wr, first: 1, last: 1, step: 1},
	{name: "pexpireat", arity: -3, flags: wr, first: 1, last: 1, step: 1},
	{name: "expireat", arity: -3, flags: wr, first: 1, last: 1, step: 1},
	{name: "pttl", arity: 2, flags: ro, first: 1, last: 1, step: 1},
	{name: "ttl", arity: 2, flags: ro, first: 1, last: 1, step: 1},
	{name: "persist", arity: 2, flags: wr, first: 1, last: 1, step: 1},
	{name: "getrange", arity: 4, flags: ro, first: 1, last: 1, step: 1},
	{name: "strlen", arity: 2, flags: ro, first: 1, last: 1, step: 1},
	{name: "mget", arity: -2, flags: ro, first: 1, last: -1, step: 1},
	{name: "mset", arity: -3, flags: wr, first: 1, last: -1, step: 2},
	{name: "msetnx", arity: -3, flags: wr, first: 1, last: -1, step: 2},
	{name: "hset", arity: -4, flags: wr, first: 1, last: 1, step: 1},
	{name: "hget", arity: 3, flags: ro, first: 1, last: 1, step: 1},
	{name: "hincrby", arity: 4, flags: wr, first: 1, last: 1, step: 1},
	{name: "hexists", arity: 3, flags: ro, first: 1, last: 1, step: 1},
	{name: "hdel", arity: -3, flags: wr, first: 1, last: 1, step: 1},
	{name: "hlen", arity: 2, flags: ro, first: 1, last: 1, step: 1},
	{name: "publish", arity: 3, flags: []string{"pubsub", "loading", "stale", "fast"}},
	{name: "dbsize", arity: 1, flags: []string{"readonly", "fast"}},
	{name: "eval", arity: -3, flags: script, first: 2, last: 2, step: 1},
	{name: "evalsha", arity: -3, flags: script, first: 2, last: 2, step: 1},
	{name: "eval_ro", arity: -3, flags: append([]string{"readonly"}, script...), first: 2, last: 2, step: 1},
	{name: "evalsha_ro", arity: -3, flags: append([]string{"readonly"}, script...), first: 2, last: 2, step: 1},
	{name: "script", arity: -2, flags: []string{"noscript"}},
}

// Command flags as COMMAND reports them.
var (
	ro     = []string{"readonly", "fast"}
	wr     = []string{"write", "denyoom"}
	script = []string{"noscript", "stale", "skip_monitor", "may_replicate", "no_mandatory_keys"}
)

func init() {
	for _, c := range keyCommands {
		c.handler = cmdKey
		// Every write, scripts included, is one log entry (a script runs
		// whole inside the state machine).
		c.pipelined = slices.Contains(c.flags, "write") || c.name == "eval" || c.name == "evalsha"
	}
}

// cmdKey runs a key command in the replicated engine and writes its reply.
func cmdKey(c *client, args [][]byte) {
	if c.srv.keys == nil {
		c.writeErrorText(unknownCommand(args))
		return
	}
	ctx, cancel := c.commandContext(0)
	defer cancel()
	v, err := c.srv.keys.Do(ctx, args)
	if err != nil {
		c.writeError(err)
		return
	}
	c.writeValue(v)
}

// maxValueDepth bounds the nesting of a reply written by writeValue.
const maxValueDepth = 128

// writeValue writes an engine reply in the connection's protocol: nulls
// as `_` on RESP3 and `$-1` on RESP2, everything else alike in both, as
// Redis replies to these commands (and to scripts, whose results stay RESP2
// shaped unless they call redis.setresp(3)).
func (c *client) writeValue(v lockapi.Value) { c.writeValueDepth(v, 0) }

func (c *client) writeValueDepth(v lockapi.Value, depth int) {
	switch v.Kind {
	case lockapi.KindNil:
		c.writeNull()
	case lockapi.KindStatus:
		c.writeSimple(v.Str)
	case lockapi.KindError:
		c.writeErrorText(v.Str)
	case lockapi.KindInt:
		c.writeInt(v.Int)
	case lockapi.KindBulk:
		c.writeBulkString(v.Str)
	case lockapi.KindArray:
		if depth >= maxValueDepth {
			c.writeErrorText("ERR reply nested too deeply")
			return
		}
		c.writeArray(len(v.Elems))
		for _, e := range v.Elems {
			c.writeValueDepth(e, depth+1)
		}
	default:
		c.writeErrorText("ERR internal error: unknown reply kind")
	}
}
