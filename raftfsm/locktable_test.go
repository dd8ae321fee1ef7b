package raftfsm

import (
	"bufio"
	"bytes"
	"hash/crc32"
	"io"
	"math"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func TestLockTableKeepsEveryField(t *testing.T) {
	h := &Hash{fields: []HashField{{Name: "f", Value: "v"}}}
	locks := []LockState{
		{Key: "a", Owner: "o1", Token: 1, Version: 1, TTL: time.Second, Deadline: 5 * time.Second},
		{Key: "b", Owner: "", Token: math.MaxUint64, Version: math.MaxUint64, TTL: 0, Deadline: noDeadline, Hash: h},
		{Key: "c", Owner: "héllo", Token: 7, Version: 3, TTL: math.MaxInt64, Deadline: noDeadline - 1},
		{Key: "", Owner: "empty key", Token: 2, Version: 1, TTL: time.Millisecond, Deadline: time.Millisecond},
	}
	tab := newLockTable()
	for _, l := range locks {
		tab.Set(l)
	}
	if tab.Len() != len(locks) {
		t.Fatalf("Len %d, want %d", tab.Len(), len(locks))
	}
	for _, want := range locks {
		got, ok := tab.Get(want.Key)
		if !ok || got != want {
			t.Errorf("Get(%q) = %+v, %v; want %+v", want.Key, got, ok, want)
		}
	}
	if got, ok := tab.Get("missing"); ok || got != (LockState{}) {
		t.Errorf("Get(missing) = %+v, %v", got, ok)
	}
	var keys []string
	tab.Scan(func(l LockState) bool {
		keys = append(keys, l.Key)
		return l.Key < "b" // stops after "b"
	})
	if want := []string{"", "a", "b"}; !slices.Equal(keys, want) {
		t.Errorf("Scan visited %q, want %q", keys, want)
	}
}

// lockValue must mirror LockState field for field, Key aside: a field added
// to LockState and not to lockValue (and to valueOf and state) would be
// dropped silently when the lock is stored.
func TestLockValueMirrorsLockState(t *testing.T) {
	st, val := reflect.TypeFor[LockState](), reflect.TypeFor[lockValue]()
	want := map[string]reflect.Type{}
	for f := range st.Fields() {
		if f.Name != "Key" {
			want[f.Name] = f.Type
		}
	}
	got := map[string]reflect.Type{}
	for f := range val.Fields() {
		got[f.Name] = f.Type
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("lockValue fields %v, want LockState's without Key: %v", got, want)
	}
	// Every field survives Set and Get: fill each with a distinct value.
	var l LockState
	v := reflect.ValueOf(&l).Elem()
	for i := range v.NumField() {
		switch f := v.Field(i); f.Kind() {
		case reflect.String:
			f.SetString(st.Field(i).Name)
		case reflect.Uint64:
			f.SetUint(uint64(i + 1))
		case reflect.Int64:
			f.SetInt(int64(i + 100))
		case reflect.Pointer:
			f.Set(reflect.New(f.Type().Elem()))
		default:
			t.Fatalf("field %s of kind %s: extend this test", st.Field(i).Name, f.Kind())
		}
	}
	tab := newLockTable()
	tab.Set(l)
	if got, ok := tab.Get(l.Key); !ok || got != l {
		t.Fatalf("stored %+v, got back %+v", l, got)
	}
}

func TestLockTableCopyIsIsolated(t *testing.T) {
	tab := newLockTable()
	tab.Set(LockState{Key: "k", Owner: "before", Token: 1, Version: 1, TTL: time.Second, Deadline: time.Second})
	tab.Set(LockState{Key: "gone", Owner: "x", Token: 2, Version: 1, TTL: time.Second, Deadline: time.Second})
	snap := tab.Copy()
	tab.Set(LockState{Key: "k", Owner: "after", Token: 3, Version: 1, TTL: time.Second, Deadline: time.Second})
	tab.Delete("gone")
	tab.Set(LockState{Key: "new", Owner: "y", Token: 4, Version: 1, TTL: time.Second, Deadline: time.Second})
	if l, _ := snap.Get("k"); l.Owner != "before" || l.Token != 1 {
		t.Errorf("the copy saw a later Set: %+v", l)
	}
	if _, ok := snap.Get("gone"); !ok || snap.Len() != 2 {
		t.Errorf("the copy saw a later Delete or Set: len %d", snap.Len())
	}
	if l, _ := tab.Get("k"); l.Owner != "after" || tab.Len() != 2 {
		t.Errorf("the table lost its own change: %+v, len %d", l, tab.Len())
	}
}

// A command's key and owner, and a restored lock's, share one allocation;
// a lock's key is not stored twice. Together that took a million locks
// from 320 to 257 bytes each on the heap (BenchmarkApply1M).
func TestKeyAndOwnerShareOneAllocation(t *testing.T) {
	data := Encode(nil, benchCmd)
	if allocs := testing.AllocsPerRun(20, func() {
		if _, err := Decode(data); err != nil {
			t.Fatal(err)
		}
	}); allocs != 1 {
		t.Errorf("Decode of an acquire: %v allocations, want 1", allocs)
	}

	f := New()
	f.Apply(&raft.Log{Index: 1, Type: raft.LogCommand, Data: data})
	var buf bytes.Buffer
	if err := f.WriteSnapshot(&buf); err != nil {
		t.Fatal(err)
	}
	g := New()
	if err := g.Restore(io.NopCloser(bytes.NewReader(buf.Bytes()))); err != nil {
		t.Fatal(err)
	}
	want, _ := f.Get(benchCmd.Key)
	if got, ok := g.Get(benchCmd.Key); !ok || got != want {
		t.Fatalf("restored %+v, want %+v", got, want)
	}
	// Reading one lock from the snapshot: one string for key and owner.
	rec := appendLock(nil, want)
	var rd bytes.Reader
	br := &crcReader{r: bufio.NewReader(&rd), crc: crc32.New(castagnoli)}
	allocs := testing.AllocsPerRun(20, func() {
		rd.Reset(rec)
		br.r.Reset(&rd)
		if got, err := readLock(br, snapshotVersion); err != nil || got != want {
			t.Fatalf("readLock = %+v, %v; want %+v", got, err, want)
		}
	})
	if allocs != 1 {
		t.Errorf("readLock: %v allocations, want 1", allocs)
	}
}
