package server

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"

	"github.com/hashicorp/raft"

	"github.com/distlock/distlock/raftfsm"
	"github.com/distlock/distlock/walstore"
)

// The cluster id tells two clusters apart on the raft port, as etcd's does.
// The leader that raises the cluster to protocol version 3 draws it at
// random and commits it with the raise (raftfsm.FSM.ClusterID); each node
// also keeps it in its stable store, so that it knows it from the moment
// it starts, before raft has applied anything (a node that crashed before
// it stored the id finds it in its log). A node that knows it opens each
// raft connection with clusterMagic and the id; a node that knows its id
// refuses a connection that announces another id or none (admitPeer).
// Nodes that know no id admit every connection, as before.
//
// Refusing connections without an id cannot keep a cluster from electing
// a leader. A node knows the id once its log or snapshot holds the raise,
// which is committed, so on a majority; a node whose log lacks it is less
// up to date than every node whose log holds it (its last entry comes
// before the raise, or it would hold the raise by raft's log matching), so
// it cannot win their votes anyway, and they can win without its own. A
// member that joined after the raise learns the id from the leader's
// entries or snapshot, which it admits.

// clusterMagic is the first byte of a raft connection that opens with the
// sender's cluster id: clusterMagic | len u8 | id. Raft's own connections
// start with an RPC type byte (0-3) and forwarding with forwardMagic.
const clusterMagic = 0xF8

// maxClusterIDLen bounds the id a connection may announce.
const maxClusterIDLen = 64

// clusterIDKey is the stable store key under which a node keeps the id.
const clusterIDKey = "distlock.cluster_id"

// newClusterID returns a fresh random cluster id: 128 bits, in hex.
func newClusterID() string {
	var b [16]byte
	rand.Read(b[:]) // never fails (crypto/rand)
	return hex.EncodeToString(b[:])
}

// startClusterID returns the cluster id a node knows at start, before raft
// restores its snapshot: the one in its stable store, else the first one
// set by an entry of its log after its newest snapshot (whose own id the
// state machine gets when raft restores it), else "".
func startClusterID(store *walstore.Store, snaps raft.SnapshotStore) (string, error) {
	b, err := store.Get([]byte(clusterIDKey))
	switch {
	case err == nil && len(b) > 0:
		return string(b), nil
	case err != nil && !errors.Is(err, walstore.ErrKeyNotFound):
		return "", fmt.Errorf("read the cluster id: %w", err)
	}
	metas, err := snaps.List()
	if err != nil {
		return "", fmt.Errorf("list snapshots: %w", err)
	}
	var after uint64
	if len(metas) > 0 {
		after = metas[0].Index
	}
	first, err := store.FirstIndex()
	if err != nil {
		return "", fmt.Errorf("first log index: %w", err)
	}
	last, err := store.LastIndex()
	if err != nil {
		return "", fmt.Errorf("last log index: %w", err)
	}
	for i := max(first, after+1); i <= last && i > 0; i++ {
		var l raft.Log
		if err := store.GetLog(i, &l); err != nil {
			return "", fmt.Errorf("read log entry %d: %w", i, err)
		}
		if l.Type == raft.LogCommand {
			if id := raftfsm.ClusterIDIn(l.Data); id != "" {
				return id, nil
			}
		}
	}
	return "", nil
}

// clusterID returns the id of this node's cluster: the one its state
// machine applied, else the one it stored, else "".
func (n *Node) clusterID() string {
	if id := n.fsm.ClusterID(); id != "" {
		return id
	}
	if p := n.storedID.Load(); p != nil {
		return *p
	}
	return ""
}

// keepClusterID writes the id the state machine applied to the stable
// store, once, so that the node knows it at its next start.
func (n *Node) keepClusterID() {
	id := n.fsm.ClusterID()
	if p := n.storedID.Load(); id == "" || (p != nil && *p == id) {
		return
	}
	if err := n.store.Set([]byte(clusterIDKey), []byte(id)); err != nil {
		n.log.Warn("could not store the cluster id", "err", err)
		return
	}
	n.storedID.Store(&id)
	n.log.Info("cluster id", "id", id)
}

// appendClusterHello appends the opening of a raft connection that
// announces cluster id.
func appendClusterHello(b []byte, id string) []byte {
	b = append(b, clusterMagic, byte(len(id)))
	return append(b, id...)
}

// readClusterHello reads the rest of a cluster hello whose clusterMagic
// byte has been read.
func readClusterHello(br *bufio.Reader) (string, error) {
	n, err := br.ReadByte()
	if err != nil {
		return "", fmt.Errorf("read the cluster id's length: %w", err)
	}
	if n == 0 || n > maxClusterIDLen {
		return "", fmt.Errorf("a cluster id of %d bytes", n)
	}
	id := make([]byte, n)
	if _, err := io.ReadFull(br, id); err != nil {
		return "", fmt.Errorf("read the cluster id: %w", err)
	}
	return string(id), nil
}
