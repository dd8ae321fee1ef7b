package raftfsm

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/distlock/distlock/lockapi"
)

// step is one command applied at a raft index, with the result expected.
type step struct {
	idx       uint64
	cmd       Command
	wantErr   error
	wantToken uint64 // checked when non-zero
	wantVer   uint64 // checked when non-zero
	wantOwner string // checked when non-empty
}

func acq(now time.Duration, key, owner string, ttl time.Duration) Command {
	return Command{Op: OpAcquire, Now: now, Key: key, Owner: owner, TTL: ttl}
}

func ren(now time.Duration, key, owner string, ttl time.Duration, token uint64) Command {
	return Command{Op: OpRenew, Now: now, Key: key, Owner: owner, TTL: ttl, Token: token}
}

func rel(now time.Duration, key, owner string, token uint64) Command {
	return Command{Op: OpRelease, Now: now, Key: key, Owner: owner, Token: token}
}

func exp(now time.Duration) Command { return Command{Op: OpExpire, Now: now} }

func hand(now time.Duration, key, owner string, token uint64, next string, nextTTL time.Duration) Command {
	return Command{Op: OpHandoff, Now: now, Key: key, Owner: owner, Token: token, NextOwner: next, NextTTL: nextTTL}
}

const s = time.Second

func applyCmd(t *testing.T, f *FSM, idx uint64, c Command) *Result {
	t.Helper()
	res, ok := f.Apply(&raft.Log{Index: idx, Type: raft.LogCommand, Data: Encode(nil, c)}).(*Result)
	if !ok {
		t.Fatalf("Apply returned %T, want *Result", res)
	}
	return res
}

func TestFSMSequences(t *testing.T) {
	tests := []struct {
		name  string
		steps []step
		// after the steps: key -> owner still held ("" = not held)
		held map[string]string
	}{
		{
			name: "grant then held by another",
			steps: []step{
				{idx: 1, cmd: acq(0, "k", "a", 10*s), wantToken: 1, wantVer: 1},
				{idx: 2, cmd: acq(1*s, "k", "b", 10*s), wantErr: lockapi.ErrHeld, wantOwner: "a", wantToken: 1},
			},
			held: map[string]string{"k": "a"},
		},
		{
			name: "same owner re-acquire extends with the same token",
			steps: []step{
				{idx: 3, cmd: acq(0, "k", "a", 10*s), wantToken: 3, wantVer: 1},
				{idx: 4, cmd: acq(9*s, "k", "a", 10*s), wantToken: 3, wantVer: 2},
				{idx: 5, cmd: acq(18*s, "k", "b", 10*s), wantErr: lockapi.ErrHeld},
			},
			held: map[string]string{"k": "a"},
		},
		{
			name: "expiry frees the lock and the next token is larger",
			steps: []step{
				{idx: 1, cmd: acq(0, "k", "a", 10*s), wantToken: 1},
				{idx: 2, cmd: acq(10*s-1, "k", "b", 10*s), wantErr: lockapi.ErrHeld},
				{idx: 3, cmd: acq(10*s, "k", "b", 10*s), wantToken: 3, wantVer: 1},
			},
			held: map[string]string{"k": "b"},
		},
		{
			name: "renew extends and bumps version; token mismatch refused",
			steps: []step{
				{idx: 7, cmd: acq(0, "k", "a", 10*s), wantToken: 7},
				{idx: 8, cmd: ren(5*s, "k", "a", 10*s, 0), wantToken: 7, wantVer: 2},
				{idx: 9, cmd: ren(6*s, "k", "a", 10*s, 7), wantToken: 7, wantVer: 3},
				{idx: 10, cmd: ren(6*s, "k", "a", 10*s, 8), wantErr: lockapi.ErrNotHeld},
				{idx: 11, cmd: ren(6*s, "k", "b", 10*s, 0), wantErr: lockapi.ErrNotHeld},
				{idx: 12, cmd: exp(15 * s)},
			},
			held: map[string]string{"k": "a"},
		},
		{
			name: "renew after expiry is not found",
			steps: []step{
				{idx: 1, cmd: acq(0, "k", "a", 1*s)},
				{idx: 2, cmd: ren(1*s, "k", "a", 10*s, 0), wantErr: lockapi.ErrNotFound},
			},
			held: map[string]string{"k": ""},
		},
		{
			name: "release by owner, by stranger, with tokens",
			steps: []step{
				{idx: 1, cmd: acq(0, "k", "a", 10*s)},
				{idx: 2, cmd: rel(1*s, "k", "b", 0), wantErr: lockapi.ErrNotHeld},
				{idx: 3, cmd: rel(1*s, "k", "a", 2), wantErr: lockapi.ErrNotHeld},
				{idx: 4, cmd: rel(1*s, "k", "a", 1), wantToken: 1},
				{idx: 5, cmd: rel(1*s, "k", "a", 0), wantErr: lockapi.ErrNotFound},
				{idx: 6, cmd: acq(1*s, "k", "b", 10*s), wantToken: 6},
			},
			held: map[string]string{"k": "b"},
		},
		{
			name: "expire entry frees only due locks",
			steps: []step{
				{idx: 1, cmd: acq(0, "short", "a", 1*s)},
				{idx: 2, cmd: acq(0, "long", "a", 100*s)},
				{idx: 3, cmd: exp(2 * s)},
			},
			held: map[string]string{"short": "", "long": "a"},
		},
		{
			name: "cluster time never runs backwards",
			steps: []step{
				{idx: 1, cmd: acq(50*s, "k", "a", 10*s)},
				// A stale timestamp (an older leader's clock) must not
				// shorten or lengthen anything: now stays 50s.
				{idx: 2, cmd: acq(1*s, "k2", "b", 10*s)},
				{idx: 3, cmd: exp(59 * s)},
			},
			held: map[string]string{"k": "a", "k2": "b"},
		},
		{
			name: "zero and negative ttl refused",
			steps: []step{
				{idx: 1, cmd: acq(0, "k", "a", 0), wantErr: lockapi.ErrInvalid},
				{idx: 2, cmd: acq(0, "k", "a", -s), wantErr: lockapi.ErrInvalid},
				{idx: 3, cmd: acq(0, "k", "a", s)},
				{idx: 4, cmd: ren(0, "k", "a", 0, 0), wantErr: lockapi.ErrInvalid},
			},
			held: map[string]string{"k": "a"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := New()
			for i, st := range tt.steps {
				r := applyCmd(t, f, st.idx, st.cmd)
				if !errors.Is(r.Err, st.wantErr) || (st.wantErr == nil && r.Err != nil) {
					t.Fatalf("step %d (%s): err = %v, want %v", i, st.cmd.Op, r.Err, st.wantErr)
				}
				if st.wantToken != 0 && r.Lock.Token != st.wantToken {
					t.Errorf("step %d: token = %d, want %d", i, r.Lock.Token, st.wantToken)
				}
				if st.wantVer != 0 && r.Lock.Version != st.wantVer {
					t.Errorf("step %d: version = %d, want %d", i, r.Lock.Version, st.wantVer)
				}
				if st.wantOwner != "" && r.Lock.Owner != st.wantOwner {
					t.Errorf("step %d: owner = %q, want %q", i, r.Lock.Owner, st.wantOwner)
				}
			}
			for key, owner := range tt.held {
				l, ok := f.Get(key)
				switch {
				case owner == "" && ok:
					t.Errorf("%s held by %q, want free", key, l.Owner)
				case owner != "" && (!ok || l.Owner != owner):
					t.Errorf("%s = %+v (held %v), want owner %q", key, l, ok, owner)
				}
			}
		})
	}
}

// TestFSMHandoff: a handoff releases and grants in one entry; the grant's
// token is the entry's index, nothing is freed in between (OnFree does not
// fire), and a refused release grants nothing.
func TestFSMHandoff(t *testing.T) {
	tests := []struct {
		name      string
		cmd       Command
		wantErr   error
		wantGrant string // owner of the grant, "" for none
		wantHeld  string // owner of k afterwards, "" for free
		wantFreed bool
	}{
		{"owner hands over", hand(s, "k", "a", 0, "b", 5*s), nil, "b", "b", false},
		{"matching token", hand(s, "k", "a", 1, "b", 5*s), nil, "b", "b", false},
		{"wrong token refused", hand(s, "k", "a", 9, "b", 5*s), lockapi.ErrNotHeld, "", "a", false},
		{"stranger refused", hand(s, "k", "x", 0, "b", 5*s), lockapi.ErrNotHeld, "", "a", false},
		{"missing key", hand(s, "nokey", "a", 0, "b", 5*s), lockapi.ErrNotFound, "", "a", false},
		{"bad next ttl only releases", hand(s, "k", "a", 0, "b", 0), nil, "", "", true},
		{"after expiry nothing to hand", hand(20*s, "k", "a", 0, "b", 5*s), lockapi.ErrNotFound, "", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := New()
			var freed []string
			f.OnFree(func(k string) { freed = append(freed, k) })
			applyCmd(t, f, 1, acq(0, "k", "a", 10*s))
			r := applyCmd(t, f, 2, tt.cmd)
			if !errors.Is(r.Err, tt.wantErr) || (tt.wantErr == nil && r.Err != nil) {
				t.Fatalf("err = %v, want %v", r.Err, tt.wantErr)
			}
			if r.Granted.Owner != tt.wantGrant {
				t.Fatalf("granted %+v, want owner %q", r.Granted, tt.wantGrant)
			}
			if tt.wantGrant != "" && (r.Granted.Token != 2 || r.Granted.Version != 1 || r.Granted.TTL != 5*s || r.Lock.Owner != "a") {
				t.Fatalf("grant %+v (released %+v), want token 2, version 1, ttl 5s, released a's lock", r.Granted, r.Lock)
			}
			l, ok := f.Get("k")
			if got := map[bool]string{true: l.Owner}[ok]; got != tt.wantHeld {
				t.Fatalf("k held by %q, want %q", got, tt.wantHeld)
			}
			if (len(freed) > 0) != tt.wantFreed {
				t.Fatalf("freed %v, want freed=%v", freed, tt.wantFreed)
			}
			again, err := Decode(Encode(nil, tt.cmd))
			if err != nil || again.NextOwner != tt.cmd.NextOwner || again.NextTTL != tt.cmd.NextTTL || again.Owner != tt.cmd.Owner {
				t.Fatalf("encode round trip: %+v, %v", again, err)
			}
		})
	}
}

func TestFSMTokensIncreaseAcrossHolders(t *testing.T) {
	f := New()
	var last uint64
	now := time.Duration(0)
	for i := uint64(1); i <= 200; i++ {
		owner := []string{"a", "b", "c"}[i%3]
		now += 300 * time.Millisecond
		r := applyCmd(t, f, i, acq(now, "hot", owner, time.Second))
		if r.Err != nil || r.Extended {
			continue
		}
		if r.Lock.Token <= last {
			t.Fatalf("grant at index %d: token %d not above previous %d", i, r.Lock.Token, last)
		}
		last = r.Lock.Token
	}
	if last == 0 {
		t.Fatal("no grant happened")
	}
}

func TestFSMBadEntriesDoNotPanic(t *testing.T) {
	f := New()
	for i, data := range [][]byte{nil, {}, {1}, {1, 0}, {1, 1, 0xff}, {2}, {2, 0}, {2, 1, 5, 1}} {
		r := f.Apply(&raft.Log{Index: uint64(i + 1), Data: data})
		var err error
		switch r := r.(type) {
		case *Result:
			err = r.Err
		case *BatchResult:
			err = r.Results[0].Err
		}
		if !errors.Is(err, ErrBadCommand) {
			t.Errorf("Apply(%x) err = %v, want ErrBadCommand", data, err)
		}
	}
	if err := f.Halted(); err != nil {
		t.Fatalf("malformed entries halted the state machine: %v", err)
	}
}

func TestFSMNodes(t *testing.T) {
	f := New()
	applyCmd(t, f, 1, Command{Op: OpSetNode, Key: "n1", RESPAddr: "127.0.0.1:6379", HTTPAddr: "127.0.0.1:8001"})
	applyCmd(t, f, 2, Command{Op: OpSetNode, Key: "n2", RESPAddr: "r2", HTTPAddr: "h2"})
	applyCmd(t, f, 3, Command{Op: OpRemoveNode, Key: "n2"})
	got := f.Nodes()
	if len(got) != 1 || got["n1"].RESP != "127.0.0.1:6379" || got["n1"].HTTP != "127.0.0.1:8001" {
		t.Fatalf("Nodes = %+v", got)
	}
	g := New()
	if err := g.Restore(nopCloser{bytes.NewReader(snapshotBytes(t, f))}); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(g.Nodes()) != fmt.Sprint(got) {
		t.Fatalf("restored nodes = %v, want %v", g.Nodes(), got)
	}
}

func TestFSMQueries(t *testing.T) {
	f := New()
	applyCmd(t, f, 1, acq(5*s, "b", "x", 10*s))
	applyCmd(t, f, 2, acq(5*s, "a", "y", 3*s))
	if got := f.Len(); got != 2 {
		t.Errorf("Len = %d, want 2", got)
	}
	list := f.List()
	if len(list) != 2 || list[0].Key != "a" || list[1].Key != "b" {
		t.Errorf("List = %+v, want a then b", list)
	}
	if d, ok := f.NextDeadline(); !ok || d != 8*s {
		t.Errorf("NextDeadline = %v %v, want 8s", d, ok)
	}
	if f.Now() != 5*s || f.AppliedIndex() != 2 {
		t.Errorf("Now, AppliedIndex = %v, %d; want 5s, 2", f.Now(), f.AppliedIndex())
	}
}

// randomLog returns a reproducible mix of commands over a few keys.
func randomLog(seed int64, n int) []Command {
	rng := rand.New(rand.NewSource(seed))
	keys := []string{"a", "b", "c", "d"}
	owners := []string{"o1", "o2", "o3"}
	var now time.Duration
	out := make([]Command, n)
	for i := range out {
		now += time.Duration(rng.Intn(400)) * time.Millisecond
		k, o := keys[rng.Intn(len(keys))], owners[rng.Intn(len(owners))]
		ttl := time.Duration(1+rng.Intn(3000)) * time.Millisecond
		switch rng.Intn(5) {
		case 4:
			out[i] = hand(now, k, o, 0, owners[rng.Intn(len(owners))], ttl)
		case 0:
			out[i] = acq(now, k, o, ttl)
		case 1:
			out[i] = ren(now, k, o, ttl, uint64(rng.Intn(3))*uint64(i)/2)
		case 2:
			out[i] = rel(now, k, o, 0)
		default:
			out[i] = exp(now)
		}
	}
	return out
}

func snapshotBytes(t *testing.T, f *FSM) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := f.WriteSnapshot(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestFSMDeterminism(t *testing.T) {
	for seed := int64(1); seed <= 20; seed++ {
		log := randomLog(seed, 500)
		a, b := New(), New()
		for i, c := range log {
			ra := applyCmd(t, a, uint64(i+1), c)
			rb := applyCmd(t, b, uint64(i+1), c)
			if ra.Lock != rb.Lock || !errors.Is(ra.Err, rb.Err) && ra.Err != rb.Err {
				t.Fatalf("seed %d entry %d: results differ: %+v vs %+v", seed, i+1, ra, rb)
			}
		}
		if !bytes.Equal(snapshotBytes(t, a), snapshotBytes(t, b)) {
			t.Fatalf("seed %d: snapshots differ", seed)
		}
	}
}

// TestFSMSnapshotThenReplay checks that restoring a snapshot taken midway and
// replaying the rest gives the same state as replaying everything.
func TestFSMSnapshotThenReplay(t *testing.T) {
	for seed := int64(1); seed <= 10; seed++ {
		log := randomLog(seed, 400)
		straight := New()
		for i, c := range log {
			applyCmd(t, straight, uint64(i+1), c)
		}
		half := New()
		for i, c := range log[:200] {
			applyCmd(t, half, uint64(i+1), c)
		}
		restored := New()
		applyCmd(t, restored, 1, acq(0, "stale", "state", time.Hour)) // must be discarded
		if err := restored.Restore(nopCloser{bytes.NewReader(snapshotBytes(t, half))}); err != nil {
			t.Fatal(err)
		}
		for i, c := range log[200:] {
			applyCmd(t, restored, uint64(201+i), c)
		}
		if !bytes.Equal(snapshotBytes(t, straight), snapshotBytes(t, restored)) {
			t.Fatalf("seed %d: snapshot+replay differs from straight replay", seed)
		}
	}
}

type nopCloser struct{ *bytes.Reader }

func (nopCloser) Close() error { return nil }

// execCmd is an OpExec of a Redis command at cluster time now, with the
// wall clock at 1_700_000_000_000 ms plus now.
func execCmd(now time.Duration, args ...string) Command {
	return Command{Op: OpExec, Now: now, Wall: 1_700_000_000_000 + now.Milliseconds(), Args: args}
}
