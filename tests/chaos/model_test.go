//go:build unix

package chaos

import (
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// TestLockModel checks the porcupine lock model and the offline checkers on
// small hand-written histories (times in ms, TTL 1s).
func TestLockModel(t *testing.T) {
	const ttl = time.Second
	ms := func(v int64) int64 { return v * int64(time.Millisecond) }
	acq := func(c int, call, ret int64, out Outcome, tok uint64) Op {
		return Op{Client: c, Owner: ownerOf(c), Key: "k", Kind: KindAcquire, TTL: ttl, Call: ms(call), Return: ms(ret), Outcome: out, Token: tok}
	}
	renew := func(c int, call, ret int64, out Outcome, tok uint64) Op {
		return Op{Client: c, Owner: ownerOf(c), Key: "k", Kind: KindRenew, TTL: ttl, ArgToken: tok, Call: ms(call), Return: ms(ret), Outcome: out, Token: tok}
	}
	rel := func(c int, call, ret int64, out Outcome, tok uint64) Op {
		return Op{Client: c, Owner: ownerOf(c), Key: "k", Kind: KindRelease, ArgToken: tok, Call: ms(call), Return: ms(ret), Outcome: out}
	}
	info := func(c int, call, ret int64, holder int, tok uint64) Op {
		op := Op{Client: c, Owner: ownerOf(c), Key: "k", Kind: KindInfo, Call: ms(call), Return: ms(ret), Outcome: OK, Token: tok}
		if holder >= 0 {
			op.Holder = ownerOf(holder)
		}
		return op
	}
	tests := []struct {
		name      string
		ops       []Op
		wantLin   bool
		wantMutex bool // mutex and token checkers pass
	}{
		{"valid", []Op{
			acq(0, 0, 10, OK, 5), acq(1, 20, 30, Fail, 0), renew(0, 40, 50, OK, 5),
			info(2, 60, 70, 0, 5), rel(0, 80, 90, OK, 5), acq(1, 100, 110, OK, 9), info(2, 120, 130, 1, 9),
		}, true, true},
		{"double grant within the lease", []Op{
			acq(0, 0, 10, OK, 5), acq(1, 500, 510, OK, 9),
		}, false, false},
		{"grant after the lease ran out", []Op{
			acq(0, 0, 10, OK, 5), acq(1, 1000, 1010, OK, 9),
		}, true, true},
		{"renewed lease keeps others out", []Op{
			acq(0, 0, 10, OK, 5), renew(0, 800, 810, OK, 5), acq(1, 1200, 1210, OK, 9),
		}, false, false},
		{"token going backwards", []Op{
			acq(0, 0, 10, OK, 9), rel(0, 20, 30, OK, 9), acq(1, 40, 50, OK, 5),
		}, false, false},
		{"stale read of an old holder", []Op{
			acq(0, 0, 10, OK, 5), rel(0, 20, 30, OK, 5), acq(1, 40, 50, OK, 9), info(2, 60, 70, 0, 5),
		}, false, false},
		{"read says free while held", []Op{
			acq(0, 0, 10, OK, 5), info(2, 60, 70, -1, 0),
		}, false, false},
		{"timed-out acquire may have taken effect", []Op{
			acq(0, 0, 2000, Unknown, 0), info(2, 100, 110, 0, 7), acq(1, 1200, 1210, OK, 9),
		}, true, true},
		{"unknown release may have taken effect", []Op{
			acq(0, 0, 10, OK, 5), rel(0, 20, 30, Unknown, 5), acq(1, 40, 50, OK, 9),
		}, true, true},
		{"late grant of a timed-out acquire", []Op{
			acq(0, 0, 3000, Unknown, 0), acq(1, 10, 20, OK, 5), rel(1, 30, 40, OK, 5), info(2, 50, 60, 0, 9),
		}, true, true},
		{"late effect of an unknown release", []Op{
			acq(0, 0, 10, OK, 5), rel(0, 20, 3000, Unknown, 5), info(2, 30, 40, 0, 5), info(2, 50, 60, -1, 0),
		}, true, true},
		{"an unknown release cannot free a newer grant", []Op{
			acq(0, 0, 10, OK, 5), rel(0, 20, 3000, Unknown, 5), acq(1, 2000, 2010, OK, 9), info(2, 2100, 2110, -1, 0),
		}, false, false},
		{"NOTHELD while the lease runs", []Op{
			acq(0, 0, 10, OK, 5), renew(0, 100, 110, Fail, 5),
		}, false, true},
		{"expiry cannot come before the lease end", []Op{
			// the free read forces expiry at >= 1000ms, so the renew that
			// returned at 900ms cannot come after it
			acq(0, 0, 10, OK, 5), info(2, 850, 1100, -1, 0), renew(0, 880, 900, Fail, 5),
		}, false, true},
	}
	owners := map[string]int{}
	for c := 0; c < 3; c++ {
		owners[ownerOf(c)] = c
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for i := range tc.ops {
				tc.ops[i].ID = i
				if tc.ops[i].Outcome == Unknown {
					tc.ops[i].Return = 0
				}
			}
			res := porcupine.CheckOperationsTimeout(lockModel(), toPorcupine(tc.ops, owners), 5*time.Second)
			if (res == porcupine.Ok) != tc.wantLin {
				t.Errorf("porcupine = %s, want linearizable = %v", res, tc.wantLin)
			}
			rep := &Report{}
			checkMutex(tenures(tc.ops), rep)
			checkReads(tc.ops, tenures(tc.ops), rep)
			checkTokens(tc.ops, rep)
			if rep.Failed() == tc.wantMutex {
				t.Errorf("mutex/token checkers: violations %v, want pass = %v", rep.Violations, tc.wantMutex)
			}
		})
	}
}

func ownerOf(c int) string { return string(rune('a' + c)) }

// TestCheckResource checks the fenced-resource checker on hand-written
// access logs.
func TestCheckResource(t *testing.T) {
	tests := []struct {
		name string
		acc  []Access
		want bool // violations expected
	}{
		{"clean handover", []Access{
			{Key: "k", Client: 0, Token: 5, Accepted: true, At: 1, LeaseEnd: 100},
			{Key: "k", Client: 0, Token: 5, Write: true, Accepted: true, Base: 0, Before: 0, At: 2, LeaseEnd: 100},
			{Key: "k", Client: 1, Token: 9, Accepted: true, Before: 1, At: 150, LeaseEnd: 300},
			{Key: "k", Client: 1, Token: 9, Write: true, Accepted: true, Base: 1, Before: 1, At: 151, LeaseEnd: 300},
		}, false},
		{"stale write turned away", []Access{
			{Key: "k", Client: 0, Token: 5, Accepted: true, At: 1, LeaseEnd: 100},
			{Key: "k", Client: 1, Token: 9, Accepted: true, At: 150, LeaseEnd: 300},
			{Key: "k", Client: 0, Token: 5, Write: true, Stale: true, MaxBefore: 9, At: 160, LeaseEnd: 100},
		}, false},
		{"stale write accepted after a newer holder", []Access{
			{Key: "k", Client: 0, Token: 5, Accepted: true, At: 1, LeaseEnd: 100},
			{Key: "k", Client: 1, Token: 4, Accepted: true, At: 150, LeaseEnd: 300},
			{Key: "k", Client: 0, Token: 5, Write: true, Stale: true, Accepted: true, At: 160, LeaseEnd: 100},
		}, true},
		{"holder refused within its lease", []Access{
			{Key: "k", Client: 0, Token: 9, Accepted: true, At: 1, LeaseEnd: 100},
			{Key: "k", Client: 1, Token: 5, MaxBefore: 9, At: 50, LeaseEnd: 300},
		}, true},
		{"lost update", []Access{
			{Key: "k", Client: 0, Token: 5, Write: true, Accepted: true, Base: 0, Before: 3, At: 2, LeaseEnd: 100},
		}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rep := &Report{}
			checkResource(tc.acc, rep)
			if rep.Failed() != tc.want {
				t.Errorf("violations %v, want some = %v", rep.Violations, tc.want)
			}
		})
	}
}
