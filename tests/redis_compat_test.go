//go:build unix

package tests

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/bsm/redislock"
	"github.com/go-redsync/redsync/v4"
	goredispool "github.com/go-redsync/redsync/v4/redis/goredis/v9"
	redigo "github.com/gomodule/redigo/redis"
	"github.com/redis/go-redis/v9"
	"github.com/redis/rueidis"
)

// TestRedisClientsGoRedis drives the key commands and scripts through
// go-redis v9 in RESP3 and RESP2: a key made by SET is a lock LOCK.INFO
// shows with its fencing token.
func TestRedisClientsGoRedis(t *testing.T) {
	p := newProc(t, "node1")
	p.start()
	for _, proto := range []int{3, 2} {
		t.Run(fmt.Sprintf("resp%d", proto), func(t *testing.T) {
			ctx := ctxFor(t)
			rdb := redis.NewClient(&redis.Options{Addr: p.respAddr(), Protocol: proto, ClientName: "compat"})
			defer rdb.Close()
			key := fmt.Sprintf("gr-%d", proto)
			if ok, err := rdb.SetNX(ctx, key, "alice", 30*time.Second).Result(); err != nil || !ok {
				t.Fatalf("SET NX PX = %v, %v", ok, err)
			}
			if ok, _ := rdb.SetNX(ctx, key, "bob", 30*time.Second).Result(); ok {
				t.Fatal("second SET NX succeeded")
			}
			if v, err := rdb.Get(ctx, key).Result(); err != nil || v != "alice" {
				t.Fatalf("GET = %q, %v", v, err)
			}
			if _, err := rdb.Get(ctx, "nope").Result(); err != redis.Nil {
				t.Fatalf("GET missing: %v, want redis.Nil", err)
			}
			if ttl, err := rdb.PTTL(ctx, key).Result(); err != nil || ttl <= 25*time.Second || ttl > 30*time.Second {
				t.Fatalf("PTTL = %v, %v", ttl, err)
			}
			info := infoMap(t, rdb.Do(ctx, "LOCK.INFO", key))
			tok, _ := info["fencing_token"].(int64)
			if info["owner"] != "alice" || tok <= 0 {
				t.Fatalf("LOCK.INFO of a SET key = %v", info)
			}
			// LOCK.ACQUIRE by the same owner extends the SET key: same token.
			if again, err := rdb.Do(ctx, "LOCK.ACQUIRE", key, "alice", "60s").Int64(); err != nil || again != tok {
				t.Fatalf("LOCK.ACQUIRE on the SET key = %d, %v; want %d", again, err, tok)
			}
			sum := redis.NewScript(`return {KEYS[1], ARGV[1], tonumber(ARGV[2]) * 2, redis.call('get', KEYS[1])}`)
			got, err := sum.Run(ctx, rdb, []string{key}, "x", 21).Slice()
			if err != nil || fmt.Sprint(got) != "[gr-"+fmt.Sprint(proto)+" x 42 alice]" {
				t.Fatalf("script = %v, %v", got, err)
			}
			if n, err := rdb.HSet(ctx, key+"-h", "f", "1").Result(); err != nil || n != 1 {
				t.Fatalf("HSET = %d, %v", n, err)
			}
			if err := rdb.Get(ctx, key+"-h").Err(); err == nil || !strings.HasPrefix(err.Error(), "WRONGTYPE") {
				t.Fatalf("GET of a hash: %v, want WRONGTYPE", err)
			}
			if err := rdb.EvalSha(ctx, strings.Repeat("ab", 20), nil).Err(); err == nil || err.Error() != "NOSCRIPT No matching script. Please use EVAL." {
				t.Fatalf("EVALSHA unknown: %v", err)
			}
			if s, err := rdb.Info(ctx, "server", "raft").Result(); err != nil || !strings.Contains(s, "redis_version:") || !strings.Contains(s, "raft_leader_id:node1") {
				t.Fatalf("INFO = %q, %v", s, err)
			}
			if n, err := rdb.Del(ctx, key, key+"-h").Result(); err != nil || n != 2 {
				t.Fatalf("DEL = %d, %v", n, err)
			}
			if err := rdb.Do(ctx, "LOCK.INFO", key).Err(); err != redis.Nil {
				t.Fatalf("LOCK.INFO after DEL: %v", err)
			}
		})
	}
}

// TestRedisClientsRedsync runs go-redsync/redsync v4 unmodified: Lock,
// Extend, a second mutex failing while the first holds, Unlock.
func TestRedisClientsRedsync(t *testing.T) {
	p := newProc(t, "node1")
	p.start()
	ctx := ctxFor(t)
	rdb := redis.NewClient(&redis.Options{Addr: p.respAddr()})
	defer rdb.Close()
	rs := redsync.New(goredispool.NewPool(rdb))
	m := rs.NewMutex("redsync-job", redsync.WithExpiry(5*time.Second), redsync.WithTries(1))
	if err := m.LockContext(ctx); err != nil {
		t.Fatalf("Lock: %v", err)
	}
	other := rs.NewMutex("redsync-job", redsync.WithExpiry(5*time.Second), redsync.WithTries(1))
	if err := other.LockContext(ctx); err == nil {
		t.Fatal("a second mutex locked a held lock")
	}
	if ok, err := m.ExtendContext(ctx); err != nil || !ok {
		t.Fatalf("Extend = %v, %v", ok, err)
	}
	if ttl := rdb.PTTL(ctx, "redsync-job").Val(); ttl <= 4*time.Second {
		t.Fatalf("PTTL after Extend = %v", ttl)
	}
	if info := infoMap(t, rdb.Do(ctx, "LOCK.INFO", "redsync-job")); info["owner"] != m.Value() {
		t.Fatalf("LOCK.INFO = %v, want owner %s", info, m.Value())
	}
	if ok, err := m.UnlockContext(ctx); err != nil || !ok {
		t.Fatalf("Unlock = %v, %v", ok, err)
	}
	if err := other.LockContext(ctx); err != nil {
		t.Fatalf("Lock after Unlock: %v", err)
	}
	if ok, err := other.UnlockContext(ctx); err != nil || !ok {
		t.Fatalf("second Unlock = %v, %v", ok, err)
	}
}

// TestRedisClientsRedislock runs bsm/redislock unmodified.
func TestRedisClientsRedislock(t *testing.T) {
	p := newProc(t, "node1")
	p.start()
	ctx := ctxFor(t)
	rdb := redis.NewClient(&redis.Options{Addr: p.respAddr(), Protocol: 3})
	defer rdb.Close()
	locker := redislock.New(rdb)
	lock, err := locker.Obtain(ctx, "rl-key", 5*time.Second, nil)
	if err != nil {
		t.Fatalf("Obtain: %v", err)
	}
	if _, err := locker.Obtain(ctx, "rl-key", time.Second, nil); !errors.Is(err, redislock.ErrNotObtained) {
		t.Fatalf("second Obtain: %v, want ErrNotObtained", err)
	}
	if ttl, err := lock.TTL(ctx); err != nil || ttl <= 4*time.Second || ttl > 5*time.Second {
		t.Fatalf("TTL = %v, %v", ttl, err)
	}
	if err := lock.Refresh(ctx, 20*time.Second, nil); err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	if ttl, err := lock.TTL(ctx); err != nil || ttl <= 15*time.Second {
		t.Fatalf("TTL after Refresh = %v, %v", ttl, err)
	}
	if err := lock.Release(ctx); err != nil {
		t.Fatalf("Release: %v", err)
	}
	if err := lock.Release(ctx); !errors.Is(err, redislock.ErrLockNotHeld) {
		t.Fatalf("second Release: %v, want ErrLockNotHeld", err)
	}
}

// TestRedisClientsRedigo uses redigo (RESP2) with its Script helper, which
// sends EVALSHA and falls back to EVAL on NOSCRIPT.
func TestRedisClientsRedigo(t *testing.T) {
	p := newProc(t, "node1")
	p.start()
	conn, err := redigo.Dial("tcp", p.respAddr(), redigo.DialClientName("redigo"), redigo.DialDatabase(0))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if ok, err := redigo.String(conn.Do("SET", "rg", "tok", "NX", "PX", 10000)); err != nil || ok != "OK" {
		t.Fatalf("SET = %q, %v", ok, err)
	}
	if _, err := redigo.String(conn.Do("SET", "rg", "tok2", "NX", "PX", 10000)); err != redigo.ErrNil {
		t.Fatalf("SET NX on a held key: %v, want nil", err)
	}
	release := redigo.NewScript(1, `if redis.call("get",KEYS[1]) == ARGV[1] then
    return redis.call("del",KEYS[1])
else
    return 0
end`)
	if n, err := redigo.Int(release.Do(conn, "rg", "other")); err != nil || n != 0 {
		t.Fatalf("release by another = %d, %v", n, err)
	}
	if n, err := redigo.Int(release.Do(conn, "rg", "tok")); err != nil || n != 1 {
		t.Fatalf("release = %d, %v", n, err)
	}
	if n, err := redigo.Int(conn.Do("EXISTS", "rg")); err != nil || n != 0 {
		t.Fatalf("EXISTS after release = %d, %v", n, err)
	}
}

// TestRedisClientsRueidis connects rueidis with default options: it needs
// HELLO 3 and CLIENT TRACKING ON OPTIN, and probes CLUSTER SLOTS.
func TestRedisClientsRueidis(t *testing.T) {
	p := newProc(t, "node1")
	p.start()
	ctx := ctxFor(t)
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{p.respAddr()}})
	if err != nil {
		t.Fatalf("rueidis.NewClient: %v", err)
	}
	defer c.Close()
	if err := c.Do(ctx, c.B().Set().Key("ru").Value("v1").Nx().PxMilliseconds(30000).Build()).Error(); err != nil {
		t.Fatalf("SET: %v", err)
	}
	if v, err := c.Do(ctx, c.B().Get().Key("ru").Build()).ToString(); err != nil || v != "v1" {
		t.Fatalf("GET = %q, %v", v, err)
	}
	if err := c.Do(ctx, c.B().Get().Key("missing").Build()).Error(); !rueidis.IsRedisNil(err) {
		t.Fatalf("GET missing: %v, want nil", err)
	}
	s := rueidis.NewLuaScript(`return redis.call("pttl", KEYS[1]) > 0 and 1 or 0`)
	if n, err := s.Exec(ctx, c, []string{"ru"}, nil).AsInt64(); err != nil || n != 1 {
		t.Fatalf("script = %d, %v", n, err)
	}
}

// TestRedisUserScript runs a user's own small script with EVAL, EVALSHA and
// SCRIPT LOAD/EXISTS/FLUSH.
func TestRedisUserScript(t *testing.T) {
	p := newProc(t, "node1")
	p.start()
	ctx := ctxFor(t)
	rdb := p.redis(3)
	const body = `
local n = redis.call('hincrby', KEYS[1], 'count', tonumber(ARGV[1]))
if n > 10 then return redis.error_reply('TOOMANY ' .. n) end
redis.call('pexpire', KEYS[1], 60000)
return {n, redis.call('hlen', KEYS[1]), redis.status_reply('fine')}`
	sha, err := rdb.ScriptLoad(ctx, body).Result()
	if err != nil {
		t.Fatal(err)
	}
	got, err := rdb.EvalSha(ctx, sha, []string{"counter"}, 4).Slice()
	if err != nil || fmt.Sprint(got) != "[4 1 fine]" {
		t.Fatalf("EVALSHA = %v, %v", got, err)
	}
	if got, err := rdb.Eval(ctx, body, []string{"counter"}, 5).Slice(); err != nil || fmt.Sprint(got) != "[9 1 fine]" {
		t.Fatalf("EVAL = %v, %v", got, err)
	}
	if err := rdb.EvalSha(ctx, sha, []string{"counter"}, 5).Err(); err == nil || err.Error() != "TOOMANY 14" {
		t.Fatalf("EVALSHA over the limit: %v", err)
	}
	if ex, _ := rdb.ScriptExists(ctx, sha, strings.Repeat("0", 40)).Result(); fmt.Sprint(ex) != "[true false]" {
		t.Fatalf("SCRIPT EXISTS = %v", ex)
	}
	if err := rdb.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.EvalSha(ctx, sha, []string{"counter"}, 1).Err(); err == nil || !strings.HasPrefix(err.Error(), "NOSCRIPT ") {
		t.Fatalf("EVALSHA after FLUSH: %v", err)
	}
}

// TestRedisCLIInteractive drives redis-cli through a stdin pipe (one
// command a line, as a user types them) and one-shot.
func TestRedisCLIInteractive(t *testing.T) {
	cli := requireTool(t, "redis-cli")
	p := newProc(t, "node1")
	p.start()
	cmd := exec.Command(cli, "-p", fmt.Sprint(p.respPort))
	cmd.Stdin = strings.NewReader("SET a b NX PX 30000\nGET a\nEXISTS a\nHSET h f v\nGET h\nEVAL \"return redis.call('get', KEYS[1])\" 1 a\nDEL a h\nGET a\nCOMMAND COUNT\nINFO keyspace\n")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli: %v\n%s", err, out)
	}
	// redis-cli prints an empty line after an error and for a nil.
	// COMMAND COUNT is whatever the command table holds: any number.
	want := regexp.MustCompile("^OK\nb\n1\n1\nWRONGTYPE Operation against a key holding the wrong kind of value\n\nb\n2\n\n[1-9][0-9]\n# Keyspace")
	if !want.Match(out) {
		t.Fatalf("redis-cli printed\n%s\nwant to match\n%s", out, want)
	}
	one, err := exec.Command(cli, "-p", fmt.Sprint(p.respPort), "SET", "k", "v", "PX", "5000").CombinedOutput()
	if err != nil || strings.TrimSpace(string(one)) != "OK" {
		t.Fatalf("one-shot SET: %q, %v", one, err)
	}
	three, err := exec.Command(cli, "-3", "-p", fmt.Sprint(p.respPort), "GET", "nothing").CombinedOutput()
	if err != nil || strings.TrimSpace(string(three)) != "" {
		t.Fatalf("redis-cli -3 GET missing: %q, %v", three, err)
	}
}

// TestRedisAuth checks --requirepass with real clients: no password gets
// NOAUTH, a wrong one WRONGPASS, the right one works (AUTH and HELLO AUTH);
// before authenticating, a request is bounded as in Redis (10 arguments of
// 16 KiB at most), after it is not.
func TestRedisAuth(t *testing.T) {
	p := newProc(t, "node1", "--requirepass", "s3cret")
	p.launch()
	poll(t, 20*time.Second, "node1 ready", func() bool {
		req, _ := http.NewRequest("GET", p.url("/health/ready"), nil)
		req.Header.Set("Authorization", "Bearer s3cret")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	ctx := ctxFor(t)
	for _, proto := range []int{2, 3} {
		good := redis.NewClient(&redis.Options{Addr: p.respAddr(), Protocol: proto, Password: "s3cret"})
		if err := good.Set(ctx, "auth-k", "v", time.Minute).Err(); err != nil {
			t.Fatalf("resp%d with the password: %v", proto, err)
		}
		if err := good.Set(ctx, "auth-big", strings.Repeat("x", 20000), time.Minute).Err(); err != nil {
			t.Fatalf("resp%d with the password, a 20 KB value: %v", proto, err)
		}
		good.Close()
		none := redis.NewClient(&redis.Options{Addr: p.respAddr(), Protocol: proto, MaxRetries: -1})
		if err := none.Get(ctx, "auth-k").Err(); err == nil || !strings.HasPrefix(err.Error(), "NOAUTH") {
			t.Fatalf("resp%d without a password: %v, want NOAUTH", proto, err)
		}
		keys := []any{"del"}
		for i := range 10 {
			keys = append(keys, fmt.Sprint("k", i))
		}
		const unauth = "ERR Protocol error: unauthenticated multibulk length"
		if err := none.Do(ctx, keys...).Err(); err == nil || err.Error() != unauth {
			t.Fatalf("resp%d, 11 arguments without a password: %v, want %q", proto, err, unauth)
		}
		none.Close()
		bad := redis.NewClient(&redis.Options{Addr: p.respAddr(), Protocol: proto, Password: "wrong", MaxRetries: -1})
		if err := bad.Get(ctx, "auth-k").Err(); err == nil || !strings.HasPrefix(err.Error(), "WRONGPASS") {
			t.Fatalf("resp%d with a wrong password: %v, want WRONGPASS", proto, err)
		}
		bad.Close()
	}
	conn, err := redigo.Dial("tcp", p.respAddr(), redigo.DialPassword("s3cret"))
	if err != nil {
		t.Fatalf("redigo with the password: %v", err)
	}
	if v, err := redigo.String(conn.Do("GET", "auth-k")); err != nil || v != "v" {
		t.Fatalf("redigo GET = %q, %v", v, err)
	}
	conn.Close()
	if cli, err := exec.LookPath("redis-cli"); err == nil {
		out, _ := exec.Command(cli, "-p", fmt.Sprint(p.respPort), "--no-auth-warning", "-a", "s3cret", "GET", "auth-k").CombinedOutput()
		if strings.TrimSpace(string(out)) != "v" {
			t.Fatalf("redis-cli -a: %q", out)
		}
	}
}

// TestRedisScriptCacheSurvivesFailover loads a script on a 3-node cluster,
// kills the leader, and runs it by SHA on the new leader (through a
// follower); a SET key keeps its owner and token across the failover.
func TestRedisScriptCacheSurvivesFailover(t *testing.T) {
	c := newCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	lead := c.leader()
	rdb := lead.redis(3)
	sha, err := rdb.ScriptLoad(ctx, `return redis.call('get', KEYS[1])`).Result()
	if err != nil {
		t.Fatal(err)
	}
	if err := rdb.Set(ctx, "fo-key", "holder", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	tok := infoMap(t, rdb.Do(ctx, "LOCK.INFO", "fo-key"))["fencing_token"]
	lead.kill()
	next := c.leader()
	follower := c.others(next)[0]
	if follower == lead {
		follower = c.others(next)[1]
	}
	cl := redis.NewClient(&redis.Options{Addr: follower.respAddr(), MaxRetries: 10})
	defer cl.Close()
	if v, err := cl.EvalSha(ctx, sha, []string{"fo-key"}).Result(); err != nil || v != "holder" {
		t.Fatalf("EVALSHA after failover via a follower = %v, %v", v, err)
	}
	if info := infoMap(t, cl.Do(ctx, "LOCK.INFO", "fo-key")); info["owner"] != "holder" || info["fencing_token"] != tok {
		t.Fatalf("LOCK.INFO after failover = %v, want token %v", info, tok)
	}
}

// redisPyLock exercises redis-py's Lock (SET NX PX, then EVALSHA with the
// SCRIPT LOAD fallback for extend, reacquire and release) unmodified.
const redisPyLock = `
import sys, redis
r = redis.Redis(host="127.0.0.1", port=int(sys.argv[1]))
a = r.lock("py-lock", timeout=5)
assert a.acquire(blocking=False)
b = r.lock("py-lock", timeout=5)
assert not b.acquire(blocking=False)
assert a.extend(10)
assert r.pttl("py-lock") > 10000
assert a.extend(3, replace_ttl=True)
assert r.pttl("py-lock") <= 3000
assert a.reacquire()
assert a.owned()
a.release()
assert not r.exists("py-lock")
assert b.acquire(blocking=False)
b.release()
print("ok")
`

// TestRedisClientsRedisPy runs redis-py's Lock with Debian's python3-redis
// (4.3.4, RESP2). redis-py 8 (RESP3 by default) is not installable here
// (no PyPI); its handshake (HELLO 3 as a map with proto 3, `_` nulls) is
// what go-redis and redis-cli -3 exercise above.
func TestRedisClientsRedisPy(t *testing.T) {
	py := "/usr/bin/python3"
	if err := exec.Command(py, "-c", "import redis").Run(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("python3-redis is required under CI=true (.ci/run installs it): %v", err)
		}
		t.Skip("python3-redis not installed (apt-get install python3-redis); skipping")
	}
	p := newProc(t, "node1")
	p.start()
	out, err := exec.Command(py, "-c", redisPyLock, fmt.Sprint(p.respPort)).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "ok" {
		t.Fatalf("redis-py Lock: %v\n%s", err, out)
	}
}
