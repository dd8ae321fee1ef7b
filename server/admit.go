package server

import (
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/hashicorp/go-msgpack/v2/codec"
	"github.com/hashicorp/raft"
)

// rpcSender decodes, from r, the header of the raft RPC that opens a
// connection (after its type byte) and returns the sender's server id, or
// "" when the header names none. hashicorp/raft's NetworkTransport encodes
// every request as a msgpack map that holds its RPCHeader's fields (the
// header is embedded); the other fields are skipped (read, not kept).
func rpcSender(r io.Reader) (string, error) {
	var req struct{ raft.RPCHeader } // embedded, as in raft's requests: its fields are the map's own
	if err := codec.NewDecoder(r, &codec.MsgpackHandle{}).Decode(&req); err != nil {
		return "", fmt.Errorf("decode the first raft request's header: %w", err)
	}
	return string(req.RPCHeader.ID), nil
}

// admitPeer reports whether raft RPCs from sender may reach this node's
// raft. A node whose configuration holds only itself has no peer, so a
// node that sends it raft RPCs belongs to another cluster: typically a
// one-node cluster's data directory, restarted with the raft address that
// a new cluster lists. raft would let it follow that cluster's leader over
// a log that is not that cluster's (both begin with a bootstrap entry at
// index 1 of term 1), or let its term unseat that leader, so such
// connections are closed. So are those that announce another cluster id
// than this node's, or none once this node knows its own (clusterid.go).
// Otherwise a node with no configuration yet (one that is joining) and a
// member of a larger cluster admit everyone, as raft does.
func (n *Node) admitPeer(sender, cluster string) bool {
	if ours := n.clusterID(); ours != "" && cluster != ours {
		theirs := "no cluster id"
		if cluster != "" {
			theirs = "cluster id " + cluster
		}
		n.refusals.note(n.log, sender, fmt.Sprintf("refusing raft connections from a node of another cluster: "+
			"it announced %s, this node's cluster is %s (do --peers or CLUSTER.JOIN name a node of another cluster?)",
			theirs, ours))
		return false
	}
	if sender == "" || sender == n.cfg.ID {
		return true
	}
	f := n.raft.GetConfiguration()
	if f.Error() != nil {
		return true // shutting down: raft refuses by itself
	}
	servers := f.Configuration().Servers
	if len(servers) == 1 && servers[0].ID == raft.ServerID(n.cfg.ID) {
		n.refusals.note(n.log, sender, "refusing raft connections from a node of another cluster: this node's cluster has no member but itself "+
			"(is its data directory from an earlier one-node cluster?)")
		return false
	}
	return true
}

// refusalLog logs a refused peer at most once a minute per sender (raft
// redials it on every heartbeat). Sender ids come from the network: it
// keeps at most refusalSenders of them, each cut to refusalIDLen bytes.
type refusalLog struct {
	mu   sync.Mutex
	last map[string]time.Time
}

const (
	refusalSenders = 64
	refusalIDLen   = 64
)

func (r *refusalLog) note(log interface{ Warn(string, ...any) }, sender, msg string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(sender) > refusalIDLen {
		sender = sender[:refusalIDLen] + "..."
	}
	if r.last == nil || len(r.last) >= refusalSenders {
		r.last = make(map[string]time.Time) // forget: at worst a sender is logged again
	}
	if t, ok := r.last[sender]; ok && time.Since(t) < time.Minute {
		return
	}
	r.last[sender] = time.Now()
	log.Warn(msg, "sender", sender)
}
