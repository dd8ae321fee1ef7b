package resp

import (
	"runtime/debug"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// command is one entry of the command table.
type command struct {
	// name is the lower-case name, as Redis shows it in errors.
	name string
	// arity follows Redis: positive means exactly that many arguments,
	// negative means at least that many; the name counts.
	arity int
	// noAuth commands run before the client has authenticated.
	noAuth bool
	// subArity, for a command with subcommands, is the arity of each (the
	// command and subcommand names count), so that dispatch refuses an
	// unknown subcommand or a wrong count before it asks for
	// authentication, as Redis 7 does.
	subArity map[string]int
	// handler parses args (args[0] is the name), calls the service and
	// writes exactly one reply.
	handler func(c *client, args [][]byte)
	// flags, first, last and step are what COMMAND reports: Redis's
	// command flags and the positions of the keys (last -1: to the end).
	flags             []string
	first, last, step int
	// pipelined commands are writes that become one log entry each: pipelined
	// back to back, they run concurrently, in turn (pipeline.go).
	pipelined bool
	// duration observes the handler's run time.
	duration prometheus.Observer
}

// maxNameLen bounds command names looked up in the table.
const maxNameLen = 32

// commandTable returns the server's commands keyed by lower-case name.
func (s *Server) commandTable() map[string]*command {
	cmds := []*command{
		// Native lock commands (native.go).
		{name: "lock.acquire", arity: -4, handler: cmdLockAcquire, pipelined: true},
		{name: "lock.renew", arity: -4, handler: cmdLockRenew, pipelined: true},
		{name: "lock.release", arity: -3, handler: cmdLockRelease, pipelined: true},
		{name: "lock.info", arity: 2, handler: cmdLockInfo},
		{name: "lock.list", arity: 1, handler: cmdLockList},
		{name: "cluster.info", arity: 1, handler: cmdClusterInfo},
		{name: "cluster.join", arity: 3, handler: cmdClusterJoin, flags: []string{"admin"}},
		{name: "cluster.leave", arity: 2, handler: cmdClusterLeave, flags: []string{"admin"}},
		// Connection commands (conn.go).
		{name: "ping", arity: -1, handler: cmdPing},
		{name: "echo", arity: 2, handler: cmdEcho},
		{name: "quit", arity: -1, noAuth: true, handler: cmdQuit},
		{name: "hello", arity: -1, noAuth: true, handler: cmdHello},
		{name: "auth", arity: -2, noAuth: true, handler: cmdAuth},
		{name: "select", arity: 2, handler: cmdSelect},
		{name: "client", arity: -2, subArity: clientArity, handler: cmdClient},
		{name: "command", arity: -1, subArity: commandArity, handler: cmdCommand},
		{name: "info", arity: -1, handler: cmdInfo},
		{name: "time", arity: 1, handler: cmdTime},
		{name: "reset", arity: 1, noAuth: true, handler: cmdReset},
		{name: "cluster", arity: -2, subArity: clusterArity, handler: cmdCluster},
		{name: "readonly", arity: 1, handler: cmdReadonly},
		{name: "readwrite", arity: 1, handler: cmdReadonly},
	}
	for _, kc := range keyCommands {
		cp := *kc
		cmds = append(cmds, &cp)
	}
	table := make(map[string]*command, len(cmds))
	for _, cmd := range cmds {
		if _, dup := table[cmd.name]; dup || len(cmd.name) > maxNameLen {
			panic("resp: bad command table entry " + cmd.name)
		}
		cmd.duration = s.duration.WithLabelValues(cmd.name)
		table[cmd.name] = cmd
	}
	return table
}

// lookup finds a command by name, ignoring case, without allocating.
func (s *Server) lookup(name []byte) *command {
	if len(name) > maxNameLen {
		return nil
	}
	var buf [maxNameLen]byte
	for i, ch := range name {
		if 'A' <= ch && ch <= 'Z' {
			ch += 'a' - 'A'
		}
		buf[i] = ch
	}
	return s.cmds[string(buf[:len(name)])]
}

// dispatch runs one command for c and leaves exactly one reply in c.out. It
// checks, in Redis's order, that the command exists, its arity, its
// subcommand and that one's arity, and that the client has authenticated.
// A panicking handler is answered with "ERR internal error" (its partial
// reply discarded) and logged.
func (s *Server) dispatch(c *client, args [][]byte) {
	if len(args) == 0 {
		return // redcon never delivers an empty command
	}
	cmd := s.lookup(args[0])
	switch {
	case cmd == nil:
		c.writeErrorText(unknownCommand(args))
		return
	case !arityOK(cmd.arity, len(args)):
		c.writeArityError(cmd.name)
		return
	case !cmd.checkSubcommand(c, args):
		return
	case !c.authed && !cmd.noAuth:
		c.writeErrorText(errNoAuth)
		return
	}
	start := time.Now()
	mark := len(c.out)
	defer func() {
		if r := recover(); r != nil {
			c.out = c.out[:mark]
			c.writeErrorText("ERR internal error")
			s.log.Error("panic in RESP command", "command", cmd.name, "client", c.id,
				"panic", r, "stack", string(debug.Stack()))
		}
		cmd.duration.Observe(time.Since(start).Seconds())
	}()
	cmd.handler(c, args)
}

// arityOK reports whether n arguments (the name included) fit arity, in
// Redis's sense: exactly arity when positive, at least -arity when
// negative.
func arityOK(arity, n int) bool {
	return arity > 0 && n == arity || arity < 0 && n >= -arity
}

// checkSubcommand, for a command with subcommands, writes Redis's error
// and reports false when args name an unknown one or the wrong number of
// arguments for it.
func (cmd *command) checkSubcommand(c *client, args [][]byte) bool {
	if cmd.subArity == nil || len(args) < 2 {
		return true
	}
	sub := strings.ToLower(string(args[1]))
	arity, ok := cmd.subArity[sub]
	switch {
	case !ok:
		c.writeErrorText(unknownSubcommand(cmd.name, args[1]))
		return false
	case !arityOK(arity, len(args)):
		c.writeArityError(cmd.name + "|" + sub)
		return false
	}
	return true
}

// Error replies in Redis's words.
const (
	errSyntax       = "ERR syntax error"
	errNoAuth       = "NOAUTH Authentication required."
	errWrongPass    = "WRONGPASS invalid username-password pair or user is disabled."
	errNotInteger   = "ERR value is not an integer or out of range"
	errBadName      = "ERR Client names cannot contain spaces, newlines or special characters."
	errAuthNoPass   = "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?"
	errHelloNoAuth  = "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time"
	errNoProto      = "NOPROTO unsupported protocol version"
	errProtoVersion = "ERR Protocol version is not an integer or out of range"
	errDBIndex      = "ERR DB index is out of range"
)

// writeArityError writes Redis's wrong-arity error for the command (or
// "command|subcommand") name.
func (c *client) writeArityError(name string) {
	c.writeErrorText("ERR wrong number of arguments for '" + name + "' command")
}

// unknownCommand formats Redis 7's unknown-command error (server.c
// processCommand): the name and the first arguments, each quoted and
// followed by a space, the arguments cut off after about 128 bytes.
func unknownCommand(args [][]byte) string {
	var b strings.Builder
	b.WriteString("ERR unknown command '")
	b.Write(truncate(args[0], 128))
	b.WriteString("', with args beginning with: ")
	n := 0
	for _, a := range args[1:] {
		if n >= 128 {
			break
		}
		a = truncate(a, 128-n)
		b.WriteByte('\'')
		b.Write(a)
		b.WriteString("' ")
		n += len(a) + 3
	}
	return b.String()
}

// unknownSubcommand formats Redis 7's unknown-subcommand error.
func unknownSubcommand(cmd string, sub []byte) string {
	return "ERR unknown subcommand '" + string(truncate(sub, 128)) + "'. Try " +
		strings.ToUpper(cmd) + " HELP."
}

func truncate(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}
