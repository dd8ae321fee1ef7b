package resp

import (
	"bufio"
	"context"
	"io"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/distlock/distlock/lockapi"
)

// rawConn is a plain TCP client for checking replies byte for byte.
type rawConn struct {
	t  testing.TB
	nc net.Conn
	r  *bufio.Reader
}

func dialRaw(t testing.TB, addr string) *rawConn {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	_ = nc.SetDeadline(time.Now().Add(20 * time.Second))
	return &rawConn{t: t, nc: nc, r: bufio.NewReader(nc)}
}

func (c *rawConn) send(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.nc, s); err != nil {
		c.t.Fatal(err)
	}
}

// expect reads exactly len(want) bytes and compares them with want.
func (c *rawConn) expect(want string) {
	c.t.Helper()
	got := make([]byte, len(want))
	if n, err := io.ReadFull(c.r, got); err != nil {
		c.t.Fatalf("read %q, %v; want %q", got[:n], err, want)
	}
	if string(got) != want {
		c.t.Fatalf("got %q, want %q", got, want)
	}
}

func (c *rawConn) expectEOF() {
	c.t.Helper()
	if b, err := c.r.ReadByte(); err == nil {
		c.t.Fatalf("read %q, want EOF", b)
	}
}

// cmd encodes a command as a RESP multibulk request.
func cmd(args ...string) string {
	var b strings.Builder
	b.WriteString("*" + strconv.Itoa(len(args)) + "\r\n")
	for _, a := range args {
		b.WriteString("$" + strconv.Itoa(len(a)) + "\r\n" + a + "\r\n")
	}
	return b.String()
}

const (
	infoBodyRESP2 = "*14\r\n$3\r\nkey\r\n$1\r\nk\r\n$5\r\nowner\r\n$1\r\no\r\n" +
		"$13\r\nfencing_token\r\n:42\r\n$7\r\nversion\r\n:3\r\n$6\r\nttl_ms\r\n:12346\r\n" +
		"$10\r\nexpires_at\r\n:1700000000000\r\n$7\r\nwaiters\r\n:2\r\n"
	infoBodyRESP3 = "%7\r\n$3\r\nkey\r\n$1\r\nk\r\n$5\r\nowner\r\n$1\r\no\r\n" +
		"$13\r\nfencing_token\r\n:42\r\n$7\r\nversion\r\n:3\r\n$6\r\nttl_ms\r\n:12346\r\n" +
		"$10\r\nexpires_at\r\n:1700000000000\r\n$7\r\nwaiters\r\n:2\r\n"
	clusterID   = "$10\r\ncluster_id\r\n$6\r\nc0ffee\r\n"
	clusterTail = "$2\r\nid\r\n$2\r\nn2\r\n$5\r\nstate\r\n$8\r\nfollower\r\n$7\r\naddress\r\n$14\r\n127.0.0.1:9002\r\n" +
		"$12\r\nresp_address\r\n$0\r\n\r\n$12\r\nhttp_address\r\n$0\r\n\r\n$11\r\nquorum_size\r\n:2\r\n$10\r\nhas_quorum\r\n"
	helloRESP3 = "%7\r\n$6\r\nserver\r\n$8\r\ndistlock\r\n$7\r\nversion\r\n$5\r\n7.2.0\r\n$5\r\nproto\r\n:3\r\n" +
		"$2\r\nid\r\n:1\r\n$4\r\nmode\r\n$10\r\nstandalone\r\n$4\r\nrole\r\n$6\r\nmaster\r\n$7\r\nmodules\r\n*0\r\n"
)

func TestRawRESP2AndRESP3(t *testing.T) {
	_, addr := startScripted(t, Config{})
	c := dialRaw(t, addr)

	// RESP2: maps are flat arrays, nulls are $-1 / *-1, booleans integers.
	c.send(cmd("LOCK.INFO", "k"))
	c.expect(infoBodyRESP2)
	c.send(cmd("lock.info", "missing") + cmd("lock.acquire", "held", "o", "1") + cmd("client", "getname"))
	c.expect("*-1\r\n$-1\r\n$-1\r\n")
	c.send(cmd("cluster.info"))
	c.expect("*12\r\n$9\r\nleader_id\r\n$2\r\nn1\r\n$4\r\nterm\r\n:7\r\n$5\r\nnodes\r\n*2\r\n*10\r\n")
	c.r.Discard(len("$2\r\nid\r\n$2\r\nn1\r\n$5\r\nstate\r\n$6\r\nleader\r\n$7\r\naddress\r\n$14\r\n127.0.0.1:9001\r\n$12\r\nresp_address\r\n$14\r\n127.0.0.1:6379\r\n$12\r\nhttp_address\r\n$14\r\n127.0.0.1:8001\r\n"))
	c.expect("*10\r\n" + clusterTail + ":1\r\n" + clusterID)

	// HELLO 3 switches this connection to RESP3.
	c.send(cmd("HELLO", "3"))
	c.expect(helloRESP3)
	c.send(cmd("LOCK.INFO", "k"))
	c.expect(infoBodyRESP3)
	c.send(cmd("lock.info", "missing") + cmd("lock.acquire", "held", "o", "1") + cmd("client", "getname"))
	c.expect("_\r\n_\r\n_\r\n")
	c.send(cmd("cluster.info"))
	c.expect("%6\r\n$9\r\nleader_id\r\n$2\r\nn1\r\n$4\r\nterm\r\n:7\r\n$5\r\nnodes\r\n*2\r\n%5\r\n")
	c.r.Discard(len("$2\r\nid\r\n$2\r\nn1\r\n$5\r\nstate\r\n$6\r\nleader\r\n$7\r\naddress\r\n$14\r\n127.0.0.1:9001\r\n$12\r\nresp_address\r\n$14\r\n127.0.0.1:6379\r\n$12\r\nhttp_address\r\n$14\r\n127.0.0.1:8001\r\n"))
	c.expect("%5\r\n" + clusterTail + "#t\r\n" + clusterID)
	c.send(cmd("lock.list"))
	second := strings.NewReplacer("$1\r\nk\r\n", "$2\r\nk2\r\n", "$1\r\no\r\n", "$2\r\no2\r\n", ":42", ":43").Replace(infoBodyRESP3)
	c.expect("*2\r\n" + infoBodyRESP3 + second)

	// And HELLO 2 back.
	c.send(cmd("hello", "2"))
	c.expect("*14\r\n$6\r\nserver\r\n")
	c.r.Discard(len(helloRESP3) - len("%7\r\n$6\r\nserver\r\n"))
	c.send(cmd("lock.info", "missing"))
	c.expect("*-1\r\n")
}

func TestRawCrashRequest(t *testing.T) {
	rec, addr := startScripted(t, Config{})
	c := dialRaw(t, addr)
	// The command before the 26-byte crash request runs and is answered
	// first; then the protocol error, then the connection closes.
	c.send(cmd("lock.acquire", "k", "o", "1000") + "*1\r\n$9223372036854775807\r\n")
	c.expect(":1000\r\n-ERR Protocol error: invalid bulk length\r\n")
	c.expectEOF()

	// The process survived.
	c2 := dialRaw(t, addr)
	c2.send("PING\r\n")
	c2.expect("+PONG\r\n")
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.calls != 1 {
		t.Fatalf("service called %d times", rec.calls)
	}
}

func TestRawProtocolLimits(t *testing.T) {
	_, addr := startScripted(t, Config{})
	for _, tc := range []struct{ in, want string }{
		{"*1025\r\n", "-ERR Protocol error: invalid multibulk length\r\n"},
		{"*1\r\n$524289\r\n", "-ERR Protocol error: invalid bulk length\r\n"},
		{"*1\r\n$-1\r\n", "-ERR Protocol error: invalid bulk length\r\n"},
		{"*1\r\n+PING\r\n", "-ERR Protocol error: expected '$', got '+'\r\n"},
		{strings.Repeat("x", 64<<10+1), "-ERR Protocol error: too big inline request\r\n"},
		{"PING \"\r\n", "-ERR Protocol error: unbalanced quotes in request\r\n"},
	} {
		c := dialRaw(t, addr)
		c.send(tc.in)
		c.expect(tc.want)
		c.expectEOF()
	}
}

func TestRawInlineAndEmpty(t *testing.T) {
	_, addr := startScripted(t, Config{})
	c := dialRaw(t, addr)
	// Inline commands (redis-cli, telnet), empty lines and empty multibulk
	// requests, which Redis ignores.
	c.send("lock.acquire k o 1000\r\n\r\n*0\r\n*-1\r\necho \"a b\"\nPING\r\n")
	c.expect(":1000\r\n$3\r\na b\r\n+PONG\r\n")
}

func TestRawQuit(t *testing.T) {
	rec, addr := startScripted(t, Config{})
	c := dialRaw(t, addr)
	c.send("PING\r\nQUIT\r\nlock.acquire k o 1000\r\n")
	c.expect("+PONG\r\n+OK\r\n")
	c.expectEOF()
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.calls != 0 {
		t.Fatal("a command pipelined after QUIT ran")
	}
}

func TestRawPanicIsContained(t *testing.T) {
	var panics atomic.Int32
	svc := &fakeService{infoFn: func(ctx context.Context, key string) (lockapi.Lock, error) {
		panics.Add(1)
		var m map[string]int
		m[key]++ // nil map write
		return lockapi.Lock{}, nil
	}}
	_, addr := startServer(t, Config{Service: svc})
	c := dialRaw(t, addr)
	c.send(cmd("lock.info", "k") + cmd("ping"))
	c.expect("-ERR internal error\r\n+PONG\r\n")
	// Same connection, and the process, keep working.
	c.send(cmd("lock.info", "k"))
	c.expect("-ERR internal error\r\n")
	c2 := dialRaw(t, addr)
	c2.send("PING\r\n")
	c2.expect("+PONG\r\n")
	if n := panics.Load(); n != 2 {
		t.Fatalf("%d panics", n)
	}
}

func TestRawMaxClients(t *testing.T) {
	_, addr := startScripted(t, Config{MaxClients: 1})
	c := dialRaw(t, addr)
	c.send("PING\r\n")
	c.expect("+PONG\r\n")
	c2 := dialRaw(t, addr)
	c2.expect("-ERR max number of clients reached\r\n")
	c2.expectEOF()
}

// Replies checked against redis-server 7.0.15, byte for byte: integers
// parsed as Redis's string2ll does (no '+', no leading zeros), and a null
// bulk for each unknown name of COMMAND INFO under RESP2.
func TestRepliesLikeRedis(t *testing.T) {
	_, addr := startScripted(t, Config{})
	c := dialRaw(t, addr)
	for _, tt := range []struct {
		send []string
		want string
	}{
		{[]string{"SELECT", "+0"}, "-ERR value is not an integer or out of range\r\n"},
		{[]string{"SELECT", "00"}, "-ERR value is not an integer or out of range\r\n"},
		{[]string{"SELECT", "0"}, "+OK\r\n"},
		{[]string{"HELLO", "+3"}, "-ERR Protocol version is not an integer or out of range\r\n"},
		{[]string{"COMMAND", "INFO", "nosuch"}, "*1\r\n$-1\r\n"},
	} {
		c.send(cmd(tt.send...))
		c.expect(tt.want)
	}
}
