package server

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"

	"github.com/distlock/distlock/walstore"
)

// The cluster id tells two clusters apart on the raft port, as etcd's does.
// The leader that raises the cluster to protocol version 3 draws it at
// random and commits it with the raise (raftfsm.FSM.ClusterID); each node
// also keeps it in its stable store, so that it knows it from the moment
// it starts, before it has replayed its log. A node that knows it opens
// each raft connection with clusterMagic and the id; the receiving node
// refuses the connection when it knows another id (admitPeer). Nodes that
// know no id yet (a cluster still at an older version, a node that has
// just joined) send none and are let in, as before: only two clusters that
// are both named are kept apart, which is every cluster once all its nodes
// run this build.

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

// storedClusterID returns the cluster id in the node's stable store, or ""
// when it holds none.
func storedClusterID(store *walstore.Store) (string, error) {
	b, err := store.Get([]byte(clusterIDKey))
	if errors.Is(err, walstore.ErrKeyNotFound) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read the cluster id: %w", err)
	}
	return string(b), nil
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
