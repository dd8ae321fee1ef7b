package resp

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/distlock/distlock/lockapi"
)

// fakeService is a lockapi.Service whose methods call the function fields;
// a nil field fails the call.
type fakeService struct {
	acquireFn     func(ctx context.Context, req lockapi.AcquireRequest) (lockapi.Lock, error)
	renewFn       func(ctx context.Context, req lockapi.RenewRequest) (lockapi.Lock, error)
	releaseFn     func(ctx context.Context, req lockapi.ReleaseRequest) error
	infoFn        func(ctx context.Context, key string) (lockapi.Lock, error)
	listFn        func(ctx context.Context) ([]lockapi.Lock, error)
	clusterInfoFn func(ctx context.Context) (lockapi.ClusterInfo, error)
	doFn          func(ctx context.Context, argv [][]byte) (lockapi.Value, error)
}

var (
	_ lockapi.Service    = (*fakeService)(nil)
	_ lockapi.KeyService = (*fakeService)(nil)
)

func (f *fakeService) Do(ctx context.Context, argv [][]byte) (lockapi.Value, error) {
	if f.doFn == nil {
		return lockapi.Value{}, errNotImplemented
	}
	return f.doFn(ctx, argv)
}

func (f *fakeService) KeyStats() lockapi.KeyStats {
	return lockapi.KeyStats{Keys: 3, Expires: 1, Scripts: 2}
}

var errNotImplemented = errors.New("not implemented by the fake")

func (f *fakeService) Acquire(ctx context.Context, req lockapi.AcquireRequest) (lockapi.Lock, error) {
	if f.acquireFn == nil {
		return lockapi.Lock{}, errNotImplemented
	}
	return f.acquireFn(ctx, req)
}

func (f *fakeService) Renew(ctx context.Context, req lockapi.RenewRequest) (lockapi.Lock, error) {
	if f.renewFn == nil {
		return lockapi.Lock{}, errNotImplemented
	}
	return f.renewFn(ctx, req)
}

func (f *fakeService) Release(ctx context.Context, req lockapi.ReleaseRequest) error {
	if f.releaseFn == nil {
		return errNotImplemented
	}
	return f.releaseFn(ctx, req)
}

func (f *fakeService) Info(ctx context.Context, key string) (lockapi.Lock, error) {
	if f.infoFn == nil {
		return lockapi.Lock{}, errNotImplemented
	}
	return f.infoFn(ctx, key)
}

func (f *fakeService) List(ctx context.Context) ([]lockapi.Lock, error) {
	if f.listFn == nil {
		return nil, errNotImplemented
	}
	return f.listFn(ctx)
}

func (f *fakeService) ClusterInfo(ctx context.Context) (lockapi.ClusterInfo, error) {
	if f.clusterInfoFn == nil {
		return lockapi.ClusterInfo{}, errNotImplemented
	}
	return f.clusterInfoFn(ctx)
}

// keyError returns the error a scripted key stands for, or nil. A key named
// "panic" panics.
func keyError(key string) error {
	switch key {
	case "held":
		return fmt.Errorf("acquire %s: %w", key, lockapi.ErrHeld)
	case "notheld":
		return fmt.Errorf("fsm: %w", lockapi.ErrNotHeld)
	case "missing":
		return lockapi.ErrNotFound
	case "noquorum":
		return fmt.Errorf("apply: %w", lockapi.ErrNoQuorum)
	case "noleader":
		return lockapi.ErrNoLeader
	case "unknown":
		return fmt.Errorf("apply: %w", lockapi.ErrUnknownOutcome)
	case "timeout":
		return lockapi.ErrTimeout
	case "shutdown":
		return lockapi.ErrShuttingDown
	case "deadline":
		return context.DeadlineExceeded
	case "boom":
		return errors.New("disk on fire")
	case "panic":
		panic("kaboom")
	}
	return nil
}

// testLock is what the scripted service reports for key "k".
var testLock = lockapi.Lock{
	Key: "k", Owner: "o", Token: 42, Version: 3, TTL: 30 * time.Second,
	Remaining: 12345*time.Millisecond + 500*time.Microsecond,
	ExpiresAt: time.UnixMilli(1700000000000), Waiters: 2,
}

// testCluster is what the scripted service reports for CLUSTER.INFO.
var testCluster = lockapi.ClusterInfo{
	LeaderID: "n1", Term: 7, QuorumSize: 2, HasQuorum: true, ClusterID: "c0ffee",
	Nodes: []lockapi.NodeInfo{
		{ID: "n1", State: "leader", Address: "127.0.0.1:9001", RESPAddr: "127.0.0.1:6379", HTTPAddr: "127.0.0.1:8001"},
		{ID: "n2", State: "follower", Address: "127.0.0.1:9002"},
	},
}

// scripted records the calls of the scripted service.
type scripted struct {
	mu       sync.Mutex
	calls    int
	deadline time.Duration // of the last call's context, from the call
}

func (s *scripted) record(ctx context.Context) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if d, ok := ctx.Deadline(); ok {
		s.deadline = time.Until(d)
	}
}

// scriptedService answers by key (see keyError). Acquire replies with a
// token encoding what it was asked: ttl in ms + wait in ms * 1e9, so tests
// see how arguments were parsed. Renew replies with the token it was given,
// or 7. Release accepts token 5 or none.
func scriptedService(rec *scripted) *fakeService {
	return &fakeService{
		acquireFn: func(ctx context.Context, req lockapi.AcquireRequest) (lockapi.Lock, error) {
			rec.record(ctx)
			if err := keyError(req.Key); err != nil {
				return lockapi.Lock{}, err
			}
			return lockapi.Lock{Token: uint64(req.TTL.Milliseconds() + req.Wait.Milliseconds()*1e9)}, nil
		},
		renewFn: func(ctx context.Context, req lockapi.RenewRequest) (lockapi.Lock, error) {
			rec.record(ctx)
			if err := keyError(req.Key); err != nil {
				return lockapi.Lock{}, err
			}
			if req.Token != 0 {
				return lockapi.Lock{Token: req.Token}, nil
			}
			return lockapi.Lock{Token: 7}, nil
		},
		releaseFn: func(ctx context.Context, req lockapi.ReleaseRequest) error {
			rec.record(ctx)
			if err := keyError(req.Key); err != nil {
				return err
			}
			if req.Token != 0 && req.Token != 5 {
				return lockapi.ErrNotHeld
			}
			return nil
		},
		infoFn: func(ctx context.Context, key string) (lockapi.Lock, error) {
			rec.record(ctx)
			if err := keyError(key); err != nil {
				return lockapi.Lock{}, err
			}
			l := testLock
			l.Key = key
			return l, nil
		},
		listFn: func(ctx context.Context) ([]lockapi.Lock, error) {
			rec.record(ctx)
			a, b := testLock, testLock
			b.Key, b.Owner, b.Token = "k2", "o2", 43
			return []lockapi.Lock{a, b}, nil
		},
		clusterInfoFn: func(ctx context.Context) (lockapi.ClusterInfo, error) {
			rec.record(ctx)
			return testCluster, nil
		},
		doFn: func(ctx context.Context, argv [][]byte) (lockapi.Value, error) {
			rec.record(ctx)
			if len(argv) > 1 {
				if err := keyError(string(argv[1])); err != nil {
					return lockapi.Value{}, err
				}
			}
			return scriptedValue(argv), nil
		},
	}
}

// scriptedValue is the scripted key engine's reply: by the command's
// second argument, one of each kind of value.
func scriptedValue(argv [][]byte) lockapi.Value {
	arg := ""
	if len(argv) > 1 {
		arg = string(argv[1])
	}
	switch arg {
	case "nil":
		return lockapi.NilValue()
	case "status":
		return lockapi.OKValue()
	case "wrongtype":
		return lockapi.ErrorValue(lockapi.ErrWrongType.Error())
	case "noscript":
		return lockapi.ErrorValue("NOSCRIPT No matching script. Please use EVAL.")
	case "int":
		return lockapi.IntValue(-3)
	case "array":
		return lockapi.ArrayValue(lockapi.IntValue(1), lockapi.NilValue(), lockapi.BulkValue("x"),
			lockapi.ArrayValue(lockapi.StatusValue("OK")), lockapi.ArrayValue())
	}
	return lockapi.BulkValue("v:" + arg)
}
