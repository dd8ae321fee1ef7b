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

// storedMembership is what a node's stores say of its membership.
type storedMembership struct {
	// latest is the membership raft will start with.
	latest raft.Configuration
	// ever is every server id in a membership the stores hold: the
	// newest snapshot's and each configuration entry in the log.
	ever []string
	// complete reports that the log still begins with the bootstrap
	// entry, so ever holds every member the node's cluster has had.
	complete bool
}

// storedConfiguration reads the membership raft would load (the newest
// snapshot's, replaced by any configuration entry in the log after it),
// and every membership the stores hold, before raft starts and can talk to
// anyone.
func storedConfiguration(logs raft.LogStore, snaps raft.SnapshotStore) (storedMembership, error) {
	var m storedMembership
	var after uint64
	seen := func(c raft.Configuration) {
		for _, s := range c.Servers {
			if !slices.Contains(m.ever, string(s.ID)) {
				m.ever = append(m.ever, string(s.ID))
			}
		}
	}
	metas, err := snaps.List()
	if err != nil {
		return m, fmt.Errorf("list snapshots: %w", err)
	}
	if len(metas) > 0 {
		m.latest, after = metas[0].Configuration, metas[0].Index
		seen(m.latest)
	}
	first, err := walkLog(logs, func(l *raft.Log) (bool, error) {
		if l.Type != raft.LogConfiguration {
			return true, nil
		}
		c, err := decodeConfiguration(l.Data)
		if err != nil {
			return false, fmt.Errorf("log entry %d: %w", l.Index, err)
		}
		seen(c)
		if l.Index > after {
			m.latest = c
		}
		return true, nil
	})
	m.complete = first == 1
	return m, err
}

// walkLog calls each with every entry of logs, oldest first, until it
// returns false or an error, and returns the log's first index (0 when it
// is empty). Nodes read their log this way before raft starts.
func walkLog(logs raft.LogStore, each func(l *raft.Log) (bool, error)) (first uint64, err error) {
	first, err = logs.FirstIndex()
	if err != nil {
		return 0, fmt.Errorf("first log index: %w", err)
	}
	last, err := logs.LastIndex()
	if err != nil {
		return 0, fmt.Errorf("last log index: %w", err)
	}
	if last == 0 {
		return 0, nil
	}
	for i := first; i <= last; i++ {
		var l raft.Log
		if err := logs.GetLog(i, &l); err != nil {
			return first, fmt.Errorf("read log entry %d: %w", i, err)
		}
		if more, err := each(&l); err != nil || !more {
			return first, err
		}
	}
	return first, nil
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
// when none of the peers has ever been a member, as far as the data goes
// back to the bootstrap, the data belongs to another cluster than the one
// --peers describes, and starting would mix the two (ErrOtherCluster).
// When the log no longer goes back that far it cannot tell, and only
// warns. It returns a note to log, or "", and whether the note is a
// warning.
func checkPeers(self string, peers []Peer, m storedMembership) (note string, warn bool, err error) {
	if len(peers) == 0 || len(m.latest.Servers) == 0 {
		return "", false, nil
	}
	var members []string
	for _, s := range m.latest.Servers {
		members = append(members, string(s.ID))
	}
	var named []string
	shared := false
	for _, p := range peers {
		named = append(named, p.ID)
		if p.ID != self && slices.Contains(m.ever, p.ID) {
			shared = true
		}
	}
	slices.Sort(members)
	slices.Sort(named)
	if !shared && m.complete {
		return "", false, fmt.Errorf("%w: its members are %s; --peers names %s, none of them ever a member. "+
			"To start this node as a new member of the cluster --peers describes, move the directory away "+
			"or give the node another --data-dir; to keep its own cluster, start it with that cluster's flags",
			ErrOtherCluster, strings.Join(members, ","), strings.Join(named, ","))
	}
	if !shared {
		return fmt.Sprintf("--peers (%s) names no member of the cluster in the data directory (%s) as far as its log "+
			"goes back: if the data is of another cluster, stop the node and move the directory away",
			strings.Join(named, ","), strings.Join(members, ",")), true, nil
	}
	want := append([]string{self}, named...)
	slices.Sort(want)
	if !slices.Equal(members, want) {
		return fmt.Sprintf("--peers (%s) differs from the membership in the data directory (%s), which is the one used",
			strings.Join(named, ","), strings.Join(members, ",")), false, nil
	}
	return "", false, nil
}
