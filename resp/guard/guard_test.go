package guard

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tidwall/redcon"
)

// chunkConn is a net.Conn whose Read returns data in chunks of at most size
// bytes and whose Write records what the guard replies.
type chunkConn struct {
	net.Conn // nil: unused methods panic
	data     []byte
	size     int
	written  bytes.Buffer
	closed   int
}

func (c *chunkConn) Read(b []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := min(len(b), c.size, len(c.data))
	copy(b, c.data[:n])
	c.data = c.data[n:]
	return n, nil
}

func (c *chunkConn) Write(b []byte) (int, error)      { return c.written.Write(b) }
func (c *chunkConn) SetWriteDeadline(time.Time) error { return nil }
func (c *chunkConn) Close() error                     { c.closed++; return nil }
func (c *chunkConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *chunkConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *chunkConn) SetDeadline(time.Time) error      { return nil }
func (c *chunkConn) SetReadDeadline(time.Time) error  { return nil }
func newGuarded(data []byte, size int, lim Limits) (*conn, *chunkConn) {
	cc := &chunkConn{data: data, size: size}
	return newConn(cc, lim, nil), cc
}

// readAll drains a guarded connection with reads of readLen bytes.
func readAll(c *conn, readLen int) ([]byte, error) {
	var out []byte
	b := make([]byte, readLen)
	for {
		n, err := c.Read(b)
		out = append(out, b[:n]...)
		if err != nil {
			return out, err
		}
	}
}

var validInputs = []struct {
	name string
	in   string
	cmds int
}{
	{"ping", "*1\r\n$4\r\nPING\r\n", 1},
	{"pipeline", "*1\r\n$4\r\nPING\r\n*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n", 3},
	{"binary bulk", "*2\r\n$4\r\nECHO\r\n$7\r\n\r\n*1\r\n\x00\r\n", 1},
	{"empty bulk", "*2\r\n$4\r\nECHO\r\n$0\r\n\r\n", 1},
	{"inline crlf", "PING\r\n", 1},
	{"inline lf", "PING\n", 1},
	{"inline args", "SET k v\r\nGET k\n", 2},
	{"inline spaces", "  SET   k  v  \r\n", 1},
	{"empty lines", "\r\n\n\r\n", 0},
	{"blank line", "   \r\n", 0},
	{"inline quotes", "SET \"a b\" 'c d'\r\nECHO \"x\\\"y\"\r\n", 2},
	{"inline empty quoted", "ECHO \"\"\r\n", 1},
	{"inline cr inside", "ECHO a\rb\r\n", 1},
	{"inline cr before space", "ECHO a\r b\r\n", 1},
	{"inline escaped quote char", "ECHO \"a\\\\\"\r\n", 1},
	{"mixed", "PING\r\n*1\r\n$4\r\nPING\r\nPING\n", 3},
	{"dollar starts inline", "$4\r\n", 1},
	{"colon starts inline", ":1\r\n", 1},
	{"max args", "*3\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n", 1},
}

// TestValidInput checks that valid input reaches redcon as the same commands
// (multibulk requests byte for byte; inline ones converted to multibulk), for
// every chunking of the input and several read sizes.
func TestValidInput(t *testing.T) {
	for _, tc := range validInputs {
		t.Run(tc.name, func(t *testing.T) {
			want := redconParse(t, []byte(tc.in))
			if len(want) != tc.cmds {
				t.Fatalf("redcon parsed %d commands from the raw input, want %d", len(want), tc.cmds)
			}
			var first []byte
			for size := 1; size <= len(tc.in); size++ {
				for _, readLen := range []int{1, 3, 4096} {
					c, cc := newGuarded([]byte(tc.in), size, Limits{})
					out, err := readAll(c, readLen)
					if err != io.EOF {
						t.Fatalf("size %d read %d: err = %v, want EOF", size, readLen, err)
					}
					if first == nil {
						first = out
					} else if !bytes.Equal(out, first) {
						t.Fatalf("size %d read %d: out = %q, but %q with other chunks", size, readLen, out, first)
					}
					if cc.written.Len() != 0 {
						t.Fatalf("wrote %q", cc.written.String())
					}
					if c.p.cmds != tc.cmds {
						t.Fatalf("counted %d commands, want %d", c.p.cmds, tc.cmds)
					}
				}
			}
			if got := redconParse(t, first); !reflect.DeepEqual(got, want) {
				t.Fatalf("redcon parsed %q through the guard, %q without", got, want)
			}
			if tc.in[0] == '*' && string(first) != tc.in {
				t.Fatalf("multibulk input changed: %q", first)
			}
		})
	}
}

func TestEmptyRequestsAreDropped(t *testing.T) {
	in := "*0\r\n*1\r\n$4\r\nPING\r\n*-1\r\n*-25\r\n*1\r\n$1\r\nx\r\n*0\r\n"
	want := "*1\r\n$4\r\nPING\r\n*1\r\n$1\r\nx\r\n"
	for size := 1; size <= len(in); size++ {
		c, _ := newGuarded([]byte(in), size, Limits{})
		out, err := readAll(c, 2)
		if err != io.EOF || string(out) != want {
			t.Fatalf("size %d: got %q, %v; want %q, EOF", size, out, err, want)
		}
	}
}

var tight = Limits{MaxArgs: 3, MaxBulkLen: 10, MaxInlineLen: 16, MaxRequestLen: 40}

var violations = []struct {
	name string
	in   string
	lim  Limits
	out  string // bytes passed to redcon before the error
	msg  string
}{
	{"crash request", "*1\r\n$9223372036854775807\r\n", Limits{}, "", "invalid bulk length"},
	{"crash after valid", "PING\r\n*1\r\n$9223372036854775807\r\n", Limits{}, "PING\r\n", "invalid bulk length"},
	{"bulk too long", "*1\r\n$11\r\n", tight, "", "invalid bulk length"},
	{"bulk at limit then long", "*1\r\n$10\r\n0123456789\r\n*1\r\n$11\r\n", tight, "*1\r\n$10\r\n0123456789\r\n", "invalid bulk length"},
	{"negative bulk", "*1\r\n$-1\r\n", Limits{}, "", "invalid bulk length"},
	{"non-numeric bulk", "*1\r\n$x\r\n", Limits{}, "", "invalid bulk length"},
	{"empty bulk length", "*1\r\n$\r\n", Limits{}, "", "invalid bulk length"},
	{"plus bulk", "*1\r\n$+1\r\nx\r\n", Limits{}, "", "invalid bulk length"},
	{"zero padded bulk", "*1\r\n$01\r\nx\r\n", Limits{}, "", "invalid bulk length"},
	{"bulk lf only", "*1\r\n$1\nx\r\n", Limits{}, "", "invalid bulk length"},
	{"bulk missing crlf", "*2\r\n$1\r\nxy$1\r\nz\r\n", Limits{}, "", "invalid bulk length"},
	{"bulk missing lf", "*1\r\n$1\r\nx\rz", Limits{}, "", "invalid bulk length"},
	{"count too big", "*4\r\n", tight, "", "invalid multibulk length"},
	{"huge count", "*9223372036854775807\r\n", Limits{}, "", "invalid multibulk length"},
	{"huge negative count", "*-9223372036854775808\r\n", Limits{}, "", "invalid multibulk length"},
	{"non-numeric count", "*x\r\n", Limits{}, "", "invalid multibulk length"},
	{"empty count", "*\r\n", Limits{}, "", "invalid multibulk length"},
	{"count lf only", "*1\n$4\r\nPING\r\n", Limits{}, "", "invalid multibulk length"},
	{"zero padded count", "*01\r\n", Limits{}, "", "invalid multibulk length"},
	{"minus zero count", "*-0\r\n", Limits{}, "", "invalid multibulk length"},
	{"expected dollar", "*1\r\n:4\r\n", Limits{}, "", "expected '$', got ':'"},
	{"expected dollar binary", "*1\r\n\x01", Limits{}, "", `expected '$', got '\x01'`},
	{"request too big", "*3\r\n$10\r\n0123456789\r\n$10\r\n0123456789\r\n$10\r\n", tight, "", "too big multibulk request"},
	{"inline too long", strings.Repeat("a", 17), tight, "", "too big inline request"},
	{"inline too long after valid", "PING\r\n" + strings.Repeat("a", 17), tight, "PING\r\n", "too big inline request"},
	{"inline too many args", "a b c d\r\n", tight, "", "too many arguments in inline request"},
	{"unterminated quote", "ECHO \"abc\r\n", Limits{}, "", "unbalanced quotes in request"},
	{"quote inside word", "ECHO a\"b\"\r\n", Limits{}, "", "unbalanced quotes in request"},
	{"text after quote", "ECHO \"a\"b\r\n", Limits{}, "", "unbalanced quotes in request"},
	{"escape at end", "ECHO \"a\\\r\n", Limits{}, "", "unbalanced quotes in request"},
	{"cr after quote", "ECHO \"a\"\rb\r\n", Limits{}, "", "unbalanced quotes in request"},
}

func TestViolations(t *testing.T) {
	for _, tc := range violations {
		t.Run(tc.name, func(t *testing.T) {
			for size := 1; size <= len(tc.in); size++ {
				c, cc := newGuarded([]byte(tc.in), size, tc.lim)
				out, err := readAll(c, 4096)
				var pe *ProtocolError
				if !errors.As(err, &pe) || pe.Msg != tc.msg {
					t.Fatalf("size %d: err = %v, want protocol error %q", size, err, tc.msg)
				}
				// redcon gets the commands before the offending one; bytes
				// of the offending command that arrived in earlier chunks
				// may have been passed on, but never all of it.
				got, want := redconParse(t, out), redconParse(t, []byte(tc.out))
				if !reflect.DeepEqual(got, want) {
					t.Fatalf("size %d: out = %q, want the commands of %q", size, out, tc.out)
				}
				if want := "-ERR Protocol error: " + tc.msg + "\r\n"; cc.written.String() != want {
					t.Fatalf("reply = %q, want %q", cc.written.String(), want)
				}
				// The error is sticky and the reply written once.
				if _, err2 := c.Read(make([]byte, 10)); err2 != err {
					t.Fatalf("second read: %v", err2)
				}
				if cc.written.Len() != len("-ERR Protocol error: "+tc.msg+"\r\n") {
					t.Fatal("reply written twice")
				}
			}
		})
	}
}

// redconParse parses data with redcon's reader over a plain reader.
func redconParse(t testing.TB, data []byte) [][]string {
	t.Helper()
	rd := redcon.NewReader(bytes.NewReader(data))
	var cmds [][]string
	for {
		batch, err := rd.ReadCommands()
		if err != nil {
			if err != io.EOF {
				t.Fatalf("redcon: %v", err)
			}
			return cmds
		}
		for _, c := range batch {
			cmds = append(cmds, argStrings(c.Args))
		}
	}
}

func argStrings(args [][]byte) []string {
	s := make([]string, len(args))
	for i, a := range args {
		s[i] = string(a)
	}
	return s
}

// serveRedcon runs a redcon server answering PING behind the guard.
func serveRedcon(t *testing.T, lim Limits, maxClients int) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gl := Listener(ln, lim, maxClients)
	srv := redcon.NewServerNetwork("tcp", "", func(c redcon.Conn, cmd redcon.Command) {
		if strings.EqualFold(string(cmd.Args[0]), "ping") {
			c.WriteString("PONG")
		} else {
			c.WriteString("OK")
		}
	}, nil, nil)
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(gl) }()
	t.Cleanup(func() { _ = gl.Close(); <-done })
	return ln.Addr().String()
}

func dial(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	return c, bufio.NewReader(c)
}

func expectLine(t *testing.T, r *bufio.Reader, want string) {
	t.Helper()
	line, err := r.ReadString('\n')
	if err != nil || line != want {
		t.Fatalf("read %q, %v; want %q", line, err, want)
	}
}

func expectEOF(t *testing.T, r *bufio.Reader) {
	t.Helper()
	if b, err := r.ReadByte(); err == nil {
		t.Fatalf("read %q, want EOF", b)
	}
}

func TestRedconSurvivesCrashRequest(t *testing.T) {
	addr := serveRedcon(t, Limits{}, 0)
	c, r := dial(t, addr)
	// A valid command pipelined before the crash request is answered
	// first.
	if _, err := c.Write([]byte("PING\r\n*1\r\n$9223372036854775807\r\n")); err != nil {
		t.Fatal(err)
	}
	expectLine(t, r, "+PONG\r\n")
	expectLine(t, r, "-ERR Protocol error: invalid bulk length\r\n")
	expectEOF(t, r)

	// The process survived and serves new clients.
	c2, r2 := dial(t, addr)
	if _, err := c2.Write([]byte("*1\r\n$4\r\nPING\r\n")); err != nil {
		t.Fatal(err)
	}
	expectLine(t, r2, "+PONG\r\n")
}

func TestRedconViolations(t *testing.T) {
	addr := serveRedcon(t, tight, 0)
	for _, tc := range violations {
		if tc.lim != tight && tc.lim != (Limits{}) {
			continue
		}
		if tc.lim == (Limits{}) && strings.Contains(tc.name, "too") {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			c, r := dial(t, addr)
			if _, err := c.Write([]byte(tc.in)); err != nil {
				t.Fatal(err)
			}
			for range redconParse(t, []byte(tc.out)) {
				if _, err := r.ReadString('\n'); err != nil {
					t.Fatal(err)
				}
			}
			expectLine(t, r, "-ERR Protocol error: "+tc.msg+"\r\n")
			expectEOF(t, r)
		})
	}
}

func TestMaxClients(t *testing.T) {
	addr := serveRedcon(t, Limits{}, 2)
	ping := func(c net.Conn, r *bufio.Reader) {
		t.Helper()
		if _, err := c.Write([]byte("PING\r\n")); err != nil {
			t.Fatal(err)
		}
		expectLine(t, r, "+PONG\r\n")
	}
	c1, r1 := dial(t, addr)
	ping(c1, r1)
	c2, r2 := dial(t, addr)
	ping(c2, r2)

	_, r3 := dial(t, addr)
	expectLine(t, r3, "-ERR max number of clients reached\r\n")
	expectEOF(t, r3)

	// Closing a client frees its slot (once, however often it is
	// closed): poll, since the server notices the close asynchronously.
	c1.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c4, r4 := dial(t, addr)
		if _, err := c4.Write([]byte("PING\r\n")); err != nil {
			t.Fatal(err)
		}
		line, _ := r4.ReadString('\n')
		if line == "+PONG\r\n" {
			break
		}
		if line != "-ERR max number of clients reached\r\n" || time.Now().After(deadline) {
			t.Fatalf("got %q", line)
		}
		time.Sleep(10 * time.Millisecond)
	}
	_, r5 := dial(t, addr)
	expectLine(t, r5, "-ERR max number of clients reached\r\n")
	ping(c2, r2)
}

func TestCloseIsIdempotent(t *testing.T) {
	l := &listener{max: 1}
	l.active.Store(1)
	cc := &chunkConn{}
	c := &conn{Conn: cc, p: newParser(Limits{}), l: l}
	for range 3 {
		_ = c.Close()
	}
	if got := l.active.Load(); got != 0 {
		t.Fatalf("active = %d, want 0", got)
	}
	if cc.closed != 1 {
		t.Fatalf("underlying closed %d times", cc.closed)
	}
}

func TestLimitsWithDefaults(t *testing.T) {
	got := Limits{MaxArgs: -1, MaxBulkLen: 7}.WithDefaults()
	want := Limits{MaxArgs: DefaultMaxArgs, MaxBulkLen: 7, MaxInlineLen: DefaultMaxInlineLen, MaxRequestLen: DefaultMaxRequestLen}
	if got != want {
		t.Fatalf("got %+v, want %+v", got, want)
	}
}
