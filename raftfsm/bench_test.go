package raftfsm

import (
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

var benchCmd = Command{Op: OpAcquire, Now: 90 * time.Second, Key: "lock:orders:000042",
	Owner: "6f1c2a0e-8a4b-4c7e-9d2f-3b5a7c9e1d00", TTL: 30 * time.Second}

// BenchmarkEncode measures encoding one acquire command into a reused buffer.
func BenchmarkEncode(b *testing.B) {
	var buf []byte
	b.ReportAllocs()
	for range b.N {
		buf = Encode(buf[:0], benchCmd)
	}
}

// BenchmarkEncodeFresh measures encoding one acquire command into a new
// slice, as the server does for every command it proposes.
func BenchmarkEncodeFresh(b *testing.B) {
	b.ReportAllocs()
	for range b.N {
		_ = Encode(nil, benchCmd)
	}
}

// BenchmarkDecode measures decoding one acquire command.
func BenchmarkDecode(b *testing.B) {
	data := Encode(nil, benchCmd)
	b.ReportAllocs()
	for range b.N {
		if _, err := Decode(data); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkApplyCycle measures the state machine's share of one lock
// cycle: an acquire and a release entry applied on an FSM that holds
// 10,000 other locks.
func BenchmarkApplyCycle(b *testing.B) {
	f := New()
	idx := uint64(0)
	for i := range 10_000 {
		idx++
		c := benchCmd
		c.Key = fmt.Sprintf("held:%05d", i)
		f.Apply(&raft.Log{Index: idx, Data: Encode(nil, c)})
	}
	acq := Encode(nil, benchCmd)
	rel := Encode(nil, Command{Op: OpRelease, Now: benchCmd.Now, Key: benchCmd.Key, Owner: benchCmd.Owner})
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		idx++
		if r := f.Apply(&raft.Log{Index: idx, Data: acq}).(*Result); r.Err != nil {
			b.Fatal(r.Err)
		}
		idx++
		if r := f.Apply(&raft.Log{Index: idx, Data: rel}).(*Result); r.Err != nil {
			b.Fatal(r.Err)
		}
	}
}
