package resp

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"
)

// errNoCluster is Redis's reply to CLUSTER and READONLY in standalone mode;
// rueidis looks for "CLUSTER" in it to pick its standalone client.
const errNoCluster = "ERR This instance has cluster support disabled"

// infoSections are INFO's sections in order; "default" and "all" name them
// all.
var infoSections = []string{"server", "clients", "replication", "keyspace", "raft"}

// INFO [section ...]
// help: describes the server as a bulk string of "# Section" blocks of
// field:value lines: server, clients, replication, keyspace and raft (the
// cluster as this node sees it).
func cmdInfo(c *client, args [][]byte) {
	want := map[string]bool{}
	for _, a := range args[1:] {
		sec := strings.ToLower(string(a))
		if sec == "all" || sec == "default" || sec == "everything" {
			for _, s := range infoSections {
				want[s] = true
			}
			continue
		}
		want[sec] = true
	}
	if len(args) == 1 {
		for _, s := range infoSections {
			want[s] = true
		}
	}
	var b strings.Builder
	for _, sec := range infoSections {
		if !want[sec] {
			continue
		}
		if b.Len() > 0 {
			b.WriteString("\r\n")
		}
		b.WriteString("# " + strings.ToUpper(sec[:1]) + sec[1:] + "\r\n")
		for _, kv := range c.infoSection(sec) {
			b.WriteString(kv[0] + ":" + kv[1] + "\r\n")
		}
	}
	c.writeBulkString(b.String())
}

// infoSection returns the field/value pairs of one INFO section.
func (c *client) infoSection(sec string) [][2]string {
	s := c.srv
	switch sec {
	case "server":
		port := ""
		if a := s.Addr(); a != nil {
			_, port, _ = net.SplitHostPort(a.String())
		}
		up := time.Since(s.started)
		return [][2]string{
			{"redis_version", redisVersion}, {"distlock_server", serverName}, {"redis_mode", "standalone"},
			{"os", runtime.GOOS + " " + runtime.GOARCH}, {"arch_bits", strconv.Itoa(strconv.IntSize)},
			{"go_version", runtime.Version()}, {"process_id", strconv.Itoa(os.Getpid())},
			{"tcp_port", port}, {"uptime_in_seconds", strconv.FormatInt(int64(up/time.Second), 10)},
			{"uptime_in_days", strconv.FormatInt(int64(up/(24*time.Hour)), 10)},
		}
	case "clients":
		return [][2]string{
			{"connected_clients", strconv.Itoa(s.clients.count())},
			{"maxclients", strconv.Itoa(s.cfg.MaxClients)},
		}
	case "replication":
		return [][2]string{{"role", "master"}, {"connected_slaves", "0"}}
	case "keyspace":
		if s.keys == nil {
			return nil
		}
		st := s.keys.KeyStats()
		if st.Keys == 0 {
			return nil
		}
		return [][2]string{{"db0", fmt.Sprintf("keys=%d,expires=%d,avg_ttl=0", st.Keys, st.Expires)}}
	case "raft":
		ctx, cancel := s.commandContext(0)
		defer cancel()
		info, err := s.svc.ClusterInfo(ctx)
		if err != nil {
			return [][2]string{{"raft_error", strings.ReplaceAll(err.Error(), "\n", " ")}}
		}
		state := "unknown"
		for _, n := range info.Nodes {
			if n.RESPAddr != "" && s.Addr() != nil && n.RESPAddr == s.Addr().String() {
				state = n.State
			}
		}
		out := [][2]string{
			{"raft_leader_id", info.LeaderID}, {"raft_term", strconv.FormatUint(info.Term, 10)},
			{"raft_state", state}, {"raft_nodes", strconv.Itoa(len(info.Nodes))},
			{"raft_quorum_size", strconv.Itoa(info.QuorumSize)}, {"raft_has_quorum", map[bool]string{true: "1", false: "0"}[info.HasQuorum]},
			{"raft_cluster_id", info.ClusterID},
		}
		if s.keys != nil {
			st := s.keys.KeyStats()
			out = append(out, [2]string{"raft_applied_index", strconv.FormatUint(st.AppliedIndex, 10)},
				[2]string{"scripts_cached", strconv.Itoa(st.Scripts)})
		}
		for i, n := range info.Nodes {
			out = append(out, [2]string{fmt.Sprintf("raft_node%d", i),
				fmt.Sprintf("id=%s,state=%s,address=%s,resp=%s,http=%s", n.ID, n.State, n.Address, n.RESPAddr, n.HTTPAddr)})
		}
		return out
	}
	return nil
}

// TIME
// help: this node's wall clock, as [seconds, microseconds].
func cmdTime(c *client, args [][]byte) {
	now := time.Now()
	c.writeArray(2)
	c.writeBulkString(strconv.FormatInt(now.Unix(), 10))
	c.writeBulkString(strconv.FormatInt(int64(now.Nanosecond()/1000), 10))
}

// RESET
// help: returns the connection to its initial state: RESP2, no name, and
// unauthenticated when a password is set.
func cmdReset(c *client, args [][]byte) {
	c.resp3 = false
	c.name = ""
	c.setAuthed(c.srv.passHash == nil)
	c.tracking = false
	c.writeSimple("RESET")
}

// CLUSTER subcommand ...
// help: this server is not a Redis Cluster (followers forward to the
// leader), so CLUSTER replies Redis's standalone error; CLUSTER.INFO
// describes the raft cluster.
func cmdCluster(c *client, args [][]byte) { c.writeErrorText(errNoCluster) }

// clusterArity is the arity of each CLUSTER subcommand of Redis 7.2, which
// dispatch checks before the command refuses them all, as a standalone
// Redis does.
var clusterArity = map[string]int{
	"addslots": -3, "addslotsrange": -4, "bumpepoch": 2, "count-failure-reports": 3, "countkeysinslot": 3,
	"delslots": -3, "delslotsrange": -4, "failover": -2, "flushslots": 2, "forget": 3, "getkeysinslot": 4,
	"help": 2, "info": 2, "keyslot": 3, "links": 2, "meet": -4, "myid": 2, "myshardid": 2, "nodes": 2,
	"replicas": 3, "replicate": 3, "reset": -2, "saveconfig": 2, "set-config-epoch": 3, "setslot": -4,
	"shards": 2, "slaves": 3, "slots": 2,
}

// READONLY, READWRITE
// help: cluster-mode commands; refused as by a standalone Redis.
func cmdReadonly(c *client, args [][]byte) { c.writeErrorText(errNoCluster) }

// COMMAND [COUNT | DOCS [name ...] | INFO [name ...] | LIST]
// help: describes the commands in Redis 7's shapes.
func cmdCommand(c *client, args [][]byte) {
	if len(args) == 1 {
		names := c.srv.commandNames()
		c.writeArray(len(names))
		for _, n := range names {
			c.writeCommandInfo(c.srv.cmds[n])
		}
		return
	}
	switch string(bytes.ToLower(args[1])) { // dispatch checked it and its arity (commandArity)
	case "count":
		c.writeInt(int64(len(c.srv.cmds)))
	case "list":
		names := c.srv.commandNames()
		c.writeArray(len(names))
		for _, n := range names {
			c.writeBulkString(n)
		}
	case "info":
		names := args[2:]
		if len(names) == 0 {
			for _, n := range c.srv.commandNames() {
				names = append(names, []byte(n))
			}
		}
		c.writeArray(len(names))
		for _, n := range names {
			if cmd := c.srv.lookup(n); cmd != nil {
				c.writeCommandInfo(cmd)
			} else {
				c.writeNull() // Redis: a null bulk under RESP2
			}
		}
	case "docs":
		c.writeMap(0)
	default: // not reached through dispatch
		c.writeErrorText(unknownSubcommand("command", args[1]))
	}
}

// commandArity is the arity of each COMMAND subcommand, which dispatch
// checks.
var commandArity = map[string]int{"count": 2, "list": -2, "info": -2, "docs": -2}

// commandNames returns the command names in order.
func (s *Server) commandNames() []string {
	names := make([]string, 0, len(s.cmds))
	for n := range s.cmds {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// writeCommandInfo writes one COMMAND entry: name, arity, flags, first key,
// last key, step, ACL categories, tips, key specs, subcommands.
func (c *client) writeCommandInfo(cmd *command) {
	c.writeArray(10)
	c.writeBulkString(cmd.name)
	c.writeInt(int64(cmd.arity))
	flags := cmd.flags
	if flags == nil {
		flags = []string{"fast"}
	}
	c.writeArray(len(flags))
	for _, f := range flags {
		c.writeSimple(f)
	}
	c.writeInt(int64(cmd.first))
	c.writeInt(int64(cmd.last))
	c.writeInt(int64(cmd.step))
	c.writeArray(0)
	c.writeArray(0)
	c.writeArray(0)
	c.writeArray(0)
}
