package walstore

import (
	"bytes"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	raftbench "github.com/hashicorp/raft/bench"
)

// The benchmarks compare this store (fsync on, the production setting) with
// raft-boltdb/v2 in the same run. Both stores live in b.TempDir().
//
// raft-boltdb v2.3.1 does not build next to raft v1.8.0 (it imports
// go-metrics/compat, which go-metrics v0.7.0 removed), so v2.3.0 is used: the
// same bbolt + msgpack store.

func benchWal(b *testing.B) *Store { return openT(b, b.TempDir(), nil) }

func benchBolt(b *testing.B) *raftboltdb.BoltStore {
	b.Helper()
	s, err := raftboltdb.NewBoltStore(filepath.Join(b.TempDir(), "raft.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

func BenchmarkWal_FirstIndex(b *testing.B)  { raftbench.FirstIndex(b, benchWal(b)) }
func BenchmarkWal_LastIndex(b *testing.B)   { raftbench.LastIndex(b, benchWal(b)) }
func BenchmarkWal_GetLog(b *testing.B)      { raftbench.GetLog(b, benchWal(b)) }
func BenchmarkWal_StoreLog(b *testing.B)    { raftbench.StoreLog(b, benchWal(b)) }
func BenchmarkWal_StoreLogs(b *testing.B)   { raftbench.StoreLogs(b, benchWal(b)) }
func BenchmarkWal_DeleteRange(b *testing.B) { deleteRangeContiguous(b, benchWal(b)) }
func BenchmarkWal_Set(b *testing.B)         { raftbench.Set(b, benchWal(b)) }
func BenchmarkWal_Get(b *testing.B)         { raftbench.Get(b, benchWal(b)) }
func BenchmarkWal_SetUint64(b *testing.B)   { raftbench.SetUint64(b, benchWal(b)) }
func BenchmarkWal_GetUint64(b *testing.B)   { raftbench.GetUint64(b, benchWal(b)) }

func BenchmarkBolt_FirstIndex(b *testing.B)  { raftbench.FirstIndex(b, benchBolt(b)) }
func BenchmarkBolt_LastIndex(b *testing.B)   { raftbench.LastIndex(b, benchBolt(b)) }
func BenchmarkBolt_GetLog(b *testing.B)      { raftbench.GetLog(b, benchBolt(b)) }
func BenchmarkBolt_StoreLog(b *testing.B)    { raftbench.StoreLog(b, benchBolt(b)) }
func BenchmarkBolt_StoreLogs(b *testing.B)   { raftbench.StoreLogs(b, benchBolt(b)) }
func BenchmarkBolt_DeleteRange(b *testing.B) { deleteRangeContiguous(b, benchBolt(b)) }
func BenchmarkBolt_Set(b *testing.B)         { raftbench.Set(b, benchBolt(b)) }
func BenchmarkBolt_Get(b *testing.B)         { raftbench.Get(b, benchBolt(b)) }
func BenchmarkBolt_SetUint64(b *testing.B)   { raftbench.SetUint64(b, benchBolt(b)) }
func BenchmarkBolt_GetUint64(b *testing.B)   { raftbench.GetUint64(b, benchBolt(b)) }

// BenchmarkBolt_DeleteRangeRaftbench is raftbench.DeleteRange itself. It
// stores indexes with gaps (0-2, 10-12, ...), which a monotonic store
// rightly refuses, so only bolt runs it; deleteRangeContiguous is the
// comparable variant.
func BenchmarkBolt_DeleteRangeRaftbench(b *testing.B) { raftbench.DeleteRange(b, benchBolt(b)) }

// deleteRangeContiguous is raftbench.DeleteRange without gaps: 10 entries
// per iteration, then each iteration deletes the oldest 10 (a compaction).
func deleteRangeContiguous(b *testing.B, store raft.LogStore) {
	logs := make([]*raft.Log, 0, 10*b.N)
	for i := range 10 * b.N {
		logs = append(logs, &raft.Log{Index: uint64(i + 1), Data: []byte("data")})
	}
	if err := store.StoreLogs(logs); err != nil {
		b.Fatalf("err: %s", err)
	}
	b.ResetTimer()
	for n := range b.N {
		if err := store.DeleteRange(uint64(10*n+1), uint64(10*n+10)); err != nil {
			b.Fatalf("err: %s", err)
		}
	}
}

// BenchmarkStoreLogs appends batches of 128-byte entries with fsync on and
// reports entries/s and fsyncs per batch. Our fsyncs are counted; bbolt
// issues two fdatasyncs per commit (dirty pages, then the meta page; bbolt
// tx.go Commit), which is reported as a constant.
func BenchmarkStoreLogs(b *testing.B) {
	data := bytes.Repeat([]byte("x"), 128)
	type store struct {
		name string
		open func(b *testing.B) (raft.LogStore, func() float64)
	}
	stores := []store{
		{"wal", func(b *testing.B) (raft.LogStore, func() float64) {
			s := benchWal(b)
			start := s.syncCount()
			return s, func() float64 { return float64(s.syncCount() - start) }
		}},
		{"bolt", func(b *testing.B) (raft.LogStore, func() float64) {
			return benchBolt(b), func() float64 { return 2 * float64(b.N) }
		}},
	}
	for _, st := range stores {
		for _, batch := range []int{1, 16, 64} {
			b.Run(fmt.Sprintf("store=%s/batch=%d", st.name, batch), func(b *testing.B) {
				s, syncs := st.open(b)
				logs := make([]*raft.Log, batch)
				for i := range logs {
					logs[i] = &raft.Log{Term: 1, Type: raft.LogCommand, Data: data}
				}
				next := uint64(1)
				b.ReportAllocs()
				b.ResetTimer()
				for range b.N {
					for i, l := range logs {
						l.Index = next + uint64(i)
					}
					if err := s.StoreLogs(logs); err != nil {
						b.Fatal(err)
					}
					next += uint64(batch)
				}
				b.StopTimer()
				b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "entries/s")
				b.ReportMetric(syncs()/float64(b.N), "fsyncs/batch")
			})
		}
	}
}
