package server

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/distlock/distlock/lockapi"
)

func members(ids ...string) raft.Configuration {
	var c raft.Configuration
	for _, id := range ids {
		c.Servers = append(c.Servers, raft.Server{ID: raft.ServerID(id), Address: raft.ServerAddress(id + ":9001"), Suffrage: raft.Voter})
	}
	return c
}

func peers(ids ...string) []Peer {
	var p []Peer
	for _, id := range ids {
		p = append(p, Peer{ID: id, Addr: id + ":9001"})
	}
	return p
}

// stored is a storedMembership whose latest membership is latest and
// whose log goes back to the bootstrap (complete) with the memberships
// history (latest's members are added).
func stored(latest raft.Configuration, complete bool, history ...string) storedMembership {
	m := storedMembership{latest: latest, ever: history, complete: complete}
	for _, s := range latest.Servers {
		m.ever = append(m.ever, string(s.ID))
	}
	return m
}

func TestCheckPeers(t *testing.T) {
	tests := []struct {
		name     string
		peers    []Peer
		m        storedMembership
		wantErr  bool
		wantNote bool
		wantWarn bool
	}{
		{"no peers given", nil, stored(members("n1"), true), false, false, false},
		{"no membership stored", peers("n2", "n3"), storedMembership{}, false, false, false},
		{"same membership", peers("n2", "n3"), stored(members("n1", "n2", "n3"), true), false, false, false},
		{"same membership, other order", peers("n3", "n2"), stored(members("n3", "n1", "n2"), true), false, false, false},
		{"a node joined since", peers("n2", "n3"), stored(members("n1", "n2", "n3", "n4"), true), false, true, false},
		{"a peer left since", peers("n2", "n3"), stored(members("n1", "n2"), true, "n3"), false, true, false},
		{"this node was removed", peers("n2", "n3"), stored(members("n2", "n3"), true, "n1"), false, true, false},
		{"scaled down to this node", peers("n2", "n3"), stored(members("n1"), true, "n2", "n3"), false, true, false},
		{"every peer replaced", peers("n2", "n3"), stored(members("n1", "n4", "n5"), true, "n2", "n3"), false, true, false},
		{"a one-node cluster started with peers", peers("n2", "n3"), stored(members("n1"), true), true, false, false},
		{"another cluster altogether", peers("n2", "n3"), stored(members("n1", "x2", "x3"), true), true, false, false},
		{"only this node in common", peers("n1", "n2"), stored(members("n1", "x2"), true), true, false, false},
		{"a one-node cluster, its log compacted", peers("n2", "n3"), stored(members("n1"), false), false, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			note, warn, err := checkPeers("n1", tt.peers, tt.m)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			if err != nil && !errors.Is(err, ErrOtherCluster) {
				t.Fatalf("err = %v, want ErrOtherCluster", err)
			}
			if (note != "") != tt.wantNote || warn != tt.wantWarn {
				t.Fatalf("note = %q (warning %v), want a note %v (warning %v)", note, warn, tt.wantNote, tt.wantWarn)
			}
		})
	}
}

// A node whose cluster was scaled down to itself (CLUSTER.LEAVE of the
// others) restarts with the flags it always had: its peers were members.
func TestStartAfterAScaleDownToOneNode(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	l := c.leader()
	for _, i := range []int{(l + 1) % 3, (l + 2) % 3} {
		if err := c.nodes[l].Leave(ctxT(t), c.cfgs[i].ID); err != nil {
			t.Fatal(err)
		}
		c.stop(i)
	}
	c.stop(l)
	c.start(l)
	waitFor(t, 5*time.Second, "the remaining member to lead", c.nodes[l].IsLeader)
}

// A node that made a one-node cluster (a first `go run ./cmd/node`) and is
// started again with --peers must refuse: raft would otherwise let it
// follow the new cluster's leader over a log that is not that cluster's.
// Once a snapshot has compacted the bootstrap entry away, the stores no
// longer tell, and it starts with a warning (admitPeer still keeps the
// other cluster out).
func TestStartRefusesTheDataOfAnotherCluster(t *testing.T) {
	for _, compacted := range []bool{false, true} {
		t.Run(fmt.Sprintf("compacted=%v", compacted), func(t *testing.T) {
			dir := t.TempDir()
			n := startNode(t, dir, func(c *Config) { c.TrailingLogs = 1 }) // one entry kept behind a snapshot
			if _, err := n.Acquire(ctxT(t), lockapi.AcquireRequest{Key: "k", Owner: "a", TTL: 60e9}); err != nil {
				t.Fatal(err)
			}
			if compacted {
				waitRegistered(t, n)
				if err := n.raft.Snapshot().Error(); err != nil {
					t.Fatal(err)
				}
				if first, _ := n.store.FirstIndex(); first <= 1 {
					t.Fatalf("first log index %d after the snapshot: the bootstrap entry is still there", first)
				}
			}
			n.Close()

			addrs := freeAddrs(t, 2)
			var logs bytes.Buffer // read once the node is closed
			cfg := Config{ID: "n1", DataDir: dir, RaftAddr: "127.0.0.1:0",
				Peers:  []Peer{{ID: "n2", Addr: addrs[0]}, {ID: "n3", Addr: addrs[1]}},
				Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))}
			m, err := Start(cfg)
			if compacted {
				if err != nil {
					t.Fatalf("Start on compacted data: %v; want a start with a warning", err)
				}
				m.Close()
				if !strings.Contains(logs.String(), "names no member") {
					t.Fatalf("no warning logged:\n%s", logs.String())
				}
			} else {
				if err == nil {
					m.Close()
					t.Fatal("Start with the peers of another cluster succeeded")
				}
				if !errors.Is(err, ErrOtherCluster) || !strings.Contains(err.Error(), "n2,n3") {
					t.Fatalf("Start: %v; want ErrOtherCluster naming the peers", err)
				}
			}

			// Its own flags still start it, with its lock.
			m = startNode(t, dir, nil)
			if l, err := m.Info(ctxT(t), "k"); err != nil || l.Owner != "a" {
				t.Fatalf("after the refusal: %+v, %v", l, err)
			}
		})
	}
}

// A member restarted with its cluster's --peers starts, also once another
// member left (the membership in the log wins over the flags).
func TestStartAcceptsItsOwnClusterPeers(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	l := c.leader()
	other := (l + 1) % 3
	if err := c.nodes[l].Leave(ctxT(t), c.cfgs[other].ID); err != nil {
		t.Fatal(err)
	}
	c.stop(other)
	restart := (l + 2) % 3
	c.stop(restart)
	c.start(restart)
	c.leader()
}

// A one-node cluster's node, started again on the raft address a new
// cluster lists for it (without --peers, so the check of Start does not
// apply), refuses that cluster's raft connections: it keeps leading its
// own cluster with its own state, and the new cluster's two other nodes
// serve on their own, instead of one log being grafted onto the other.
func TestOneNodeClusterRefusesAnotherClustersRaft(t *testing.T) {
	addrs := freeAddrs(t, 3)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg := func(i int, peers bool) Config {
		c := Config{ID: fmt.Sprintf("n%d", i+1), DataDir: t.TempDir(), RaftAddr: addrs[i], RaftAdvertise: addrs[i],
			ElectionTimeout: 100 * time.Millisecond, HeartbeatInterval: 20 * time.Millisecond, Logger: quiet}
		for j := range addrs {
			if peers && j != i {
				c.Peers = append(c.Peers, Peer{ID: fmt.Sprintf("n%d", j+1), Addr: addrs[j]})
			}
		}
		return c
	}
	lone, err := Start(cfg(0, false))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lone.Close() })
	waitFor(t, 5*time.Second, "the lone node to lead", lone.IsLeader)
	ctx := ctxT(t)
	if _, err := lone.Acquire(ctx, lockapi.AcquireRequest{Key: "mine", Owner: "a", TTL: time.Minute}); err != nil {
		t.Fatal(err)
	}
	var others []*Node
	for i := 1; i < 3; i++ {
		n, err := Start(cfg(i, true))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Close() })
		others = append(others, n)
	}
	var leader *Node
	waitFor(t, 10*time.Second, "a leader among the new cluster's two other nodes", func() bool {
		for _, n := range others {
			if n.IsLeader() {
				leader = n
				return true
			}
		}
		return false
	})
	for i := range 20 {
		if _, err := leader.Acquire(ctx, lockapi.AcquireRequest{Key: fmt.Sprintf("theirs-%d", i), Owner: "b", TTL: time.Minute}); err != nil {
			t.Fatalf("the new cluster: %v", err)
		}
	}
	time.Sleep(500 * time.Millisecond) // heartbeats and retries reach the lone node meanwhile
	if !lone.IsLeader() {
		t.Fatal("the lone node stopped leading its own cluster")
	}
	if _, ok := lone.fsm.Get("theirs-0"); ok {
		t.Fatal("the lone node applied the other cluster's entries")
	}
	if l, err := lone.Info(ctx, "mine"); err != nil || l.Owner != "a" {
		t.Fatalf("the lone node's own lock: %+v, %v", l, err)
	}
}
