package clients

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tidwall/redcon"
)

// fakeState is the lock table of a fake cluster: every fakeNode of one
// cluster applies commands to it, as a real cluster's nodes forward to one
// leader.
type fakeState struct {
	mu    sync.Mutex
	locks map[string]*fakeLock
	next  uint64   // last token granted
	log   []string // every lock command applied, as "LOCK.ACQUIRE k o 1000"
}

type fakeLock struct {
	owner   string
	token   uint64
	version uint64
	expires time.Time
}

// errReplyText is an error reply a fake writes.
type errReplyText string

// apply runs one lock command and returns its reply: int64, nil, a
// []any (LOCK.INFO/LIST as RESP2 flat arrays) or an errReplyText.
func (s *fakeState) apply(args []string) any {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.locks == nil {
		s.locks = map[string]*fakeLock{}
	}
	s.log = append(s.log, strings.Join(args, " "))
	now := time.Now()
	for k, l := range s.locks {
		if !now.Before(l.expires) {
			delete(s.locks, k)
		}
	}
	opt := func(from int, name string) string {
		for i := from; i+1 < len(args); i++ {
			if strings.EqualFold(args[i], name) {
				return args[i+1]
			}
		}
		return ""
	}
	ttl := func() time.Duration {
		n, _ := strconv.Atoi(args[3])
		return time.Duration(n) * time.Millisecond
	}
	switch strings.ToUpper(args[0]) {
	case "LOCK.ACQUIRE":
		key, owner := args[1], args[2]
		l := s.locks[key]
		if l != nil && l.owner != owner {
			return nil
		}
		if l == nil {
			s.next++
			l = &fakeLock{owner: owner, token: s.next}
			s.locks[key] = l
		}
		l.version++
		l.expires = now.Add(ttl())
		return int64(l.token)
	case "LOCK.RENEW":
		l := s.locks[args[1]]
		if l == nil || l.owner != args[2] || opt(4, "TOKEN") != "" && opt(4, "TOKEN") != strconv.FormatUint(l.token, 10) {
			return errReplyText("NOTHELD lock is not held by this owner")
		}
		l.version++
		l.expires = now.Add(ttl())
		return int64(l.token)
	case "LOCK.RELEASE":
		l := s.locks[args[1]]
		if l == nil || l.owner != args[2] || opt(3, "TOKEN") != "" && opt(3, "TOKEN") != strconv.FormatUint(l.token, 10) {
			return int64(0)
		}
		delete(s.locks, args[1])
		return int64(1)
	case "LOCK.INFO":
		if l := s.locks[args[1]]; l != nil {
			return s.infoLocked(args[1], l, now)
		}
		return nil
	case "LOCK.LIST":
		out := []any{}
		for k, l := range s.locks {
			out = append(out, s.infoLocked(k, l, now))
		}
		return out
	case "CLUSTER.INFO":
		return []any{"leader_id", "f1", "term", int64(7), "nodes",
			[]any{[]any{"id", "f1", "state", "leader", "address", "localhost:1", "resp_address", "127.0.0.1:2", "http_address", "127.0.0.1:3"}},
			"quorum_size", int64(1), "has_quorum", int64(1), "cluster_id", "c0ffee"}
	}
	return errReplyText("ERR unknown command '" + args[0] + "'")
}

func (s *fakeState) infoLocked(key string, l *fakeLock, now time.Time) []any {
	return []any{"key", key, "owner", l.owner, "fencing_token", int64(l.token), "version", int64(l.version),
		"ttl_ms", l.expires.Sub(now).Milliseconds(), "expires_at", l.expires.UnixMilli(), "waiters", int64(0)}
}

// holder returns who holds key, or "".
func (s *fakeState) holder(key string) (string, uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if l := s.locks[key]; l != nil && time.Now().Before(l.expires) {
		return l.owner, l.token
	}
	return "", 0
}

// steal hands key to another owner.
func (s *fakeState) steal(key, owner string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.locks == nil {
		s.locks = map[string]*fakeLock{}
	}
	s.next++
	s.locks[key] = &fakeLock{owner: owner, token: s.next, version: 1, expires: time.Now().Add(time.Hour)}
}

// commands returns the applied commands whose name is name.
func (s *fakeState) commands(name string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, c := range s.log {
		if strings.HasPrefix(c, name+" ") || c == name {
			out = append(out, c)
		}
	}
	return out
}

// action is what a fake node does with one lock command.
type action struct {
	// before the command is applied:
	errText string        // reply this error, do not apply
	drop    bool          // close the connection, do not apply
	hang    bool          // never answer, do not apply
	delay   time.Duration // wait this long first
	// after it is applied:
	dropAfter   bool   // close the connection instead of answering
	errAfter    string // answer this error instead
	replaceWith any    // answer this instead (when not nil)
}

// fakeNode is one RESP server of a fake cluster on 127.0.0.1:0.
type fakeNode struct {
	t        *testing.T
	state    *fakeState
	addr     string
	ln       net.Listener
	password string
	unblock  chan struct{} // closed at cleanup: hung commands return

	mu     sync.Mutex
	script func(args []string) action // nil: just apply
}

// newFakeNode starts a fake node over state; it stops at cleanup.
func newFakeNode(t *testing.T, state *fakeState) *fakeNode {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n := &fakeNode{t: t, state: state, addr: ln.Addr().String(), ln: ln, unblock: make(chan struct{})}
	go redcon.Serve(ln, n.serve, func(conn redcon.Conn) bool { return true }, nil)
	t.Cleanup(func() {
		close(n.unblock)
		ln.Close()
	})
	return n
}

// setScript replaces the node's script.
func (n *fakeNode) setScript(f func(args []string) action) {
	n.mu.Lock()
	n.script = f
	n.mu.Unlock()
}

func (n *fakeNode) serve(conn redcon.Conn, cmd redcon.Command) {
	args := make([]string, len(cmd.Args))
	for i, a := range cmd.Args {
		args[i] = string(a)
	}
	switch strings.ToUpper(args[0]) {
	case "HELLO":
		// Like an old Redis: go-redis falls back to RESP2 (and AUTH).
		conn.WriteError("ERR unknown command 'HELLO'")
		return
	case "AUTH":
		if args[len(args)-1] != n.password {
			conn.WriteError("WRONGPASS invalid username-password pair or user is disabled.")
			return
		}
		conn.SetContext(true)
		conn.WriteString("OK")
		return
	case "PING":
		conn.WriteString("PONG")
		return
	case "CLIENT", "SELECT":
		conn.WriteString("OK")
		return
	}
	if n.password != "" && conn.Context() != true {
		conn.WriteError("NOAUTH Authentication required.")
		return
	}
	n.mu.Lock()
	script := n.script
	n.mu.Unlock()
	var act action
	if script != nil {
		act = script(args)
	}
	if act.delay > 0 {
		select {
		case <-time.After(act.delay):
		case <-n.unblock:
		}
	}
	switch {
	case act.errText != "":
		conn.WriteError(act.errText)
		return
	case act.drop:
		conn.Close()
		return
	case act.hang:
		<-n.unblock
		conn.Close()
		return
	}
	reply := n.state.apply(args)
	switch {
	case act.dropAfter:
		conn.Close()
		return
	case act.errAfter != "":
		conn.WriteError(act.errAfter)
		return
	case act.replaceWith != nil:
		reply = act.replaceWith
	}
	writeReply(conn, reply)
}

func writeReply(conn redcon.Conn, v any) {
	switch v := v.(type) {
	case nil:
		conn.WriteNull()
	case int64:
		conn.WriteInt64(v)
	case string:
		conn.WriteBulkString(v)
	case errReplyText:
		conn.WriteError(string(v))
	case []any:
		conn.WriteArray(len(v))
		for _, x := range v {
			writeReply(conn, x)
		}
	default:
		panic(fmt.Sprintf("fake: cannot write a %T reply", v))
	}
}

// newTestClient returns a client of the fake nodes with short timeouts;
// it is closed at cleanup.
func newTestClient(t *testing.T, cfg Config, nodes ...*fakeNode) *Client {
	t.Helper()
	for _, n := range nodes {
		cfg.Addrs = append(cfg.Addrs, n.addr)
	}
	if cfg.RequestTimeout == 0 {
		cfg.RequestTimeout = time.Second
	}
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff = 5 * time.Millisecond
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = 50 * time.Millisecond
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// firstN returns a script helper that applies act to the first n commands
// named name and lets everything else through.
func firstN(name string, n int, act action) func(args []string) action {
	var mu sync.Mutex
	seen := 0
	return func(args []string) action {
		if !strings.EqualFold(args[0], name) {
			return action{}
		}
		mu.Lock()
		defer mu.Unlock()
		seen++
		if seen <= n {
			return act
		}
		return action{}
	}
}
