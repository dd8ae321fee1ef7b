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
// random and commits it with the raise (raftfsm.FSM.ClusterID).
//
// A node enforces the id once it is committed: once its state machine has
// applied the raise, or its stable store holds the id (each node stores the
// applied id, so that it enforces it from the moment it starts). Such a
// node refuses a raft connection that announces another id or none
// (admitPeer). A node that enforces no id admits every connection, as
// before.
//
// A node announces an id, opening each raft connection with clusterMagic
// and the id, as soon as its log holds the raise: the id it enforces, else
// the one of the earliest raise in its log (watched as entries are stored
// and deleted, and looked for in the log at start), committed or not.
// Announcing before applying is what keeps refusals from blocking an
// election: the raise is committed, so on a majority of logs; a node whose
// log lacks it is less up to date than every node whose log holds it (its
// last entry comes before the raise, or it would hold the raise by raft's
// log matching), so it cannot win their votes anyway, and they can win
// without its own, since they all announce the id. Enforcing only what is
// committed is what keeps a raise that was never committed (written by a
// leader that crashed) from shutting its node out of the cluster that
// went on without it; for the same reason CLUSTER.JOIN compares only
// applied ids. A leader draws an id only when its state machine, caught up
// with everything in its log, has none, so a log rarely holds two raises
// with ids (one proposed just before a leader change can land after
// another leader's); where it does, the earliest counts everywhere, as in
// the state machine.
//
// Admission looks at each connection once, when it opens; connections
// admitted before the node enforced its id that announced none or another
// are closed when it starts to (keepClusterID), within two election
// timeouts of applying the raise.

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

// startClusterID returns the cluster ids a node knows at start, before
// raft restores its snapshot (whose own id the state machine gets when raft
// restores it): stored, the one in its stable store, committed; else
// logged, the earliest raise with an id in its log, which may not be
// committed.
func startClusterID(store *walstore.Store) (stored string, logged loggedRaise, err error) {
	b, err := store.Get([]byte(clusterIDKey))
	switch {
	case err == nil && len(b) > 0:
		return string(b), logged, nil
	case err != nil && !errors.Is(err, walstore.ErrKeyNotFound):
		return "", logged, fmt.Errorf("read the cluster id: %w", err)
	}
	logged, err = loggedClusterID(store)
	return "", logged, err
}

// loggedRaise is a raise with a cluster id written to the log, at index.
type loggedRaise struct {
	index uint64
	id    string
}

// loggedClusterID returns the earliest raise with an id in the log, if
// any. It reads the whole log, not only what follows the newest snapshot:
// raft may restore an older one if the newest is damaged. (It runs only
// when the stable store holds no id, in practice on a node's first start
// on this build.)
func loggedClusterID(logs raft.LogStore) (loggedRaise, error) {
	var found loggedRaise
	_, err := walkLog(logs, func(l *raft.Log) (bool, error) {
		if l.Type == raft.LogCommand {
			found.id = raftfsm.ClusterIDIn(l.Data)
			found.index = l.Index
		}
		return found.id == "", nil
	})
	if err != nil || found.id == "" {
		return loggedRaise{}, err
	}
	return found, nil
}

// clusterID returns the committed id of this node's cluster, which it
// enforces: the one its state machine applied, else the one it stored,
// else "".
func (n *Node) clusterID() string {
	if id := n.fsm.ClusterID(); id != "" {
		return id
	}
	if p := n.storedID.Load(); p != nil {
		return *p
	}
	return ""
}

// announcedClusterID returns the id this node's raft connections announce:
// clusterID, else that of the earliest raise in its log, else "".
func (n *Node) announcedClusterID() string {
	if id := n.clusterID(); id != "" {
		return id
	}
	if p := n.loggedID.Load(); p != nil {
		return p.id
	}
	return ""
}

// noteLogged records the id of a raise among entries written to the log,
// while the node knows no committed id. The earliest raise in the log
// counts, as in the state machine (a later one is ignored when applied):
// one already recorded at a lower index stays.
func (n *Node) noteLogged(logs []*raft.Log) {
	if n.clusterID() != "" {
		return
	}
	for _, l := range logs {
		if l.Type != raft.LogCommand {
			continue
		}
		id := raftfsm.ClusterIDIn(l.Data)
		if id == "" {
			continue
		}
		for {
			p := n.loggedID.Load()
			if p != nil && p.id != "" && p.index < l.Index {
				return
			}
			if n.loggedID.CompareAndSwap(p, &loggedRaise{index: l.Index, id: id}) {
				return
			}
		}
	}
}

// forgetLogged forgets the raise written to the log when raft deletes its
// entry (a conflicting entry that a leader overwrites; compaction, once
// the state machine has applied it): the node no longer announces an id
// its log does not hold.
func (n *Node) forgetLogged(first, last uint64) {
	p := n.loggedID.Load()
	if p != nil && p.index >= first && p.index <= last {
		n.loggedID.CompareAndSwap(p, &loggedRaise{}) // unless a newer raise was written meanwhile
	}
}

// raiseWatch is the log store raft sees: it tells the node of the entries
// written to the log (noteLogged) after they are written, and of those
// deleted (forgetLogged).
type raiseWatch struct {
	raft.LogStore
	written func([]*raft.Log)
	deleted func(first, last uint64)
}

// DeleteRange deletes entries first to last and tells of it.
func (w raiseWatch) DeleteRange(first, last uint64) error {
	err := w.LogStore.DeleteRange(first, last)
	w.deleted(first, last) // even on failure: at worst the id is no longer announced
	return err
}

// StoreLog writes l, as StoreLogs.
func (w raiseWatch) StoreLog(l *raft.Log) error { return w.StoreLogs([]*raft.Log{l}) }

// StoreLogs writes logs and tells of them.
func (w raiseWatch) StoreLogs(logs []*raft.Log) error {
	if err := w.LogStore.StoreLogs(logs); err != nil {
		return err
	}
	w.written(logs)
	return nil
}

// IsMonotonic reports what the store under it does (raft asks the log
// store it is given).
func (w raiseWatch) IsMonotonic() bool {
	m, ok := w.LogStore.(raft.MonotonicLogStore)
	return ok && m.IsMonotonic()
}

// keepClusterID, once the state machine has applied an id, closes the
// raft connections admitted before it that announced another id or none
// (admission looks only at new ones), and writes the id to the stable
// store, so that the node knows it at its next start.
func (n *Node) keepClusterID() {
	id := n.fsm.ClusterID()
	if p := n.storedID.Load(); id == "" || (p != nil && *p == id) {
		return
	}
	if closed := n.stream.closeOtherClusters(id); closed > 0 {
		n.log.Info("closed raft connections admitted before the cluster id, that announced none or another", "connections", closed)
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
