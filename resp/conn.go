package resp

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"strconv"

	"github.com/tidwall/redcon"
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

	resp3    bool // HELLO 3 was negotiated
	authed   bool
	quitting bool // QUIT: close after the reply, run nothing more

	name, libName, libVer string

	out []byte // the reply being built
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
		c.writeErrorText(errWrongPass)
		return
	}
	c.authed = true
	c.writeOK()
}

// HELLO [protover [AUTH username password] [SETNAME clientname]]
// help: switches the connection to RESP2 or RESP3, optionally authenticating
// and naming it, and replies with a map describing the server.
func cmdHello(c *client, args [][]byte) {
	resp3 := c.resp3
	if len(args) >= 2 {
		ver, err := strconv.ParseInt(string(args[1]), 10, 64)
		if err != nil {
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
			c.writeErrorText(errWrongPass)
			return
		}
		c.authed = true
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
	db, err := strconv.ParseInt(string(args[1]), 10, 32)
	switch {
	case err != nil:
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
	"SETINFO <option> <value>",
	"    Set client meta attr. Options are:",
	"    * LIB-NAME: the client lib name.",
	"    * LIB-VER: the client lib version.",
	"SETNAME <name>",
	"    Assign the name <name> to the current connection.",
	"HELP",
	"    Print this help.",
}

// clientArity is the arity of each CLIENT subcommand.
var clientArity = map[string]int{"id": 2, "getname": 2, "setname": 3, "setinfo": 4, "help": 2}

// CLIENT ID | GETNAME | SETNAME name | SETINFO LIB-NAME|LIB-VER value | HELP
// help: inspects and names the current connection.
func cmdClient(c *client, args [][]byte) {
	sub := string(bytes.ToLower(args[1]))
	arity, ok := clientArity[sub]
	if !ok {
		c.writeErrorText(unknownSubcommand("client", args[1]))
		return
	}
	if len(args) != arity {
		c.writeArityError("client|" + sub)
		return
	}
	switch sub {
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
	case "help":
		c.writeArray(len(clientHelp))
		for _, line := range clientHelp {
			c.writeSimple(line)
		}
	}
}

// COMMAND [DOCS [name ...] | COUNT]
// help: describes the commands; for now it replies with an empty array (and
// COMMAND DOCS with an empty map), which is enough for redis-cli.
func cmdCommand(c *client, args [][]byte) {
	if len(args) == 1 {
		c.writeArray(0)
		return
	}
	switch sub := string(bytes.ToLower(args[1])); sub {
	case "docs":
		c.writeMap(0)
	case "count":
		if len(args) != 2 {
			c.writeArityError("command|count")
			return
		}
		c.writeInt(int64(len(c.srv.cmds)))
	default:
		c.writeErrorText(unknownSubcommand("command", args[1]))
	}
}
