package server

import (
	"errors"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/distlock/distlock/lockapi"
	"github.com/distlock/distlock/raftfsm"
)

// fakeApplyFuture is a raft.ApplyFuture that has already answered.
type fakeApplyFuture struct {
	resp interface{}
	err  error
}

func (f fakeApplyFuture) Error() error          { return f.err }
func (f fakeApplyFuture) Index() uint64         { return 7 }
func (f fakeApplyFuture) Response() interface{} { return f.resp }

func TestAnswerHandsOutResults(t *testing.T) {
	newBatch := func(n int) []*proposal {
		b := make([]*proposal, n)
		for i := range b {
			b[i] = &proposal{done: make(chan struct{})}
		}
		return b
	}
	lock := func(token uint64) raftfsm.Result { return raftfsm.Result{Lock: raftfsm.LockState{Token: token}} }
	refused := raftfsm.Result{Err: raftfsm.ErrBadCommand}
	tests := []struct {
		name    string
		n       int
		future  fakeApplyFuture
		want    []uint64 // tokens, in order
		wantErr error
	}{
		{"single", 1, fakeApplyFuture{resp: &raftfsm.Result{Lock: raftfsm.LockState{Token: 5}}}, []uint64{5}, nil},
		{"batch", 3, fakeApplyFuture{resp: &raftfsm.BatchResult{Results: []raftfsm.Result{lock(8), lock(9), lock(10)}}}, []uint64{8, 9, 10}, nil},
		{"batch refused whole", 2, fakeApplyFuture{resp: &raftfsm.BatchResult{Results: []raftfsm.Result{refused}}}, []uint64{0, 0}, raftfsm.ErrBadCommand},
		{"raft error", 2, fakeApplyFuture{err: lockapi.ErrUnknownOutcome}, []uint64{0, 0}, lockapi.ErrUnknownOutcome},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			batch := newBatch(tt.n)
			answer(batch, tt.future, tt.future.err)
			for i, p := range batch {
				<-p.done
				err := p.err
				if err == nil {
					err = p.res.Err
				}
				if p.res.Lock.Token != tt.want[i] || !errors.Is(err, tt.wantErr) {
					t.Errorf("proposal %d: token %d, err %v; want %d, %v", i, p.res.Lock.Token, err, tt.want[i], tt.wantErr)
				}
			}
			// raft's log cache keeps the future, and so the response, of
			// recent entries: the batch's results must not stay reachable.
			if r, ok := tt.future.resp.(*raftfsm.BatchResult); ok && r.Results != nil {
				t.Error("the batch's results are still held by the future's response")
			}
		})
	}
}

// A proposal's early hook (applyNotify) hears apply's outcome once, from
// the goroutine that answers the entry, before the caller is woken.
func TestEarlyHearsTheOutcomeBeforeDone(t *testing.T) {
	tests := []struct {
		name    string
		future  fakeApplyFuture
		token   uint64
		wantErr error
	}{
		{"granted", fakeApplyFuture{resp: &raftfsm.Result{Lock: raftfsm.LockState{Token: 5}}}, 5, nil},
		{"refused", fakeApplyFuture{resp: &raftfsm.Result{Err: lockapi.ErrNotHeld}}, 0, lockapi.ErrNotHeld},
		{"raft error", fakeApplyFuture{err: raft.ErrLeadershipLost}, 0, lockapi.ErrUnknownOutcome},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &proposal{done: make(chan struct{})}
			calls := 0
			p.notifyEarly(func(res raftfsm.Result, err error) {
				calls++
				select {
				case <-p.done:
					t.Error("early was called after done was closed")
				default:
				}
				if res.Lock.Token != tt.token || !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
					t.Errorf("early heard token %d, %v; want %d, %v", res.Lock.Token, err, tt.token, tt.wantErr)
				}
			})
			answer([]*proposal{p}, tt.future, tt.future.err)
			<-p.done
			if calls != 1 {
				t.Fatalf("early called %d times, want once", calls)
			}
			if res, err := outcome(p.res, p.err); res.Lock.Token != tt.token || !errors.Is(err, tt.wantErr) {
				t.Fatalf("the caller's outcome %d, %v differs from early's", res.Lock.Token, err)
			}
		})
	}
}

func TestOutcome(t *testing.T) {
	held := raftfsm.Result{Lock: raftfsm.LockState{Owner: "other", Token: 3}, Err: lockapi.ErrHeld}
	tests := []struct {
		name      string
		res       raftfsm.Result
		err       error
		want      error
		wantOwner string
	}{
		{"granted", raftfsm.Result{Lock: raftfsm.LockState{Owner: "me", Token: 9}}, nil, nil, "me"},
		{"refused by the state machine", held, nil, lockapi.ErrHeld, "other"},
		{"never submitted: closing", raftfsm.Result{}, lockapi.ErrShuttingDown, lockapi.ErrShuttingDown, ""},
		{"never submitted: deadline", raftfsm.Result{}, lockapi.ErrTimeout, lockapi.ErrTimeout, ""},
		{"not the leader", raftfsm.Result{}, raft.ErrNotLeader, lockapi.ErrNoLeader, ""},
		{"leadership lost in flight", raftfsm.Result{}, raft.ErrLeadershipLost, lockapi.ErrUnknownOutcome, ""},
		{"committed but this node halted", raftfsm.Result{Err: raftfsm.ErrHalted}, nil, lockapi.ErrUnknownOutcome, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := outcome(tt.res, tt.err)
			if !errors.Is(err, tt.want) || (tt.want == nil && err != nil) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if res.Lock.Owner != tt.wantOwner {
				t.Fatalf("result owner %q, want %q", res.Lock.Owner, tt.wantOwner)
			}
		})
	}
}
