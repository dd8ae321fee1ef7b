package raftfsm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// batch encodes cmds as one batch entry.
func batch(cmds ...Command) []byte {
	enc := make([][]byte, len(cmds))
	for i, c := range cmds {
		enc[i] = Encode(nil, c)
	}
	return EncodeBatch(nil, enc)
}

func setVersion(v uint64) Command { return Command{Op: OpSetVersion, Token: v} }

func applyBatch(t *testing.T, f *FSM, idx uint64, data []byte) []Result {
	t.Helper()
	r, ok := f.Apply(&raft.Log{Index: idx, Type: raft.LogCommand, Data: data}).(*BatchResult)
	if !ok {
		t.Fatalf("Apply of a batch did not return a *BatchResult")
	}
	return r.Results
}

// TestEncodeGrowsOnce: every operation's encoding fits the bound Encode
// grows its destination to, so that encoding into a fresh slice allocates
// once, and decodes back to the command.
func TestEncodeGrowsOnce(t *testing.T) {
	long := strings.Repeat("x", 300) // a length prefix of two bytes
	cases := []Command{
		acq(time.Second, "key", "owner", 30*time.Second),
		{Op: OpAcquire, Now: math.MinInt64, Key: long, Owner: long, TTL: math.MaxInt64},
		ren(-1, "k", "o", time.Millisecond, math.MaxUint64),
		rel(math.MaxInt64, long, "o", math.MaxUint64),
		exp(1 << 62),
		setVersion(math.MaxUint64),
		{Op: OpSetNode, Now: -1, Key: "n1", RESPAddr: long, HTTPAddr: "127.0.0.1:8001"},
		execCmd(0, "EVAL", long, "1", "k", "v"),
		{Op: OpExec, Now: 1, Wall: math.MinInt64, Args: []string{long, long}},
		hand(math.MinInt64, long, "o", math.MaxUint64, long, math.MinInt64),
	}
	for _, c := range cases {
		data := Encode(nil, c)
		if len(data) > encodedSizeBound(c) {
			t.Errorf("op %d: %d bytes, over the bound %d", c.Op, len(data), encodedSizeBound(c))
		}
		if allocs := testing.AllocsPerRun(10, func() { Encode(nil, c) }); allocs != 1 {
			t.Errorf("op %d: Encode(nil) allocated %v times, want 1", c.Op, allocs)
		}
		got, err := Decode(data)
		if err != nil || !reflect.DeepEqual(got, c) {
			t.Errorf("op %d: decoded %+v, %v; want %+v", c.Op, got, err, c)
		}
	}
}

func TestEncodeBatchRoundTrip(t *testing.T) {
	cmds := []Command{acq(time.Second, "a", "o", time.Minute), rel(2*time.Second, "a", "o", 7), execCmd(3, "SET", "k", "v")}
	got, err := DecodeBatch(batch(cmds...))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, cmds) {
		t.Fatalf("DecodeBatch = %+v, want %+v", got, cmds)
	}
}

func TestDecodeBatchRefuses(t *testing.T) {
	good := batch(acq(0, "a", "o", time.Second))
	newer := EncodeBatch(nil, [][]byte{Encode(nil, acq(0, "a", "o", time.Second)), {1, byte(lastOp) + 1}})
	tests := []struct {
		name string
		data []byte
		want error
	}{
		{"not a batch", Encode(nil, acq(0, "a", "o", time.Second)), ErrBadCommand},
		{"empty", []byte{batchVersion, 0}, ErrBadCommand},
		{"count above the bytes", []byte{batchVersion, 5, 1}, ErrBadCommand},
		{"truncated command", good[:len(good)-1], ErrBadCommand},
		{"trailing bytes", append(bytes.Clone(good), 0), ErrBadCommand},
		{"malformed command", EncodeBatch(nil, [][]byte{{1, 1, 0xff}}), ErrBadCommand},
		{"command of a newer op", newer, ErrNewerFormat},
		{"command of a newer version", EncodeBatch(nil, [][]byte{{7, 1}}), ErrNewerFormat},
		{"too many commands", binary.AppendUvarint([]byte{batchVersion}, maxBatch+1), ErrBadCommand},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := DecodeBatch(tt.data); !errors.Is(err, tt.want) {
				t.Fatalf("DecodeBatch err = %v, want %v", err, tt.want)
			}
		})
	}
}

// TestFSMHaltsOnNewerFormat: an entry this build cannot read stops the state
// machine where it is instead of being skipped.
func TestFSMHaltsOnNewerFormat(t *testing.T) {
	tests := []struct {
		name string
		data []byte
	}{
		{"unknown command version", []byte{9, 1}},
		{"unknown op", Encode(nil, Command{Op: lastOp + 1, Key: "k"})},
		{"newer protocol version", Encode(nil, setVersion(ProtocolVersion+1))},
		{"batch with an unknown op", EncodeBatch(nil, [][]byte{Encode(nil, acq(0, "b", "o", time.Second)), {1, byte(lastOp) + 1}})},
		{"batch raising past this build", batch(acq(0, "b", "o", time.Second), setVersion(ProtocolVersion+1))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := New()
			var heard []error
			f.OnHalt(func(err error) { heard = append(heard, err) })
			applyCmd(t, f, 1, setVersion(2))
			applyCmd(t, f, 2, acq(time.Second, "a", "o", time.Minute))
			before := snapshotBytes(t, f)

			f.Apply(&raft.Log{Index: 3, Data: tt.data})
			if len(heard) != 1 || !errors.Is(heard[0], ErrHalted) || !errors.Is(heard[0], ErrNewerFormat) {
				t.Fatalf("OnHalt heard %v, want one ErrHalted wrapping ErrNewerFormat", heard)
			}
			if r := applyCmd(t, f, 4, acq(2*time.Second, "c", "o", time.Minute)); !errors.Is(r.Err, ErrHalted) {
				t.Fatalf("entry after the halt: err = %v, want ErrHalted", r.Err)
			}
			if r := applyBatch(t, f, 5, batch(acq(2*time.Second, "d", "o", time.Minute))); !errors.Is(r[0].Err, ErrHalted) {
				t.Fatalf("batch after the halt: err = %v, want ErrHalted", r[0].Err)
			}
			if len(heard) != 1 {
				t.Fatalf("OnHalt called %d times, want once", len(heard))
			}
			if _, ok := f.Get("c"); ok {
				t.Fatal("a halted state machine applied an entry")
			}
			if got := f.AppliedIndex(); got != 2 {
				t.Fatalf("AppliedIndex = %d, want 2 (the last entry applied)", got)
			}
			if _, err := f.Snapshot(); !errors.Is(err, ErrHalted) {
				t.Fatalf("Snapshot err = %v, want ErrHalted", err)
			}
			if err := f.Restore(nopCloser{bytes.NewReader(before)}); !errors.Is(err, ErrHalted) {
				t.Fatalf("Restore err = %v, want ErrHalted", err)
			}
		})
	}
}

// TestFSMTokensAcrossVersions: tokens are indexes under protocol 1, then a
// sequence started at the raising entry's index; they grow per key across
// the switch, inside batches and across index gaps (configuration entries).
func TestFSMTokensAcrossVersions(t *testing.T) {
	f := New()
	tokenOf := func(r Result) uint64 {
		t.Helper()
		if r.Err != nil {
			t.Fatalf("unexpected refusal: %v", r.Err)
		}
		return r.Lock.Token
	}
	if got := tokenOf(*applyCmd(t, f, 5, acq(0, "k", "a", time.Minute))); got != 5 {
		t.Fatalf("protocol 1 token = %d, want the index 5", got)
	}
	applyCmd(t, f, 6, rel(0, "k", "a", 0))
	applyCmd(t, f, 9, setVersion(2))
	if f.ClusterVersion() != 2 {
		t.Fatalf("ClusterVersion = %d, want 2", f.ClusterVersion())
	}
	if got := tokenOf(*applyCmd(t, f, 10, acq(0, "k", "b", time.Minute))); got != 10 {
		t.Fatalf("first token after the raise = %d, want 10", got)
	}
	rs := applyBatch(t, f, 11, batch(rel(0, "k", "b", 0), acq(0, "k", "c", time.Minute), acq(0, "x", "c", time.Minute), execCmd(0, "SET", "s", "v")))
	if len(rs) != 4 || rs[0].Err != nil || tokenOf(rs[1]) != 12 || tokenOf(rs[2]) != 13 {
		t.Fatalf("batch results = %+v, want tokens 12 and 13", rs)
	}
	if l, _ := f.Get("s"); l.Token != 14 {
		t.Fatalf("SET in a batch: token %d, want 14", l.Token)
	}
	applyCmd(t, f, 12, rel(0, "k", "c", 0))
	// Indexes 13-19 were configuration entries: the sequence does not jump.
	if got := tokenOf(*applyCmd(t, f, 20, acq(0, "k", "d", time.Minute))); got != 16 {
		t.Fatalf("token after an index gap = %d, want 16", got)
	}
	applyCmd(t, f, 21, setVersion(1)) // never lowers
	if f.ClusterVersion() != 2 {
		t.Fatalf("OpSetVersion lowered the version to %d", f.ClusterVersion())
	}
	// Restored from a snapshot, the sequence carries on.
	g := New()
	if err := g.Restore(nopCloser{bytes.NewReader(snapshotBytes(t, f))}); err != nil {
		t.Fatal(err)
	}
	for _, m := range []*FSM{f, g} {
		applyCmd(t, m, 22, rel(0, "k", "d", 0))
		if got := tokenOf(*applyCmd(t, m, 23, acq(0, "k", "e", time.Minute))); got != 19 {
			t.Fatalf("token after the restore = %d, want 19", got)
		}
	}
	checkSameState(t, f, g)
}

func TestFSMBatchBeforeVersion2IsRefused(t *testing.T) {
	f := New()
	rs := applyBatch(t, f, 1, batch(acq(0, "a", "o", time.Minute)))
	if len(rs) != 1 || !errors.Is(rs[0].Err, ErrBadCommand) {
		t.Fatalf("results = %+v, want one ErrBadCommand", rs)
	}
	if f.Len() != 0 || f.Halted() != nil {
		t.Fatalf("refused batch changed state (len %d) or halted (%v)", f.Len(), f.Halted())
	}
}

func TestFSMSnapshotFormatFollowsTheVersion(t *testing.T) {
	f := New()
	applyCmd(t, f, 1, Command{Op: OpSetNode, Key: "n1", RESPAddr: "r1", HTTPAddr: "h1"})
	applyCmd(t, f, 2, acq(0, "k", "o", time.Minute))
	formatOf := func(b []byte) uint16 { return binary.BigEndian.Uint16(b[len(snapshotMagic):]) }

	// Under protocol 1 the snapshot stays readable by older builds: format 2.
	v1 := snapshotBytes(t, f)
	if got := formatOf(v1); got != 2 {
		t.Fatalf("protocol 1 snapshot format = %d, want 2", got)
	}
	g := New()
	if err := g.Restore(nopCloser{bytes.NewReader(v1)}); err != nil {
		t.Fatal(err)
	}
	if got := g.Nodes()["n1"]; got.RESP != "r1" || g.ClusterVersion() != 1 {
		t.Fatalf("restored %+v at cluster version %d", got, g.ClusterVersion())
	}
	checkSameState(t, f, g)

	applyCmd(t, f, 3, setVersion(2))
	v2 := snapshotBytes(t, f)
	if got := formatOf(v2); got != 3 {
		t.Fatalf("protocol 2 snapshot format = %d, want 3", got)
	}
	h := New()
	if err := h.Restore(nopCloser{bytes.NewReader(v2)}); err != nil {
		t.Fatal(err)
	}
	if h.Nodes()["n1"].RESP != "r1" || h.ClusterVersion() != 2 {
		t.Fatalf("restored nodes %+v at cluster version %d", h.Nodes(), h.ClusterVersion())
	}
	checkSameState(t, f, h)
	// A replica restored from the format 2 snapshot and one that kept its
	// state reach the same bytes once both apply the raise and a grant.
	for i, m := range []*FSM{f, g} {
		if i == 1 {
			applyCmd(t, m, 3, setVersion(2))
		}
		applyCmd(t, m, 4, acq(0, "k2", "o", time.Minute))
	}
	checkSameState(t, f, g)
}

// TestFSMClusterID: the first raise to protocol version 3 or more that
// carries an id names the cluster, for good; a version 4 snapshot keeps
// it, and one written before the cluster reached version 3 has no room
// for it.
func TestFSMClusterID(t *testing.T) {
	f := New()
	formatOf := func(b []byte) uint16 { return binary.BigEndian.Uint16(b[len(snapshotMagic):]) }
	steps := []struct {
		name    string
		cmd     Command
		version uint64
		id      string
		format  uint16
	}{
		{"a raise to 2 names nothing", Command{Op: OpSetVersion, Token: 2, Key: "early"}, 2, "", 3},
		{"the raise to 3 names the cluster", Command{Op: OpSetVersion, Token: 3, Key: "id-a"}, 3, "id-a", 4},
		{"a later raise keeps the name", Command{Op: OpSetVersion, Token: 3, Key: "id-b"}, 3, "id-a", 4},
		{"so does one without an id", setVersion(3), 3, "id-a", 4},
	}
	for i, s := range steps {
		if r := applyCmd(t, f, uint64(10+i), s.cmd); r.Err != nil {
			t.Fatalf("%s: %v", s.name, r.Err)
		}
		if f.ClusterVersion() != s.version || f.ClusterID() != s.id {
			t.Fatalf("%s: version %d, id %q; want %d, %q", s.name, f.ClusterVersion(), f.ClusterID(), s.version, s.id)
		}
		snap := snapshotBytes(t, f)
		if got := formatOf(snap); got != s.format {
			t.Fatalf("%s: snapshot format %d, want %d", s.name, got, s.format)
		}
		g := New()
		if err := g.Restore(nopCloser{bytes.NewReader(snap)}); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if g.ClusterID() != s.id || g.ClusterVersion() != s.version {
			t.Fatalf("%s: restored id %q at version %d", s.name, g.ClusterID(), g.ClusterVersion())
		}
		checkSameState(t, f, g)
	}
	// A raise in a batch names a cluster that has no name yet.
	h := New()
	applyCmd(t, h, 1, setVersion(2))
	if rs := applyBatch(t, h, 2, batch(acq(0, "k", "o", time.Minute), Command{Op: OpSetVersion, Token: 3, Key: "id-c"})); rs[1].Err != nil {
		t.Fatal(rs[1].Err)
	}
	if h.ClusterID() != "id-c" {
		t.Fatalf("id after a batched raise = %q", h.ClusterID())
	}
}

func TestClusterIDIn(t *testing.T) {
	raise := func(v uint64, id string) Command { return Command{Op: OpSetVersion, Token: v, Key: id} }
	for _, tt := range []struct {
		name string
		data []byte
		want string
	}{
		{"a raise to 3", Encode(nil, raise(3, "id-a")), "id-a"},
		{"a raise past this build (it halts the state machine)", Encode(nil, raise(ProtocolVersion+1, "id-a")), ""},
		{"a raise to 2", Encode(nil, raise(2, "id-a")), ""},
		{"a raise without an id", Encode(nil, raise(3, "")), ""},
		{"an acquire", Encode(nil, acq(0, "id-a", "o", time.Second)), ""},
		{"a batch", batch(acq(0, "k", "o", time.Second), raise(3, ""), raise(3, "id-b"), raise(3, "id-c")), "id-b"},
		{"a batch without a raise", batch(acq(0, "k", "o", time.Second)), ""},
		{"a truncated batch", batch(acq(0, "k", "o", time.Second), raise(3, "id-b"))[:8], ""},
		{"nothing", nil, ""},
	} {
		if got := ClusterIDIn(tt.data); got != tt.want {
			t.Errorf("%s: %q, want %q", tt.name, got, tt.want)
		}
	}
}

// TestClusterIDInMatchesApply: ClusterIDIn names exactly the id that Apply
// sets on a state machine (at version 2) that has none. Entries that every
// replica refuses, or that halt it, set nothing.
func TestClusterIDInMatchesApply(t *testing.T) {
	raise := Command{Op: OpSetVersion, Token: 3, Key: "id-x"}
	good := batch(acq(0, "k", "o", time.Second), raise)
	trailing := append(append([]byte(nil), good...), 0)
	damaged := append(batch(raise), good[len(good)-1:]...) // count says 1, one stray byte
	unknownOp := EncodeBatch(nil, [][]byte{Encode(nil, raise), {commandVersion, byte(lastOp + 1)}})
	for _, tt := range []struct {
		name    string
		version uint64
		data    []byte
	}{
		{"a good batch", 2, good},
		{"a batch with a trailing byte", 2, trailing},
		{"a batch with a stray byte", 2, damaged},
		{"a batch whose next command is newer", 2, unknownOp},
		{"a raise past this build", 2, Encode(nil, Command{Op: OpSetVersion, Token: ProtocolVersion + 1, Key: "id-x"})},
		{"a raise", 2, Encode(nil, raise)},
	} {
		f := New()
		if tt.version >= 2 {
			applyCmd(t, f, 1, setVersion(tt.version))
		}
		f.Apply(&raft.Log{Index: 2, Type: raft.LogCommand, Data: tt.data})
		if got, want := ClusterIDIn(tt.data), f.ClusterID(); got != want {
			t.Errorf("%s: ClusterIDIn = %q, Apply set %q", tt.name, got, want)
		}
	}
}
