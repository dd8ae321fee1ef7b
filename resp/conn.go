package resp

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"strings"
	"time"

	"github.com/tidwall/redcon"

	"github.com/distlock/distlock/lockapi"
	"github.com/distlock/distlock/resp/guard"
)

// What HELLO reports. The version is a Redis version because clients parse
// it (rueidis picks CLUSTER SLOTS or SHARDS by the major version); 7.x is
// what they handle best.
const (
	serverName   = "distlock"
	redisVersion = "7.2.0"
)

// client is the state of one connection. It is only touched by the
// connection's goroutine.
type client struct {
	srv  *Server
	conn redcon.Conn // nil when commands are dispatched directly (tests)
	id   int64

	resp3     bool // HELLO 3 was negotiated
	authed    bool
	quitting  bool // QUIT: close after the reply, run nothing more
	tracking  bool // CLIENT TRACKING ON (no invalidations are ever sent)
	authFails int  // failed AUTH/HELLO AUTH attempts, for the throttle
	addr      string

	name, libName, libVer string

	out []byte // the reply being built

	// turn orders this command among a pipelined run (pipeline.go); nil
	// outside one.
	turn *lockapi.Turn
}

func (s *Server) newClient(conn redcon.Conn, id int64) *client {
	return &client{srv: s, conn: conn, id: id, authed: s.passHash == nil}
}

// checkAuth reports whether user and pass name the default user and the
// configured password, in time independent of the password. Without a
// password the default user accepts any password, as in Redis.
func (s *Server) checkAuth(user, pass []byte) bool {
	userOK := string(user) == "default"
	if s.passHash == nil {
		return userOK
	}
	h := sha256.Sum256(pass)
	return subtle.ConstantTimeCompare(h[:], s.passHash[:]) == 1 && userOK
}

// validName reports whether a client name or library attribute is
// printable ASCII without spaces, as Redis requires.
func validName(b []byte) bool {
	for _, ch := range b {
		if ch < '!' || ch > '~' {
			return false
		}
	}
	return true
}

// PING [message]
// help: replies PONG, or message as a bulk string.
func cmdPing(c *client, args [][]byte) {
	switch len(args) {
	case 1:
		c.writeSimple("PONG")
	case 2:
		c.writeBulk(args[1])
	default:
		c.writeArityError("ping")
	}
}

// ECHO message
// help: replies message.
func cmdEcho(c *client, args [][]byte) {
	c.writeBulk(args[1])
}

// QUIT
// help: replies OK and closes the connection; commands pipelined after it
// are not run.
func cmdQuit(c *client, args [][]byte) {
	c.writeOK()
	c.quitting = true
}

// AUTH [username] password
// help: authenticates the connection as the default user.
func cmdAuth(c *client, args [][]byte) {
	if len(args) > 3 {
		c.writeErrorText(errSyntax)
		return
	}
	user, pass := []byte("default"), args[1]
	if len(args) == 3 {
		user, pass = args[1], args[2]
	} else if c.srv.passHash == nil {
		c.writeErrorText(errAuthNoPass)
		return
	}
	if !c.srv.checkAuth(user, pass) {
		c.authFailed()
		c.writeErrorText(errWrongPass)
		return
	}
	c.setAuthed(true)
	c.writeOK()
}

// HELLO [protover [AUTH username password] [SETNAME clientname]]
// help: switches the connection to RESP2 or RESP3, optionally authenticating
// and naming it, and replies with a map describing the server.
func cmdHello(c *client, args [][]byte) {
	resp3 := c.resp3
	if len(args) >= 2 {
		ver, ok := lockapi.ParseInt(string(args[1]))
		if !ok {
			c.writeErrorText(errProtoVersion)
			return
		}
		if ver != 2 && ver != 3 {
			c.writeErrorText(errNoProto)
			return
		}
		resp3 = ver == 3
	}
	var user, pass, name []byte
	for j := 2; j < len(args); j++ {
		more := len(args) - 1 - j
		switch {
		case bytes.EqualFold(args[j], []byte("auth")) && more >= 2:
			user, pass = args[j+1], args[j+2]
			j += 2
		case bytes.EqualFold(args[j], []byte("setname")) && more >= 1:
			name = args[j+1]
			if !validName(name) {
				c.writeErrorText(errBadName)
				return
			}
			j++
		default:
			c.writeErrorText("ERR Syntax error in HELLO option '" + string(truncate(args[j], 128)) + "'")
			return
		}
	}
	if user != nil {
		if !c.srv.checkAuth(user, pass) {
			c.authFailed()
			c.writeErrorText(errWrongPass)
			return
		}
		c.setAuthed(true)
	}
	if !c.authed {
		c.writeErrorText(errHelloNoAuth)
		return
	}
	if name != nil {
		c.name = string(name)
	}
	c.resp3 = resp3
	proto := int64(2)
	if resp3 {
		proto = 3
	}
	c.writeMap(7)
	c.writeBulkString("server")
	c.writeBulkString(serverName)
	c.writeBulkString("version")
	c.writeBulkString(redisVersion)
	c.writeBulkString("proto")
	c.writeInt(proto)
	c.writeBulkString("id")
	c.writeInt(c.id)
	c.writeBulkString("mode")
	c.writeBulkString("standalone")
	c.writeBulkString("role")
	c.writeBulkString("master")
	c.writeBulkString("modules")
	c.writeArray(0)
}

// SELECT index
// help: selects database 0, the only one.
func cmdSelect(c *client, args [][]byte) {
	db, ok := lockapi.ParseInt(string(args[1]))
	switch {
	case !ok:
		c.writeErrorText(errNotInteger)
	case db != 0:
		c.writeErrorText(errDBIndex)
	default:
		c.writeOK()
	}
}

// clientHelp is CLIENT HELP's reply.
var clientHelp = []string{
	"CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
	"GETNAME",
	"    Return the name of the current connection.",
	"ID",
	"    Return the ID of the current connection.",
	"INFO",
	"    Return information about the current client connection.",
	"LIST [TYPE (NORMAL|MASTER|REPLICA|PUBSUB)] [ID <id> [<id> ...]]",
	"    Return information about client connections. Every connection here is of type NORMAL.",
	"SETINFO <option> <value>",
	"    Set client meta attr. Options are:",
	"    * LIB-NAME: the client lib name.",
	"    * LIB-VER: the client lib version.",
	"SETNAME <name>",
	"    Assign the name <name> to the current connection.",
	"TRACKING (ON|OFF) [OPTIN] [OPTOUT] [BCAST] [NOLOOP] [PREFIX <prefix>] [REDIRECT <id>]",
	"    Accepted for client compatibility; no invalidation messages are sent.",
	"NO-EVICT (ON|OFF), NO-TOUCH (ON|OFF)",
	"    Accepted; they change nothing here.",
	"HELP",
	"    Print this help.",
}

// clientArity is the arity of each CLIENT subcommand, which dispatch
// checks.
var clientArity = map[string]int{"id": 2, "getname": 2, "setname": 3, "setinfo": 4, "help": 2,
	"info": 2, "list": -2, "tracking": -3, "caching": 3, "no-evict": 3, "no-touch": 3}

// CLIENT ID | GETNAME | SETNAME name | SETINFO LIB-NAME|LIB-VER value |
// INFO | LIST | TRACKING ON|OFF ... | CACHING | NO-EVICT | NO-TOUCH | HELP
// help: inspects and names the current connection. TRACKING is accepted
// (rueidis requires it) but this server sends no invalidations, so CACHING
// YES, which would make a client cache a reply, is refused.
func cmdClient(c *client, args [][]byte) {
	switch string(bytes.ToLower(args[1])) { // dispatch checked it and its arity (clientArity)
	case "id":
		c.writeInt(c.id)
	case "getname":
		if c.name == "" {
			c.writeNull()
			return
		}
		c.writeBulkString(c.name)
	case "setname":
		if !validName(args[2]) {
			c.writeErrorText(errBadName)
			return
		}
		c.name = string(args[2])
		c.writeOK()
	case "setinfo":
		attr := string(bytes.ToLower(args[2]))
		if attr != "lib-name" && attr != "lib-ver" {
			c.writeErrorText("ERR Unrecognized option '" + string(truncate(args[2], 128)) + "'")
			return
		}
		if !validName(args[3]) {
			c.writeErrorText("ERR " + string(args[2]) + " cannot contain spaces, newlines or special characters.")
			return
		}
		if attr == "lib-name" {
			c.libName = string(args[3])
		} else {
			c.libVer = string(args[3])
		}
		c.writeOK()
	case "info":
		c.writeBulkString(c.infoLine())
	case "list":
		ids, all, errText := clientListFilter(args[2:])
		if errText != "" {
			c.writeErrorText(errText)
			return
		}
		var b strings.Builder
		for _, line := range c.srv.clients.lines(ids, all) {
			b.WriteString(line)
		}
		c.writeBulkString(b.String())
	case "tracking":
		on := bytes.EqualFold(args[2], []byte("on"))
		if !on && !bytes.EqualFold(args[2], []byte("off")) {
			c.writeErrorText(errSyntax)
			return
		}
		c.tracking = on
		c.writeOK()
	case "caching":
		c.writeErrorText("ERR CLIENT CACHING is not supported: this server sends no invalidation messages, so replies must not be cached")
	case "no-evict", "no-touch":
		if !bytes.EqualFold(args[2], []byte("on")) && !bytes.EqualFold(args[2], []byte("off")) {
			c.writeErrorText(errSyntax)
			return
		}
		c.writeOK()
	case "help":
		c.writeArray(len(clientHelp))
		for _, line := range clientHelp {
			c.writeSimple(line)
		}
	default: // not reached through dispatch
		c.writeErrorText(unknownSubcommand("client", args[1]))
	}
}

// clientListFilter parses CLIENT LIST's options as Redis 7 does: none,
// TYPE name, or ID id [id ...]. It returns the ids to list, in the order
// given, or all; or an error reply. Every connection here is of type
// normal (this server has no replicas, masters or pub/sub), so TYPE
// normal lists all and the other types none.
func clientListFilter(opts [][]byte) (ids []int64, all bool, errText string) {
	switch {
	case len(opts) == 0:
		return nil, true, ""
	case len(opts) == 2 && bytes.EqualFold(opts[0], []byte("type")):
		switch strings.ToLower(string(opts[1])) {
		case "normal":
			return nil, true, ""
		case "master", "replica", "slave", "pubsub":
			return nil, false, ""
		}
		return nil, false, "ERR Unknown client type '" + string(truncate(opts[1], 128)) + "'"
	case len(opts) > 1 && bytes.EqualFold(opts[0], []byte("id")):
		for _, arg := range opts[1:] {
			id, ok := lockapi.ParseInt(string(arg))
			if !ok {
				return nil, false, "ERR Invalid client ID"
			}
			ids = append(ids, id)
		}
		return ids, false, ""
	}
	return nil, false, errSyntax
}

// infoLine describes the connection as one CLIENT LIST line.
func (c *client) infoLine() string {
	resp := 2
	if c.resp3 {
		resp = 3
	}
	return fmt.Sprintf("id=%d addr=%s name=%s db=0 resp=%d lib-name=%s lib-ver=%s\n",
		c.id, c.addr, c.name, resp, c.libName, c.libVer)
}

// setAuthed records whether the client has authenticated, here and in the
// guard in front of its connection, which bounds the requests of a client
// that has not (guard.Limits.AuthRequired). It runs on the connection's
// goroutine before redcon reads again, as SetAuthenticated requires.
func (c *client) setAuthed(authed bool) {
	c.authed = authed
	if c.conn != nil { // nil when tests dispatch without a connection
		guard.SetAuthenticated(c.conn.NetConn(), authed)
	}
}

// cancelOnHangup calls cancel if c's client hangs up (closes or resets its
// connection) before the returned stop is called. A blocking command's
// client is not read from while the command runs, so a client that gave up
// waiting (a library's read timeout, a crash) would otherwise stay queued
// until the wait ends, and could be handed a lock that nobody then holds
// for its whole TTL; Redis likewise unblocks a blocked client that
// disconnects. The watch sleeps until the socket sees bytes, a FIN or a
// reset, so blocked clients cost nothing while they wait.
func (c *client) cancelOnHangup(cancel context.CancelFunc) (stop func()) {
	if c.conn == nil { // tests dispatching without a connection
		return func() {}
	}
	return guard.WatchHangup(c.conn.NetConn(), cancel)
}

// authFailed counts a failed authentication and slows the connection down:
// after authFreeTries failures each further attempt waits a little longer
// (up to authMaxDelay), so one connection cannot try passwords quickly.
func (c *client) authFailed() {
	c.authFails++
	if n := c.authFails - authFreeTries; n > 0 {
		time.Sleep(min(time.Duration(n)*authStepDelay, authMaxDelay))
	}
}

// The failed-AUTH throttle.
const (
	authFreeTries = 3
	authStepDelay = 100 * time.Millisecond
	authMaxDelay  = 2 * time.Second
)
