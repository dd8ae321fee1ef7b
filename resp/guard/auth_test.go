package guard

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/tidwall/redcon"
)

// multibulk encodes one request.
func multibulk(args ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	return b.String()
}

// words returns n arguments: the command name and n-1 short ones.
func words(name string, n int) []string {
	args := []string{name}
	for i := 1; i < n; i++ {
		args = append(args, "a")
	}
	return args
}

// serveAuth reads c as the RESP server does with redcon (every command read
// runs before the next read) and marks the connection authenticated at an
// AUTH and unauthenticated at a RESET. It returns each command run, as its
// name and argument count, and the error that ended the stream.
func serveAuth(c *conn) ([]string, error) {
	rd := redcon.NewReader(c)
	var ran []string
	for {
		cmds, err := rd.ReadCommands()
		if err != nil {
			return ran, err
		}
		for _, cmd := range cmds {
			name := strings.ToLower(string(cmd.Args[0]))
			ran = append(ran, fmt.Sprintf("%s/%d", name, len(cmd.Args)))
			switch name {
			case "auth":
				SetAuthenticated(c, true)
			case "reset":
				SetAuthenticated(c, false)
			}
		}
	}
}

// A connection that has not authenticated may send at most 10 arguments of
// at most 16384 bytes (Redis's bounds), decided per request as Redis does:
// an AUTH pipelined before a larger request, even in the same packet, lifts
// them for it.
func TestUnauthenticatedBounds(t *testing.T) {
	big := strings.Repeat("x", UnauthenticatedMaxBulkLen+1)
	atBound := strings.Repeat("x", UnauthenticatedMaxBulkLen)
	auth := multibulk("AUTH", "pw")
	required := Limits{AuthRequired: true}
	tests := []struct {
		name string
		lim  Limits
		in   string
		ran  []string // commands run, as name/args
		msg  string   // the protocol error that ends it, "" for EOF
	}{
		{name: "too many arguments", lim: required, in: multibulk("PING") + multibulk(words("del", 11)...),
			ran: []string{"ping/1"}, msg: "unauthenticated multibulk length"},
		{name: "bulk too long", lim: required, in: multibulk("PING") + multibulk("SET", "k", big),
			ran: []string{"ping/1"}, msg: "unauthenticated bulk length"},
		{name: "at the bounds", lim: required, in: multibulk(words("del", 10)...) + multibulk("SET", "k", atBound),
			ran: []string{"del/10", "set/3"}},
		{name: "auth pipelined before many arguments", lim: required, in: auth + multibulk(words("del", 11)...),
			ran: []string{"auth/2", "del/11"}},
		{name: "auth pipelined before a long bulk", lim: required, in: auth + multibulk("SET", "k", big),
			ran: []string{"auth/2", "set/3"}},
		{name: "reset restores the bounds", lim: required, in: auth + multibulk("RESET") + multibulk("SET", "k", big),
			ran: []string{"auth/2", "reset/1"}, msg: "unauthenticated bulk length"},
		{name: "absolute bound first", lim: required, in: multibulk(words("del", DefaultMaxArgs+1)...),
			msg: "invalid multibulk length"},
		{name: "inline is not bounded further", lim: required, in: strings.Repeat("a ", 12) + "\r\n",
			ran: []string{"a/12"}},
		{name: "no password", lim: Limits{}, in: multibulk(words("del", 11)...) + multibulk("SET", "k", big),
			ran: []string{"del/11", "set/3"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, size := range []int{1, 3, 7, 100, readSize, len(tt.in)} {
				c, cc := newGuarded([]byte(tt.in), size, tt.lim)
				ran, err := serveAuth(c)
				if strings.Join(ran, " ") != strings.Join(tt.ran, " ") {
					t.Fatalf("chunks of %d: ran %q, want %q", size, ran, tt.ran)
				}
				if tt.msg == "" {
					if !errors.Is(err, io.EOF) {
						t.Fatalf("chunks of %d: %v, want EOF", size, err)
					}
					continue
				}
				var pe *ProtocolError
				if !errors.As(err, &pe) || pe.Msg != tt.msg {
					t.Fatalf("chunks of %d: %v, want protocol error %q", size, err, tt.msg)
				}
				if want := "-ERR Protocol error: " + tt.msg + "\r\n"; cc.written.String() != want {
					t.Fatalf("chunks of %d: reply %q, want %q", size, cc.written.String(), want)
				}
			}
		})
	}
}

// SetAuthenticated leaves connections it did not guard alone.
func TestSetAuthenticatedOnAnotherConn(t *testing.T) {
	SetAuthenticated(&chunkConn{}, true) // must not panic
	SetAuthenticated(nil, true)
}
