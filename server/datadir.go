package server

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/hashicorp/raft"
)

// ErrOtherCluster is returned by Start when the node's data directory holds
// a cluster that none of --peers belongs to: most often the one-node
// cluster a first `go run ./cmd/node` made in ./data, started again with
// the --peers of a new cluster. Raft would let such a node follow the new
// cluster's leader over a log that is not that cluster's (both logs begin
// with a bootstrap entry at index 1 of term 1, so raft takes them for one
// log), and its state machine would disagree with the others'.
var ErrOtherCluster = errors.New("the data directory holds another cluster than --peers describes")

// storedConfiguration returns the latest membership recorded in a node's
// stores: the newest snapshot's, replaced by any configuration entry in
// the log after it. It reads what raft.NewRaft would, before raft starts
// and can talk to anyone.
func storedConfiguration(logs raft.LogStore, snaps raft.SnapshotStore) (raft.Configuration, error) {
	var conf raft.Configuration
	var after uint64
	metas, err := snaps.List()
	if err != nil {
		return conf, fmt.Errorf("list snapshots: %w", err)
	}
	if len(metas) > 0 {
		conf, after = metas[0].Configuration, metas[0].Index
	}
	first, err := logs.FirstIndex()
	if err != nil {
		return conf, fmt.Errorf("first log index: %w", err)
	}
	last, err := logs.LastIndex()
	if err != nil {
		return conf, fmt.Errorf("last log index: %w", err)
	}
	if last == 0 {
		return conf, nil
	}
	for i := max(first, after+1); i <= last; i++ {
		var l raft.Log
		if err := logs.GetLog(i, &l); err != nil {
			return conf, fmt.Errorf("read log entry %d: %w", i, err)
		}
		if l.Type == raft.LogConfiguration {
			if conf, err = decodeConfiguration(l.Data); err != nil {
				return conf, fmt.Errorf("log entry %d: %w", i, err)
			}
		}
	}
	return conf, nil
}

// decodeConfiguration is raft.DecodeConfiguration, which panics on bytes
// it cannot decode, returning an error instead.
func decodeConfiguration(data []byte) (conf raft.Configuration, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("decode configuration: %v", r)
		}
	}()
	return raft.DecodeConfiguration(data), nil
}

// checkPeers compares the membership a node's data holds with the --peers
// it was started with. A node with state takes its membership from its
// data and ignores --peers (membership changes since the bootstrap, by
// --join or CLUSTER.LEAVE, are in the log), so a difference is normal; but
// when none of the peers is a member, the data belongs to another cluster
// than the one --peers describes, and starting would mix the two
// (ErrOtherCluster). It returns a note to log when the two differ
// otherwise, or "".
func checkPeers(self string, peers []Peer, conf raft.Configuration) (string, error) {
	if len(peers) == 0 || len(conf.Servers) == 0 {
		return "", nil
	}
	var members []string
	for _, s := range conf.Servers {
		members = append(members, string(s.ID))
	}
	var named []string
	shared := false
	for _, p := range peers {
		named = append(named, p.ID)
		if p.ID != self && slices.Contains(members, p.ID) {
			shared = true
		}
	}
	slices.Sort(members)
	slices.Sort(named)
	if !shared {
		return "", fmt.Errorf("%w: its members are %s; --peers names %s, none of them a member. "+
			"To start this node as a new member of the cluster --peers describes, move the directory away "+
			"or give the node another --data-dir; to keep its own cluster, start it with that cluster's flags",
			ErrOtherCluster, strings.Join(members, ","), strings.Join(named, ","))
	}
	want := append([]string{self}, named...)
	slices.Sort(want)
	if !slices.Equal(members, want) {
		return fmt.Sprintf("--peers (%s) differs from the membership in the data directory (%s), which is the one used",
			strings.Join(named, ","), strings.Join(members, ",")), nil
	}
	return "", nil
}
