package raftfsm

import (
	"bytes"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func FuzzDecode(f *testing.F) {
	f.Add(Encode(nil, acq(time.Second, "key", "owner", 30*time.Second)))
	f.Add(Encode(nil, ren(0, "k", "o", time.Millisecond, 77)))
	f.Add(Encode(nil, exp(1<<62)))
	f.Add([]byte{1, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := Decode(b)
		if err != nil {
			return
		}
		again := Encode(nil, c)
		if len(again) > encodedSizeBound(c) {
			t.Fatalf("%+v encodes to %d bytes, over its bound %d", c, len(again), encodedSizeBound(c))
		}
		if !bytes.Equal(again, b) {
			// Varints have one canonical encoding as written by Encode;
			// a non-canonical input may decode, but must then re-decode
			// to the same command.
			c2, err := Decode(again)
			if err != nil || !reflect.DeepEqual(c2, c) {
				t.Fatalf("re-encoding %x gave %x (%+v, %v)", b, again, c2, err)
			}
		}
	})
}

// FuzzDecodeBatch: a batch that decodes re-encodes to a batch that decodes
// to the same commands.
func FuzzDecodeBatch(f *testing.F) {
	f.Add(batch(acq(time.Second, "key", "owner", 30*time.Second), rel(2*time.Second, "key", "owner", 9)))
	f.Add(batch(execCmd(0, "SET", "k", "v", "PX", "100"), setVersion(2)))
	f.Add([]byte{batchVersion, 2, 3, 1, 4, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		cmds, err := DecodeBatch(b)
		if err != nil {
			return
		}
		enc := make([][]byte, len(cmds))
		for i, c := range cmds {
			enc[i] = Encode(nil, c)
		}
		again, err := DecodeBatch(EncodeBatch(nil, enc))
		if err != nil || !reflect.DeepEqual(again, cmds) {
			t.Fatalf("re-encoding %x: %+v, %v", b, again, err)
		}
	})
}

func FuzzApply(f *testing.F) {
	f.Add(Encode(nil, setVersion(2)), batch(acq(time.Second, "key", "owner", 30*time.Second), rel(2*time.Second, "key", "owner", 0)))
	f.Add(batch(acq(0, "k", "o", time.Second)), Encode(nil, setVersion(3)))
	f.Add(Encode(nil, acq(time.Second, "key", "owner", 30*time.Second)), Encode(nil, rel(2*time.Second, "key", "owner", 1)))
	f.Add(Encode(nil, acq(-5, "k", "o", 1<<62)), Encode(nil, exp(1<<63-1)))
	f.Add(Encode(nil, execCmd(0, "SET", "k", "v", "PX", "100")), Encode(nil, execCmd(time.Second, "HSET", "k", "f", "1")))
	f.Add(Encode(nil, execCmd(0, "EVAL", "return redis.call('set', KEYS[1], ARGV[1])", "1", "k", "v")), Encode(nil, acq(0, "k", "v", time.Second)))
	f.Fuzz(func(t *testing.T, a, b []byte) {
		m, n := New(), New()
		for _, fsm := range []*FSM{m, n} {
			fsm.Apply(&raft.Log{Index: 1, Data: a})
			fsm.Apply(&raft.Log{Index: 2, Data: b})
			fsm.Apply(&raft.Log{Index: 3, Data: Encode(nil, exp(1<<63-1))})
		}
		if m.Halted() != nil || n.Halted() != nil {
			if fmt.Sprint(m.Halted()) != fmt.Sprint(n.Halted()) {
				t.Fatalf("replicas halted differently: %v / %v", m.Halted(), n.Halted())
			}
			return // halted on an entry of a newer format: stopped, not diverged
		}
		for _, l := range m.List() {
			if l.HasTTL() {
				t.Fatalf("a key with a TTL survives the end of time: %+v", l)
			}
		}
		checkSameState(t, m, n)
	})
}

// checkSameState fails unless two state machines write the same snapshot,
// and that snapshot restores to the same bytes.
func checkSameState(t *testing.T, a, b *FSM) {
	t.Helper()
	sa, sb := snapshotBytes(t, a), snapshotBytes(t, b)
	if !bytes.Equal(sa, sb) {
		t.Fatal("replicas diverged")
	}
	g := New()
	if err := g.Restore(nopCloser{bytes.NewReader(sa)}); err != nil {
		t.Fatalf("own snapshot refused: %v", err)
	}
	if !bytes.Equal(snapshotBytes(t, g), sa) {
		t.Fatal("snapshot does not round-trip")
	}
}

// FuzzEngine runs random argument vectors (data split at NUL bytes) as
// replicated commands, after a fixed setup, on two state machines: nothing
// panics, both reply the same and reach the same state.
func FuzzEngine(f *testing.F) {
	for _, seed := range []string{
		"SET\x00k\x00v\x00NX\x00PX\x0030000", "set\x00s\x00v\x00keepttl\x00get", "PEXPIRE\x00k\x00-1\x00GT",
		"HINCRBY\x00h\x00f\x009223372036854775807", "GETRANGE\x00s\x00-100\x00100", "MSETNX\x00a\x00b\x00c",
		"EVAL\x00return redis.call('del', KEYS[1])\x001\x00k", "EVALSHA\x00e950836ed1e694540c503ef9972b8de518044d3b\x001\x00k\x00v",
		"SCRIPT\x00LOAD\x00return 1", "SET\x00k\x00v\x00PXAT\x009223372036854775807", "EXPIRE\x00k\x00-9223372036854775808",
	} {
		f.Add([]byte(seed), uint16(100))
	}
	f.Fuzz(func(t *testing.T, data []byte, dt uint16) {
		args := strings.Split(string(data), "\x00")
		if len(args) > 64 {
			args = args[:64]
		}
		a, b := New(), New()
		for _, m := range []*FSM{a, b} {
			setupEngine(t, m)
		}
		now := 10*time.Second + time.Duration(dt)*time.Millisecond
		va := a.Apply(&raft.Log{Index: 10, Data: Encode(nil, execCmd(now, args...))}).(*Result)
		vb := b.Apply(&raft.Log{Index: 10, Data: Encode(nil, execCmd(now, args...))}).(*Result)
		if va.Reply.String() != vb.Reply.String() {
			t.Fatalf("%q: replies differ: %v / %v", args, va.Reply, vb.Reply)
		}
		_ = a.Read(args, now+time.Second, 0)
		checkSameState(t, a, b)
	})
}

// setupEngine gives a state machine a string key with a TTL, one without,
// a hash, a lock and a cached script.
func setupEngine(t *testing.T, m *FSM) {
	for i, c := range []Command{
		execCmd(0, "SET", "k", "v", "PX", "30000"), execCmd(0, "SET", "s", "hello"),
		execCmd(0, "HSET", "h", "f", "1", "g", "x"), acq(0, "lock", "owner", time.Minute),
		execCmd(0, "SCRIPT", "LOAD", "return {KEYS[1], ARGV[1], redis.call('get', KEYS[1])}"),
	} {
		m.Apply(&raft.Log{Index: uint64(i + 1), Data: Encode(nil, c)})
	}
}

// FuzzScript runs random script bodies with EVAL on two state machines:
// nothing panics, both reply the same and reach the same state.
func FuzzScript(f *testing.F) {
	for _, seed := range []string{
		"return redis.call('get', KEYS[1])", "return {1, 2.5, 'x', true, false, {err='e'}}",
		"local t = {} for i = 1, 100 do t[i] = math.random(i) end return t",
		"redis.call('set', KEYS[1], ARGV[1], 'PX', 100) return redis.call('pttl', KEYS[1])",
		"return redis.pcall('hincrby', 'h', 'g', 1)", "while true do end", "local s = 'x' for i = 1, 30 do s = s .. s end return #s",
		"return tostring(print)", "error({err='X y'})", "return string.format('%d %s %5.2f', 1, 'a', 2.5)",
		"local a = setmetatable({}, {__index = function(t, k) return t[k] end}) return a.x",
		"return redis.call('eval', 'return 1', 0)", "return table.concat({1, 2, 3}, ',')",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, body string) {
		a, b := New(), New()
		for _, m := range []*FSM{a, b} {
			setupEngine(t, m)
		}
		c := execCmd(time.Second, "EVAL", body, "1", "k", "arg")
		va := a.Apply(&raft.Log{Index: 10, Data: Encode(nil, c)}).(*Result)
		vb := b.Apply(&raft.Log{Index: 10, Data: Encode(nil, c)}).(*Result)
		if va.Reply.String() != vb.Reply.String() {
			t.Fatalf("%q: replies differ: %v / %v", body, va.Reply, vb.Reply)
		}
		checkSameState(t, a, b)
	})
}

func FuzzRestore(f *testing.F) {
	m := New()
	m.Apply(&raft.Log{Index: 1, Data: Encode(nil, acq(0, "k", "o", time.Second))})
	var buf bytes.Buffer
	if err := m.WriteSnapshot(&buf); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())
	f.Add([]byte("DLSNAP"))
	f.Fuzz(func(t *testing.T, b []byte) {
		g := New()
		if err := g.Restore(nopCloser{bytes.NewReader(b)}); err != nil {
			return
		}
		var out bytes.Buffer
		if err := g.WriteSnapshot(&out); err != nil {
			t.Fatal(err)
		}
		if len(b) > 7 && b[7] == 1 {
			return // version 1 is rewritten as version 2
		}
		if !bytes.Equal(out.Bytes(), b) {
			t.Fatalf("accepted snapshot does not round-trip")
		}
	})
}
