package lockapi

import (
	"context"
	"sync"
)

// Turn orders commands that run concurrently but must take effect in the
// order they were sent, such as the commands a client pipelined on one
// connection. Each command of the sequence gets a Turn chained to its
// predecessor's; the service waits for the turn ([Turn.Wait]) right before
// it submits the command to the replicated log (or sends it on to the
// leader) and passes it on ([Turn.Done]) right after, so the commands enter
// the log in order while their commits, the slow part, overlap.
//
// A command that never submits anything (a refusal decided before the log,
// an error) must still call Done, or the commands after it wait until their
// contexts end; every command of a sequence must call Done eventually.
// Done may be called more than once.
type Turn struct {
	prev <-chan struct{} // closed when the predecessor has submitted; nil for the first
	mine chan struct{}
	once sync.Once
}

// NewTurn returns the turn after prev (nil: the first of a sequence).
func NewTurn(prev *Turn) *Turn {
	t := &Turn{mine: make(chan struct{})}
	if prev != nil {
		t.prev = prev.mine
	}
	return t
}

// Wait returns once the predecessor has submitted, or ctx's error if ctx
// ends first. A nil Turn never waits.
func (t *Turn) Wait(ctx context.Context) error {
	if t == nil || t.prev == nil {
		return nil
	}
	select {
	case <-t.prev:
		return nil
	default:
	}
	select {
	case <-t.prev:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Done lets the next command of the sequence submit, once every command
// before this one has called Done too (a command refused before the log
// may finish before its predecessor submits). It never blocks, and is safe
// to call on a nil Turn and more than once.
func (t *Turn) Done() {
	if t == nil {
		return
	}
	t.once.Do(func() {
		if t.prev == nil {
			close(t.mine)
			return
		}
		select {
		case <-t.prev:
			close(t.mine)
		default:
			go func() {
				<-t.prev
				close(t.mine)
			}()
		}
	})
}

type turnKey struct{}

// WithTurn returns a context that carries t to the service.
func WithTurn(ctx context.Context, t *Turn) context.Context {
	return context.WithValue(ctx, turnKey{}, t)
}

// TurnFrom returns the turn ctx carries, or nil.
func TurnFrom(ctx context.Context) *Turn {
	t, _ := ctx.Value(turnKey{}).(*Turn)
	return t
}
