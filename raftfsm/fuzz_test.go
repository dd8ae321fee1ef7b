package raftfsm

import (
	"bytes"
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
		if again := Encode(nil, c); !bytes.Equal(again, b) {
			// Varints have one canonical encoding as written by Encode;
			// a non-canonical input may decode, but must then re-decode
			// to the same command.
			c2, err := Decode(again)
			if err != nil || c2 != c {
				t.Fatalf("re-encoding %x gave %x (%+v, %v)", b, again, c2, err)
			}
		}
	})
}

func FuzzApply(f *testing.F) {
	f.Add(Encode(nil, acq(time.Second, "key", "owner", 30*time.Second)), Encode(nil, rel(2*time.Second, "key", "owner", 1)))
	f.Add(Encode(nil, acq(-5, "k", "o", 1<<62)), Encode(nil, exp(1<<63-1)))
	f.Fuzz(func(t *testing.T, a, b []byte) {
		m := New()
		m.Apply(&raft.Log{Index: 1, Data: a})
		m.Apply(&raft.Log{Index: 2, Data: b})
		m.Apply(&raft.Log{Index: 3, Data: Encode(nil, exp(1<<63-1))})
		if m.Len() != 0 {
			t.Fatalf("locks survive the end of time: %+v", m.List())
		}
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
		if !bytes.Equal(out.Bytes(), b) {
			t.Fatalf("accepted snapshot does not round-trip")
		}
	})
}
