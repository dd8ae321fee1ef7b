package raftfsm

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"hash/crc32"
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
	applyCmd(t, f, 8, execCmd(2*time.Second, "HSET", "h", "y", "2", "x", "1"))
	applyCmd(t, f, 9, execCmd(2*time.Second, "SCRIPT", "LOAD", "return 1"))
	got := hex.EncodeToString(snapshotBytes(t, f))
	want := "444c534e41500002" + // magic, version 2
		"0000000000000009" + // applied
		"0000000077359400" + // now = 2s
		"0000000000000003" + // count
		"0161" + "00" + "026f31" + "0000000000000006" + "0000000000000001" + "00000000b2d05e00" + "000000012a05f200" +
		"0162" + "00" + "026f32" + "0000000000000005" + "0000000000000001" + "000000003b9aca00" + "00000000b2d05e00" +
		"0168" + "01" + "00" + "0000000000000008" + "0000000000000001" + "0000000000000000" + "7fffffffffffffff" +
		"02" + "0178" + "0131" + "0179" + "0132" + // hash h: x=1, y=2, in field order
		"0000000000000001" + "026e31" + "0172" + "0168" + // one node: n1, r, h
		"0000000000000001" + "0000000000000001" + // script seq 1, one script
		"28" + hex40("e0e1f9fabfc9d4800c877a703b823ac0578ff8db") + "0872657475726e2031" + "0000000000000001"
	if got[:len(want)] != want || len(got) != len(want)+8 {
		t.Fatalf("snapshot bytes changed:\n got %s\nwant %s + crc", got, want)
	}
}

// hex40 hex-encodes the ASCII of a SHA1 written in hex.
func hex40(s string) string { return hex.EncodeToString([]byte(s)) }

// TestSnapshotVersion1 restores a snapshot written by version 1.
func TestSnapshotVersion1(t *testing.T) {
	body, _ := hex.DecodeString("444c534e415000010000000000000007000000007735940000000000000000020161026f310000000000000006000000000000000100000000b2d05e00000000012a05f2000162026f3200000000000000050000000000000001000000003b9aca0000000000b2d05e000000000000000001026e3101720168")
	crc := crc32.Checksum(body, castagnoli)
	b := binary.BigEndian.AppendUint32(body, crc)
	g := New()
	if err := g.Restore(nopCloser{bytes.NewReader(b)}); err != nil {
		t.Fatal(err)
	}
	if l, ok := g.Get("a"); !ok || l.Owner != "o1" || l.Token != 6 || l.Deadline != 5*time.Second {
		t.Fatalf("restored a = %+v, %v", l, ok)
	}
	if g.AppliedIndex() != 7 || g.Nodes()["n1"].RESP != "r" {
		t.Fatalf("restored applied %d nodes %v", g.AppliedIndex(), g.Nodes())
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
