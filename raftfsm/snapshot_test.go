package raftfsm

import (
	"bytes"
	"encoding/hex"
	"errors"
	"testing"
	"time"
)

// TestSnapshotGolden pins the snapshot format: changing it needs a new
// version number, because replicas exchange these bytes.
func TestSnapshotGolden(t *testing.T) {
	f := New()
	applyCmd(t, f, 5, acq(2*time.Second, "b", "o2", time.Second))
	applyCmd(t, f, 6, acq(2*time.Second, "a", "o1", 3*time.Second))
	applyCmd(t, f, 7, Command{Op: OpSetNode, Key: "n1", RESPAddr: "r", HTTPAddr: "h"})
	got := hex.EncodeToString(snapshotBytes(t, f))
	const want = "444c534e41500001" + // magic, version 1
		"0000000000000007" + // applied
		"0000000077359400" + // now = 2s
		"0000000000000002" + // count
		"0161" + "026f31" + "0000000000000006" + "0000000000000001" + "00000000b2d05e00" + "000000012a05f200" +
		"0162" + "026f32" + "0000000000000005" + "0000000000000001" + "000000003b9aca00" + "00000000b2d05e00" +
		"0000000000000001" + "026e31" + "0172" + "0168" // one node: n1, r, h
	if got[:len(want)] != want || len(got) != len(want)+8 {
		t.Fatalf("snapshot bytes changed:\n got %s\nwant %s + crc", got, want)
	}
}

func TestSnapshotRoundTrip(t *testing.T) {
	f := New()
	for i, c := range randomLog(42, 300) {
		applyCmd(t, f, uint64(i+1), c)
	}
	b := snapshotBytes(t, f)
	g := New()
	if err := g.Restore(nopCloser{bytes.NewReader(b)}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, snapshotBytes(t, g)) {
		t.Fatal("restored state writes different bytes")
	}
	if g.Now() != f.Now() || g.AppliedIndex() != f.AppliedIndex() || g.Len() != f.Len() {
		t.Fatalf("restored now/applied/len = %v/%d/%d, want %v/%d/%d",
			g.Now(), g.AppliedIndex(), g.Len(), f.Now(), f.AppliedIndex(), f.Len())
	}
}

func TestSnapshotDamageRefused(t *testing.T) {
	f := New()
	applyCmd(t, f, 1, acq(0, "k", "o", time.Second))
	good := snapshotBytes(t, f)
	flip := append([]byte(nil), good...)
	flip[len(flip)-10] ^= 0x01
	tests := map[string][]byte{
		"empty":       {},
		"bad magic":   append([]byte("XXSNAP"), good[6:]...),
		"truncated":   good[:len(good)-3],
		"flipped bit": flip,
		"trailing":    append(append([]byte(nil), good...), 0),
		"huge count":  append(append(append([]byte(nil), good[:24]...), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff), good[32:]...),
		"bad version": append(append([]byte("DLSNAP"), 0, 9), good[8:]...),
	}
	for name, b := range tests {
		t.Run(name, func(t *testing.T) {
			g := New()
			applyCmd(t, g, 1, acq(0, "keep", "me", time.Hour))
			err := g.Restore(nopCloser{bytes.NewReader(b)})
			if !errors.Is(err, ErrBadSnapshot) {
				t.Fatalf("Restore err = %v, want ErrBadSnapshot", err)
			}
			if _, ok := g.Get("keep"); !ok {
				t.Fatal("a refused snapshot must leave the state untouched")
			}
		})
	}
}
