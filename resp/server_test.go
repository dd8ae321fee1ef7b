package resp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/distlock/distlock/lockapi"
)

// quietLogger discards all logs.
func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// startServer starts a server for cfg (Service defaults to the scripted
// service) on 127.0.0.1:0 and returns it with its address.
func startServer(t testing.TB, cfg Config) (*Server, string) {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = quietLogger()
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
		if err := <-done; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve returned %v", err)
		}
	})
	return s, ln.Addr().String()
}

func startScripted(t testing.TB, cfg Config) (*scripted, string) {
	t.Helper()
	rec := &scripted{}
	cfg.Service = scriptedService(rec)
	_, addr := startServer(t, cfg)
	return rec, addr
}

// newRedis returns a go-redis client speaking protocol proto, without
// retries (go-redis retries CLUSTERDOWN replies by default).
func newRedis(t testing.TB, addr string, proto int, password string) *redis.Client {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{
		Addr: addr, Protocol: proto, Password: password,
		MaxRetries: -1, DialTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
	})
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

func testContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// doCase is one command and the reply go-redis should return for it.
type doCase struct {
	name  string
	args  []any
	want  any    // reply on RESP2 (and RESP3 unless want3 is set)
	want3 any    // reply on RESP3, when it differs
	err   string // wanted error text; "redis: nil" for a null reply
}

var infoRESP2 = []any{
	"key", "k", "owner", "o", "fencing_token", int64(42), "version", int64(3),
	"ttl_ms", int64(12346), "expires_at", int64(1700000000000), "waiters", int64(2),
}

func infoRESP3(key, owner string, token int64) map[any]any {
	return map[any]any{
		"key": key, "owner": owner, "fencing_token": token, "version": int64(3),
		"ttl_ms": int64(12346), "expires_at": int64(1700000000000), "waiters": int64(2),
	}
}

var (
	nodesRESP2 = []any{
		[]any{"id", "n1", "state", "leader", "address", "127.0.0.1:9001", "resp_address", "127.0.0.1:6379", "http_address", "127.0.0.1:8001"},
		[]any{"id", "n2", "state", "follower", "address", "127.0.0.1:9002", "resp_address", "", "http_address", ""},
	}
	nodesRESP3 = []any{
		map[any]any{"id": "n1", "state": "leader", "address": "127.0.0.1:9001", "resp_address": "127.0.0.1:6379", "http_address": "127.0.0.1:8001"},
		map[any]any{"id": "n2", "state": "follower", "address": "127.0.0.1:9002", "resp_address": "", "http_address": ""},
	}
)

const (
	badTTLText = `ERR invalid ttl: duration "abc" is neither milliseconds nor a duration like 30s`
	notHeld    = "NOTHELD lock is not held by this owner"
)

var doCases = []doCase{
	// Command table.
	{name: "unknown command", args: []any{"foo", "a", "b"}, err: "ERR unknown command 'foo', with args beginning with: 'a' 'b' "},
	{name: "unknown command no args", args: []any{"FOO"}, err: "ERR unknown command 'FOO', with args beginning with: "},
	{name: "acquire arity", args: []any{"lock.acquire", "k", "o"}, err: "ERR wrong number of arguments for 'lock.acquire' command"},
	{name: "renew arity", args: []any{"LOCK.RENEW", "k", "o"}, err: "ERR wrong number of arguments for 'lock.renew' command"},
	{name: "release arity", args: []any{"lock.release", "k"}, err: "ERR wrong number of arguments for 'lock.release' command"},
	{name: "info arity low", args: []any{"lock.info"}, err: "ERR wrong number of arguments for 'lock.info' command"},
	{name: "info arity high", args: []any{"lock.info", "a", "b"}, err: "ERR wrong number of arguments for 'lock.info' command"},
	{name: "list arity", args: []any{"lock.list", "x"}, err: "ERR wrong number of arguments for 'lock.list' command"},
	{name: "cluster.info arity", args: []any{"cluster.info", "x"}, err: "ERR wrong number of arguments for 'cluster.info' command"},
	{name: "ping arity", args: []any{"ping", "a", "b"}, err: "ERR wrong number of arguments for 'ping' command"},

	// LOCK.ACQUIRE: the scripted token is ttl ms + wait ms * 1e9.
	{name: "acquire ms", args: []any{"lock.acquire", "k", "o", "30000"}, want: int64(30000)},
	{name: "acquire upper case", args: []any{"LOCK.ACQUIRE", "k", "o", "30s"}, want: int64(30000)},
	{name: "acquire unit", args: []any{"Lock.Acquire", "k", "o", "500ms"}, want: int64(500)},
	{name: "acquire max ttl", args: []any{"lock.acquire", "k", "o", "24h"}, want: int64(86400000)},
	{name: "acquire wait", args: []any{"lock.acquire", "k", "o", "1000", "WAIT", "5s"}, want: int64(5000*1e9 + 1000)},
	{name: "acquire wait lower case ms", args: []any{"lock.acquire", "k", "o", "1000", "wait", "250"}, want: int64(250*1e9 + 1000)},
	{name: "acquire wait zero", args: []any{"lock.acquire", "k", "o", "1000", "WaIt", "0"}, want: int64(1000)},
	{name: "acquire held", args: []any{"lock.acquire", "held", "o", "1000"}, err: "redis: nil"},
	{name: "ttl zero", args: []any{"lock.acquire", "k", "o", "0"}, err: "ERR ttl must be at least 1ms, got 0s"},
	{name: "ttl negative", args: []any{"lock.acquire", "k", "o", "-1"}, err: "ERR ttl must be at least 1ms, got -1ms"},
	{name: "ttl not a number", args: []any{"lock.acquire", "k", "o", "abc"}, err: badTTLText},
	{name: "ttl overflow", args: []any{"lock.acquire", "k", "o", "99999999999999999999"}, err: `ERR invalid ttl: duration "99999999999999999999" overflows`},
	{name: "ttl ms overflow", args: []any{"lock.acquire", "k", "o", "9223372036854775807"}, err: `ERR invalid ttl: duration "9223372036854775807" overflows`},
	{name: "ttl above max", args: []any{"lock.acquire", "k", "o", "86400001"}, err: "ERR ttl 24h0m0.001s exceeds the maximum 24h0m0s"},
	{name: "ttl above max unit", args: []any{"lock.acquire", "k", "o", "25h"}, err: "ERR ttl 25h0m0s exceeds the maximum 24h0m0s"},
	{name: "ttl fraction", args: []any{"lock.acquire", "k", "o", "1.5"}, err: `ERR invalid ttl: duration "1.5" is neither milliseconds nor a duration like 30s`},
	{name: "ttl empty", args: []any{"lock.acquire", "k", "o", ""}, err: "ERR invalid ttl: empty duration"},
	{name: "wait missing value", args: []any{"lock.acquire", "k", "o", "1000", "WAIT"}, err: "ERR syntax error"},
	{name: "unknown option", args: []any{"lock.acquire", "k", "o", "1000", "FOO", "1"}, err: "ERR syntax error"},
	{name: "repeated option", args: []any{"lock.acquire", "k", "o", "1000", "WAIT", "1", "WAIT", "2"}, err: "ERR syntax error"},
	{name: "token on acquire", args: []any{"lock.acquire", "k", "o", "1000", "TOKEN", "1"}, err: "ERR syntax error"},
	{name: "syntax before values", args: []any{"lock.acquire", "", "o", "abc", "X"}, err: "ERR syntax error"},
	{name: "wait negative", args: []any{"lock.acquire", "k", "o", "1000", "WAIT", "-5"}, err: "ERR wait must not be negative, got -5ms"},
	{name: "wait above max", args: []any{"lock.acquire", "k", "o", "1000", "WAIT", "6m"}, err: "ERR wait 6m0s exceeds the maximum 5m0s"},
	{name: "wait not a number", args: []any{"lock.acquire", "k", "o", "1000", "WAIT", "x"}, err: `ERR invalid wait: duration "x" is neither milliseconds nor a duration like 30s`},
	{name: "empty key", args: []any{"lock.acquire", "", "o", "1000"}, err: "ERR key must not be empty"},
	{name: "oversized key", args: []any{"lock.acquire", strings.Repeat("k", 1025), "o", "1000"}, err: "ERR key is 1025 bytes, the maximum is 1024"},
	{name: "largest key", args: []any{"lock.acquire", strings.Repeat("k", 1024), "o", "1000"}, want: int64(1000)},
	{name: "empty owner", args: []any{"lock.acquire", "k", "", "1000"}, err: "ERR owner must not be empty"},
	{name: "oversized owner", args: []any{"lock.acquire", "k", strings.Repeat("o", 1025), "1000"}, err: "ERR owner is 1025 bytes, the maximum is 1024"},

	// Service errors, mapped in one place.
	{name: "no quorum", args: []any{"lock.acquire", "noquorum", "o", "1000"}, err: "CLUSTERDOWN no quorum"},
	{name: "no leader", args: []any{"lock.acquire", "noleader", "o", "1000"}, err: "CLUSTERDOWN no leader"},
	{name: "unknown outcome", args: []any{"lock.acquire", "unknown", "o", "1000"}, err: "UNKNOWN " + lockapi.ErrUnknownOutcome.Error()},
	{name: "timeout", args: []any{"lock.acquire", "timeout", "o", "1000"}, err: "TIMEOUT request timed out and may still take effect, retry with the same owner"},
	{name: "deadline", args: []any{"lock.acquire", "deadline", "o", "1000"}, err: "TIMEOUT request timed out and may still take effect, retry with the same owner"},
	{name: "shutting down", args: []any{"lock.acquire", "shutdown", "o", "1000"}, err: "CLUSTERDOWN node is shutting down"},
	{name: "other error", args: []any{"lock.acquire", "boom", "o", "1000"}, err: "ERR disk on fire"},
	{name: "panic", args: []any{"lock.acquire", "panic", "o", "1000"}, err: "ERR internal error"},

	// LOCK.RENEW: the scripted token is the one given, or 7.
	{name: "renew", args: []any{"lock.renew", "k", "o", "30000"}, want: int64(7)},
	{name: "renew token", args: []any{"lock.renew", "k", "o", "30000", "TOKEN", "42"}, want: int64(42)},
	{name: "renew token lower case", args: []any{"lock.renew", "k", "o", "30000", "token", "9223372036854775807"}, want: int64(9223372036854775807)},
	{name: "renew token zero", args: []any{"lock.renew", "k", "o", "30000", "TOKEN", "0"}, err: `ERR token "0" is not a positive integer`},
	{name: "renew token negative", args: []any{"lock.renew", "k", "o", "30000", "TOKEN", "-1"}, err: `ERR token "-1" is not a positive integer`},
	{name: "renew token junk", args: []any{"lock.renew", "k", "o", "30000", "TOKEN", "12abc"}, err: `ERR token "12abc" is not a positive integer`},
	{name: "renew token overflow", args: []any{"lock.renew", "k", "o", "30000", "TOKEN", "18446744073709551616"}, err: `ERR token "18446744073709551616" is not a positive integer`},
	{name: "renew token missing", args: []any{"lock.renew", "k", "o", "30000", "TOKEN"}, err: "ERR syntax error"},
	{name: "renew wait", args: []any{"lock.renew", "k", "o", "30000", "WAIT", "1"}, err: "ERR syntax error"},
	{name: "renew bad ttl", args: []any{"lock.renew", "k", "o", "abc"}, err: badTTLText},
	{name: "renew not held", args: []any{"lock.renew", "notheld", "o", "1000"}, err: notHeld},
	{name: "renew not found", args: []any{"lock.renew", "missing", "o", "1000"}, err: notHeld},
	{name: "renew no quorum", args: []any{"lock.renew", "noquorum", "o", "1000"}, err: "CLUSTERDOWN no quorum"},

	// LOCK.RELEASE: the scripted service accepts token 5 or none.
	{name: "release", args: []any{"lock.release", "k", "o"}, want: int64(1)},
	{name: "release token", args: []any{"lock.release", "k", "o", "TOKEN", "5"}, want: int64(1)},
	{name: "release other token", args: []any{"lock.release", "k", "o", "token", "6"}, want: int64(0)},
	{name: "release not held", args: []any{"lock.release", "notheld", "o"}, want: int64(0)},
	{name: "release not found", args: []any{"lock.release", "missing", "o"}, want: int64(0)},
	{name: "release bad token", args: []any{"lock.release", "k", "o", "TOKEN", "x"}, err: `ERR token "x" is not a positive integer`},
	{name: "release extra arg", args: []any{"lock.release", "k", "o", "EXTRA"}, err: "ERR syntax error"},
	{name: "release empty owner", args: []any{"lock.release", "k", ""}, err: "ERR owner must not be empty"},
	{name: "release no leader", args: []any{"lock.release", "noleader", "o"}, err: "CLUSTERDOWN no leader"},

	// LOCK.INFO, LOCK.LIST, CLUSTER.INFO.
	{name: "info", args: []any{"lock.info", "k"}, want: infoRESP2, want3: infoRESP3("k", "o", 42)},
	{name: "info not found", args: []any{"lock.info", "missing"}, err: "redis: nil"},
	{name: "info empty key", args: []any{"lock.info", ""}, err: "ERR key must not be empty"},
	{name: "info no quorum", args: []any{"lock.info", "noquorum"}, err: "CLUSTERDOWN no quorum"},
	{name: "list", args: []any{"lock.list"},
		want: []any{infoRESP2, []any{"key", "k2", "owner", "o2", "fencing_token", int64(43), "version", int64(3),
			"ttl_ms", int64(12346), "expires_at", int64(1700000000000), "waiters", int64(2)}},
		want3: []any{infoRESP3("k", "o", 42), infoRESP3("k2", "o2", 43)}},
	{name: "cluster info", args: []any{"CLUSTER.INFO"},
		want:  []any{"leader_id", "n1", "term", int64(7), "nodes", nodesRESP2, "quorum_size", int64(2), "has_quorum", int64(1), "cluster_id", "c0ffee"},
		want3: map[any]any{"leader_id": "n1", "term": int64(7), "nodes": nodesRESP3, "quorum_size": int64(2), "has_quorum": true, "cluster_id": "c0ffee"}},

	// Key commands, through the key service.
	{name: "get", args: []any{"GET", "k"}, want: "v:k"},
	{name: "get nil", args: []any{"get", "nil"}, err: "redis: nil"},
	{name: "set status", args: []any{"set", "status", "v"}, want: "OK"},
	{name: "get wrongtype", args: []any{"get", "wrongtype"}, err: "WRONGTYPE Operation against a key holding the wrong kind of value"},
	{name: "evalsha noscript", args: []any{"evalsha", "noscript", "0"}, err: "NOSCRIPT No matching script. Please use EVAL."},
	{name: "pttl int", args: []any{"pttl", "int"}, want: int64(-3)},
	{name: "eval array", args: []any{"eval", "array", "0"}, want: []any{int64(1), nil, "x", []any{"OK"}, []any{}}},
	{name: "set no quorum", args: []any{"set", "noquorum", "v"}, err: "CLUSTERDOWN no quorum"},
	{name: "set unknown outcome", args: []any{"set", "unknown", "v"}, err: "UNKNOWN " + lockapi.ErrUnknownOutcome.Error()},
	{name: "set arity", args: []any{"set", "k"}, err: "ERR wrong number of arguments for 'set' command"},
	{name: "get panic", args: []any{"get", "panic"}, err: "ERR internal error"},
	{name: "time", args: []any{"time", "x"}, err: "ERR wrong number of arguments for 'time' command"},

	// Connection commands.
	{name: "ping", args: []any{"ping"}, want: "PONG"},
	{name: "ping message", args: []any{"PING", "hi"}, want: "hi"},
	{name: "echo", args: []any{"echo", "x y"}, want: "x y"},
	{name: "select 0", args: []any{"select", "0"}, want: "OK"},
	{name: "select 1", args: []any{"select", "1"}, err: "ERR DB index is out of range"},
	{name: "select junk", args: []any{"select", "x"}, err: "ERR value is not an integer or out of range"},
	{name: "client unknown", args: []any{"client", "foo"}, err: "ERR unknown subcommand 'foo'. Try CLIENT HELP."},
	{name: "client arity", args: []any{"client", "setname"}, err: "ERR wrong number of arguments for 'client|setname' command"},
	{name: "client bad name", args: []any{"client", "setname", "a b"}, err: "ERR Client names cannot contain spaces, newlines or special characters."},
	{name: "client setinfo", args: []any{"client", "setinfo", "LIB-NAME", "mylib"}, want: "OK"},
	{name: "client setinfo unknown", args: []any{"client", "setinfo", "color", "red"}, err: "ERR Unrecognized option 'color'"},
	{name: "client setinfo bad value", args: []any{"client", "setinfo", "lib-ver", "1 2"}, err: "ERR lib-ver cannot contain spaces, newlines or special characters."},
	{name: "command info get", args: []any{"command", "info", "get"}, want: []any{[]any{"get", int64(2), []any{"readonly", "fast"}, int64(1), int64(1), int64(1), []any{}, []any{}, []any{}, []any{}}}},
	{name: "command docs", args: []any{"command", "docs"}, want: []any{}, want3: map[any]any{}},
	{name: "command count", args: []any{"COMMAND", "COUNT"}, want: int64(53)},
	{name: "command unknown", args: []any{"command", "frob"}, err: "ERR unknown subcommand 'frob'. Try COMMAND HELP."},
	{name: "cluster slots", args: []any{"cluster", "slots"}, err: "ERR This instance has cluster support disabled"},
	{name: "cluster info", args: []any{"CLUSTER", "Info"}, err: "ERR This instance has cluster support disabled"},
	{name: "cluster unknown", args: []any{"cluster", "foo"}, err: "ERR unknown subcommand 'foo'. Try CLUSTER HELP."},
	{name: "cluster info arity", args: []any{"cluster", "info", "x"}, err: "ERR wrong number of arguments for 'cluster|info' command"},
	{name: "cluster keyslot arity", args: []any{"cluster", "keyslot"}, err: "ERR wrong number of arguments for 'cluster|keyslot' command"},
	{name: "cluster arity", args: []any{"cluster"}, err: "ERR wrong number of arguments for 'cluster' command"},
	{name: "client tracking", args: []any{"client", "tracking", "on", "optin"}, want: "OK"},
	{name: "client caching", args: []any{"client", "caching", "yes"}, err: "ERR CLIENT CACHING is not supported: this server sends no invalidation messages, so replies must not be cached"},
	{name: "hello bad version", args: []any{"hello", "4"}, err: "NOPROTO unsupported protocol version"},
	{name: "hello junk version", args: []any{"hello", "x"}, err: "ERR Protocol version is not an integer or out of range"},
	{name: "hello bad option", args: []any{"hello", "3", "foo"}, err: "ERR Syntax error in HELLO option 'foo'"},
	{name: "auth without password", args: []any{"auth", "x"}, err: "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?"},
	{name: "auth default user without password", args: []any{"auth", "default", "x"}, want: "OK"},
	{name: "auth other user", args: []any{"auth", "bob", "x"}, err: "WRONGPASS invalid username-password pair or user is disabled."},
	{name: "auth too many args", args: []any{"auth", "a", "b", "c"}, err: "ERR syntax error"},
}

func TestCommands(t *testing.T) {
	rec, addr := startScripted(t, Config{})
	for _, proto := range []int{2, 3} {
		rdb := newRedis(t, addr, proto, "")
		ctx := testContext(t)
		for _, tc := range doCases {
			t.Run(tc.name+"/resp"+string(rune('0'+proto)), func(t *testing.T) {
				got, err := rdb.Do(ctx, tc.args...).Result()
				checkReply(t, proto, tc, got, err)
			})
		}
	}
	// Every service call had a deadline: commandTimeout, plus WAIT.
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.deadline <= 0 || rec.deadline > commandTimeout {
		t.Fatalf("last deadline %v", rec.deadline)
	}
}

func checkReply(t *testing.T, proto int, tc doCase, got any, err error) {
	t.Helper()
	if tc.err != "" {
		if err == nil || err.Error() != tc.err {
			t.Fatalf("%q: got %#v, %v; want error %q", tc.args, got, err, tc.err)
		}
		return
	}
	want := tc.want
	if proto == 3 && tc.want3 != nil {
		want = tc.want3
	}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("%q: got %#v, %v; want %#v", tc.args, got, err, want)
	}
}

func TestPipeline(t *testing.T) {
	_, addr := startScripted(t, Config{})
	for _, proto := range []int{2, 3} {
		rdb := newRedis(t, addr, proto, "")
		ctx := testContext(t)
		pipe := rdb.Pipeline()
		var cmds []*redis.Cmd
		for _, tc := range doCases {
			cmds = append(cmds, pipe.Do(ctx, tc.args...))
		}
		_, _ = pipe.Exec(ctx)
		for i, tc := range doCases {
			got, err := cmds[i].Result()
			checkReply(t, proto, tc, got, err)
		}
	}
}

func TestWaitDeadline(t *testing.T) {
	rec, addr := startScripted(t, Config{})
	rdb := newRedis(t, addr, 2, "")
	if _, err := rdb.Do(testContext(t), "lock.acquire", "k", "o", "1000", "WAIT", "1m").Result(); err != nil {
		t.Fatal(err)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.deadline <= time.Minute || rec.deadline > time.Minute+commandTimeout {
		t.Fatalf("deadline %v, want a minute plus %v", rec.deadline, commandTimeout)
	}
}

func TestConnectionState(t *testing.T) {
	_, addr := startScripted(t, Config{})
	for _, proto := range []int{2, 3} {
		ctx := testContext(t)
		conn := newRedis(t, addr, proto, "").Conn()
		t.Cleanup(func() { conn.Close() })
		if v, err := conn.Do(ctx, "client", "getname").Result(); err != redis.Nil {
			t.Fatalf("getname before setname: %v, %v", v, err)
		}
		if err := conn.Do(ctx, "client", "setname", "worker-1").Err(); err != nil {
			t.Fatal(err)
		}
		if v, err := conn.Do(ctx, "CLIENT", "GETNAME").Result(); err != nil || v != "worker-1" {
			t.Fatalf("getname: %v, %v", v, err)
		}
		id, err := conn.Do(ctx, "client", "id").Int64()
		if err != nil || id <= 0 {
			t.Fatalf("client id: %v, %v", id, err)
		}
		// HELLO without arguments keeps the protocol and reports the id.
		hello, err := conn.Do(ctx, "hello").Result()
		if err != nil {
			t.Fatal(err)
		}
		want := map[any]any{"server": "distlock", "version": "7.2.0", "proto": int64(proto), "id": id,
			"mode": "standalone", "role": "master", "modules": []any{}}
		if proto == 2 {
			got := map[any]any{}
			arr := hello.([]any)
			for i := 0; i < len(arr); i += 2 {
				got[arr[i]] = arr[i+1]
			}
			hello = got
		}
		if !reflect.DeepEqual(hello, want) {
			t.Fatalf("hello = %#v, want %#v", hello, want)
		}
		if err := conn.Do(ctx, "client", "setname", "").Err(); err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Do(ctx, "client", "getname").Result(); err != redis.Nil {
			t.Fatalf("getname after clearing: %v", err)
		}
	}
}

// TestClientList checks CLIENT LIST's TYPE and ID filters and their
// errors, in Redis 7's words.
func TestClientList(t *testing.T) {
	_, addr := startScripted(t, Config{})
	ctx := testContext(t)
	a, b := newRedis(t, addr, 2, "").Conn(), newRedis(t, addr, 2, "").Conn()
	t.Cleanup(func() { a.Close(); b.Close() })
	idA, err := a.Do(ctx, "client", "id").Int64()
	if err != nil {
		t.Fatal(err)
	}
	idB, err := b.Do(ctx, "client", "id").Int64()
	if err != nil {
		t.Fatal(err)
	}
	// listed returns the ids of a CLIENT LIST reply, in order.
	listed := func(reply string) []string {
		var ids []string
		for _, line := range strings.Split(reply, "\n") {
			if f := strings.Fields(line); len(f) > 0 {
				ids = append(ids, strings.TrimPrefix(f[0], "id="))
			}
		}
		return ids
	}
	A, B := fmt.Sprint(idA), fmt.Sprint(idB)
	tests := []struct {
		name string
		args []any
		want []string // ids listed, in order
		err  string
	}{
		{"all", []any{"client", "list"}, []string{A, B}, ""},
		{"type normal", []any{"client", "list", "TYPE", "Normal"}, []string{A, B}, ""},
		{"type pubsub", []any{"client", "list", "type", "pubsub"}, nil, ""},
		{"type replica", []any{"client", "list", "type", "replica"}, nil, ""},
		{"ids in the order given", []any{"client", "list", "id", idB, idA}, []string{B, A}, ""},
		{"an id twice, one not open", []any{"client", "list", "ID", idB, idB, 999999, -1}, []string{B, B}, ""},
		{"unknown type", []any{"client", "list", "type", "robot"}, nil, "ERR Unknown client type 'robot'"},
		{"bad id", []any{"client", "list", "id", idA, "x"}, nil, "ERR Invalid client ID"},
		{"id without ids", []any{"client", "list", "id"}, nil, "ERR syntax error"},
		{"type without a name", []any{"client", "list", "type"}, nil, "ERR syntax error"},
		{"type and more", []any{"client", "list", "type", "normal", "id", idA}, nil, "ERR syntax error"},
		{"unknown option", []any{"client", "list", "user", "default"}, nil, "ERR syntax error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := a.Do(ctx, tt.args...).Text()
			if tt.err != "" {
				if err == nil || err.Error() != tt.err {
					t.Fatalf("got %q, %v; want error %q", v, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := listed(v); !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("listed %q, want %q (reply %q)", got, tt.want, v)
			}
		})
	}
}

func TestAuth(t *testing.T) {
	_, addr := startScripted(t, Config{Password: "s3cret"})
	ctx := testContext(t)

	// Clients configured with the password authenticate in their
	// handshake (HELLO proto AUTH default s3cret).
	for _, proto := range []int{2, 3} {
		rdb := newRedis(t, addr, proto, "s3cret")
		if v, err := rdb.Do(ctx, "lock.acquire", "k", "o", "1000").Result(); err != nil || v != int64(1000) {
			t.Fatalf("resp%d: %v, %v", proto, v, err)
		}
	}
	// A wrong password fails the connection.
	if err := newRedis(t, addr, 3, "nope").Ping(ctx).Err(); err == nil || !strings.HasPrefix(err.Error(), "WRONGPASS") {
		t.Fatalf("wrong password: %v", err)
	}

	conn := newRedis(t, addr, 2, "").Conn()
	t.Cleanup(func() { conn.Close() })
	steps := []doCase{
		{args: []any{"ping"}, err: errNoAuth},
		{args: []any{"lock.acquire", "k", "o", "1000"}, err: errNoAuth},
		{args: []any{"client", "setname", "x"}, err: errNoAuth},
		// As in Redis, unknown commands and subcommands and wrong arity are
		// reported first.
		{args: []any{"foo"}, err: "ERR unknown command 'foo', with args beginning with: "},
		{args: []any{"lock.info"}, err: "ERR wrong number of arguments for 'lock.info' command"},
		{args: []any{"client", "foo"}, err: "ERR unknown subcommand 'foo'. Try CLIENT HELP."},
		{args: []any{"client", "setname"}, err: "ERR wrong number of arguments for 'client|setname' command"},
		{args: []any{"CLIENT", "SETNAME", "a", "b"}, err: "ERR wrong number of arguments for 'client|setname' command"},
		{args: []any{"command", "foo"}, err: "ERR unknown subcommand 'foo'. Try COMMAND HELP."},
		{args: []any{"command", "count", "x"}, err: "ERR wrong number of arguments for 'command|count' command"},
		{args: []any{"client", "id"}, err: errNoAuth},
		{args: []any{"command", "docs"}, err: errNoAuth},
		{args: []any{"hello", "3"}, err: errHelloNoAuth},
		{args: []any{"hello", "3", "auth", "default", "wrong"}, err: errWrongPass},
		{args: []any{"auth", "wrong"}, err: errWrongPass},
		{args: []any{"auth", "bob", "s3cret"}, err: errWrongPass},
		{args: []any{"auth", "s3cret", "x", "y"}, err: "ERR syntax error"},
		{args: []any{"ping"}, err: errNoAuth},
		{args: []any{"auth", "s3cret"}, want: "OK"},
		{args: []any{"ping"}, want: "PONG"},
		// A failed AUTH does not log an authenticated client out.
		{args: []any{"auth", "wrong"}, err: errWrongPass},
		{args: []any{"lock.acquire", "k", "o", "1000"}, want: int64(1000)},
		{args: []any{"auth", "default", "s3cret"}, want: "OK"},
	}
	for _, st := range steps {
		got, err := conn.Do(ctx, st.args...).Result()
		checkReply(t, 2, st, got, err)
	}
	// QUIT works before AUTH.
	conn2 := newRedis(t, addr, 2, "").Conn()
	t.Cleanup(func() { conn2.Close() })
	if v, err := conn2.Do(ctx, "quit").Result(); err != nil || v != "OK" {
		t.Fatalf("quit: %v, %v", v, err)
	}
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	_, addr := startScripted(t, Config{Registerer: reg})
	rdb := newRedis(t, addr, 3, "")
	ctx := testContext(t)
	for range 3 {
		if err := rdb.Do(ctx, "lock.acquire", "k", "o", "1000").Err(); err != nil {
			t.Fatal(err)
		}
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var acquires uint64
	var conns float64 = -1
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			switch mf.GetName() {
			case "resp_command_duration_seconds":
				if m.GetLabel()[0].GetValue() == "lock.acquire" {
					acquires = m.GetHistogram().GetSampleCount()
				}
			case "resp_connections":
				conns = m.GetGauge().GetValue()
			}
		}
	}
	if acquires != 3 || conns != 1 {
		t.Fatalf("lock.acquire observations %d, connections %v; want 3 and 1", acquires, conns)
	}
	// The same registry cannot take a second server.
	if _, err := New(Config{Service: &fakeService{}, Registerer: reg}); err == nil {
		t.Fatal("New registered its metrics twice")
	}
}

func TestNewErrors(t *testing.T) {
	for _, cfg := range []Config{
		{},
		{Service: &fakeService{}, MaxTTL: -1},
		{Service: &fakeService{}, MaxWait: -1},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) succeeded", cfg)
		}
	}
}

func TestConfiguredLimits(t *testing.T) {
	_, addr := startScripted(t, Config{MaxTTL: time.Minute, MaxWait: time.Second})
	rdb := newRedis(t, addr, 2, "")
	ctx := testContext(t)
	for _, tc := range []doCase{
		{args: []any{"lock.acquire", "k", "o", "1m"}, want: int64(60000)},
		{args: []any{"lock.acquire", "k", "o", "61s"}, err: "ERR ttl 1m1s exceeds the maximum 1m0s"},
		{args: []any{"lock.acquire", "k", "o", "1", "WAIT", "1001"}, err: "ERR wait 1.001s exceeds the maximum 1s"},
	} {
		got, err := rdb.Do(ctx, tc.args...).Result()
		checkReply(t, 2, tc, got, err)
	}
}

func TestCloseCancelsCommands(t *testing.T) {
	started := make(chan struct{})
	cancelled := make(chan error, 1)
	svc := &fakeService{acquireFn: func(ctx context.Context, req lockapi.AcquireRequest) (lockapi.Lock, error) {
		close(started)
		<-ctx.Done()
		cancelled <- ctx.Err()
		return lockapi.Lock{}, ctx.Err()
	}}
	s, err := New(Config{Service: svc, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	rdb := newRedis(t, ln.Addr().String(), 2, "")
	reply := make(chan error, 1)
	go func() {
		reply <- rdb.Do(context.Background(), "lock.acquire", "k", "o", "1000", "WAIT", "5m").Err()
	}()
	<-started
	if s.Addr() == nil {
		t.Fatal("Addr is nil while serving")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve returned %v", err)
	}
	if err := <-cancelled; !errors.Is(err, context.Canceled) {
		t.Fatalf("command context: %v", err)
	}
	if err := <-reply; err == nil {
		t.Fatal("the command succeeded after Close")
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	// A closed server does not serve again.
	ln2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Serve(ln2); !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve after Close: %v", err)
	}
}

// TestAuthThrottle checks that repeated failed AUTHs on one connection are
// slowed down, while the first few are answered at once.
func TestAuthThrottle(t *testing.T) {
	_, addr := startScripted(t, Config{Password: "pw"})
	rdb := newRedis(t, addr, 2, "")
	ctx := testContext(t)
	conn := rdb.Conn()
	defer conn.Close()
	start := time.Now()
	for range authFreeTries {
		if err := conn.Do(ctx, "AUTH", "bad").Err(); err == nil || !strings.HasPrefix(err.Error(), "WRONGPASS") {
			t.Fatalf("AUTH bad: %v", err)
		}
	}
	if time.Since(start) >= authStepDelay {
		t.Fatalf("the first %d failures were slowed down", authFreeTries)
	}
	start = time.Now()
	conn.Do(ctx, "AUTH", "bad")
	if d := time.Since(start); d < authStepDelay {
		t.Fatalf("failure %d answered in %v, want at least %v", authFreeTries+1, d, authStepDelay)
	}
	if err := conn.Do(ctx, "AUTH", "pw").Err(); err != nil {
		t.Fatalf("AUTH pw: %v", err)
	}
}

// memberFake is a fakeService that also implements Membership.
type memberFake struct {
	*fakeService
	calls []string
}

func (m *memberFake) Join(_ context.Context, id, addr string) error {
	m.calls = append(m.calls, "join "+id+" "+addr)
	return nil
}

func (m *memberFake) Leave(_ context.Context, id string) error {
	m.calls = append(m.calls, "leave "+id)
	if id == "nobody" {
		return lockapi.ErrNoLeader
	}
	return nil
}

func TestClusterMembershipCommands(t *testing.T) {
	ctx := context.Background()
	svc := &memberFake{fakeService: &fakeService{}}
	_, addr := startServer(t, Config{Service: svc})
	rdb := redis.NewClient(&redis.Options{Addr: addr, Protocol: 2, MaxRetries: -1})
	defer rdb.Close()
	if s, err := rdb.Do(ctx, "CLUSTER.JOIN", "node4", "host:9004").Text(); err != nil || s != "OK" {
		t.Fatalf("CLUSTER.JOIN = %q, %v", s, err)
	}
	if s, err := rdb.Do(ctx, "cluster.leave", "node4").Text(); err != nil || s != "OK" {
		t.Fatalf("CLUSTER.LEAVE = %q, %v", s, err)
	}
	if err := rdb.Do(ctx, "CLUSTER.LEAVE", "nobody").Err(); err == nil || err.Error() != "CLUSTERDOWN no leader" {
		t.Fatalf("CLUSTER.LEAVE without a leader: %v", err)
	}
	if want := "[join node4 host:9004 leave node4 leave nobody]"; fmt.Sprint(svc.calls) != want {
		t.Fatalf("service calls %v, want %v", svc.calls, want)
	}
	_, plain := startServer(t, Config{Service: &fakeService{}})
	prdb := redis.NewClient(&redis.Options{Addr: plain, Protocol: 2})
	defer prdb.Close()
	if err := prdb.Do(ctx, "CLUSTER.JOIN", "a", "b:1").Err(); err == nil || !strings.Contains(err.Error(), "not supported") {
		t.Fatalf("CLUSTER.JOIN without membership: %v", err)
	}
}

// With a password set, a client that has not authenticated may send at most
// 10 arguments of at most 16 KiB, as in Redis (CVE-2021-32675); an AUTH
// lifts the bounds, even pipelined in the same write as the larger request.
func TestUnauthenticatedBounds(t *testing.T) {
	big := strings.Repeat("x", 20000)
	manyArgs := "*11\r\n$4\r\nECHO\r\n" + strings.Repeat("$1\r\na\r\n", 10)
	echoBig := fmt.Sprintf("*2\r\n$4\r\nECHO\r\n$%d\r\n%s\r\n", len(big), big)
	tests := []struct {
		name     string
		password string
		send     string
		want     string // the replies, then the connection closes if closed
		closed   bool
	}{
		{name: "many arguments before AUTH", password: "pw", send: manyArgs,
			want: "-ERR Protocol error: unauthenticated multibulk length\r\n", closed: true},
		{name: "long argument before AUTH", password: "pw", send: "*1\r\n$4\r\nPING\r\n" + echoBig,
			want: "-NOAUTH Authentication required.\r\n-ERR Protocol error: unauthenticated bulk length\r\n", closed: true},
		{name: "AUTH pipelined before a long argument", password: "pw", send: "*2\r\n$4\r\nAUTH\r\n$2\r\npw\r\n" + echoBig,
			want: fmt.Sprintf("+OK\r\n$%d\r\n%s\r\n", len(big), big)},
		{name: "no password", send: echoBig,
			want: fmt.Sprintf("$%d\r\n%s\r\n", len(big), big)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, addr := startScripted(t, Config{Password: tt.password})
			c, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := c.Write([]byte(tt.send)); err != nil {
				t.Fatal(err)
			}
			got := make([]byte, len(tt.want))
			if _, err := io.ReadFull(c, got); err != nil || string(got) != tt.want {
				t.Fatalf("replies %.80q (%v), want %.80q", got, err, tt.want)
			}
			if !tt.closed {
				return
			}
			// A reset when the server closes with bytes of ours unread.
			if n, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) {
				t.Fatalf("after the protocol error: read %d bytes, %v; want the connection closed", n, err)
			}
		})
	}
}

// AUTH, HELLO AUTH and RESET work on a client without a connection, as
// the dispatch fuzzer and benchmarks run them.
func TestAuthWithoutConnection(t *testing.T) {
	s, err := New(Config{Service: fuzzService(), Logger: quietLogger(), Password: "pw"})
	if err != nil {
		t.Fatal(err)
	}
	c := s.newClient(nil, 1)
	for _, tc := range []struct{ args, want string }{
		{"auth pw", "+OK\r\n"},
		{"reset", "+RESET\r\n"},
		{"hello 2 auth default pw", "*14\r\n"},
	} {
		var args [][]byte
		for _, a := range strings.Fields(tc.args) {
			args = append(args, []byte(a))
		}
		s.dispatch(c, args)
		if !strings.HasPrefix(string(c.out), tc.want) {
			t.Fatalf("%s: %q, want it to start %q", tc.args, c.out, tc.want)
		}
		c.resetOut()
	}
}
