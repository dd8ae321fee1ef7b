package raftfsm

import (
	"errors"
	"fmt"

	"github.com/hashicorp/raft"

	"github.com/distlock/distlock/internal/wire"
)

// ErrHalted is the error of every entry after the state machine met one it
// cannot apply (see [FSM.OnHalt]).
var ErrHalted = errors.New("raftfsm: state machine halted")

// BatchResult is what [FSM.Apply] returns for a batch entry: one Result per
// command, in the batch's order, or a single Result whose Err refuses the
// whole batch (it did not decode, or the state machine is halted).
type BatchResult struct {
	Results []Result
}

// OnHalt registers fn to be called, inside Apply and so on raft's
// goroutine, when an entry of a newer format than this build knows is
// committed. The state machine then stops where it is: every later entry
// is answered with ErrHalted and changes nothing, and Snapshot and Restore
// refuse, so no snapshot ever claims the skipped entries. The node must stop
// and be upgraded; after the upgrade it replays the log from its last
// snapshot. fn must not block and must not call back into the FSM. Call it
// before raft starts.
func (f *FSM) OnHalt(fn func(error)) { f.onHalt = fn }

// Halted returns the error that halted the state machine, or nil.
func (f *FSM) Halted() error {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.halted
}

// ClusterVersion returns the cluster's protocol version as of the last
// applied entry: 1 until an OpSetVersion raised it.
func (f *FSM) ClusterVersion() uint64 { return f.version.Load() }

// ClusterID returns the cluster's id as of the last applied entry, or ""
// before the raise to protocol version 3 that sets it. The leader that
// raises the cluster to version 3 draws it at random, so two clusters
// never share one, however alike their members' names and addresses; once
// set, it never changes. Nodes send it when they open a raft connection,
// and refuse a connection from a node of another cluster.
func (f *FSM) ClusterID() string { return *f.clusterID.Load() }

// ClusterIDIn returns the cluster id that the log entry data would set if
// a state machine of this build (at protocol version 2 or more, the only
// versions a batch is written at) that has none applied it: the Key of its
// first OpSetVersion to protocol version 3 or more with a Key, in a single
// command or a batch; "" when it has none, or when Apply would refuse the
// entry as a whole. A node reads it from the entries written to its log,
// before raft applies them.
func ClusterIDIn(data []byte) string {
	isRaise := func(b []byte) bool { return len(b) > 1 && b[0] == commandVersion && Op(b[1]) == OpSetVersion }
	if !IsBatch(data) {
		if !isRaise(data) {
			return ""
		}
		if c, err := Decode(data); err == nil && supported(c) == nil && c.Token >= 3 {
			return c.Key
		}
		return ""
	}
	// Walk the batch first, without allocating: most hold no raise.
	d := wire.Decoder{B: data[1:]}
	found := false
	for i, n := uint64(0), d.Count(); i < n && d.Err == nil && !found; i++ {
		found = isRaise(d.Bytes()) && d.Err == nil
	}
	if !found {
		return ""
	}
	cmds, err := DecodeBatch(data)
	for i := 0; err == nil && i < len(cmds); i++ {
		err = supported(cmds[i])
	}
	if err != nil {
		return ""
	}
	for _, c := range cmds {
		if c.Op == OpSetVersion && c.Token >= 3 && c.Key != "" {
			return c.Key
		}
	}
	return ""
}

// admit opens entry idx, whose decoding gave err: it returns the error
// that refuses the whole entry (ErrHalted once halted, halting now on
// ErrNewerFormat, or err itself), or nil to apply it. Every entry but one
// that halts counts as applied. f.mu must be held.
func (f *FSM) admit(idx uint64, err error) error {
	if f.halted != nil {
		return f.halted
	}
	if errors.Is(err, ErrNewerFormat) {
		return f.halt(idx, fmt.Errorf("%w; upgrade this node to the version the rest of the cluster runs", err))
	}
	if idx > f.applied {
		f.applied = idx
	}
	return err
}

// Halt stops the state machine before entry idx because of err (its log
// store could not make the entry durable, say), as an entry of a newer
// format does: every later entry is answered with ErrHalted and changes
// nothing, Snapshot and Restore refuse, and OnHalt's function hears of it.
// It returns the halting error; halting again keeps the first.
func (f *FSM) Halt(idx uint64, err error) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.halted != nil {
		return f.halted
	}
	return f.halt(idx, err)
}

// halt stops the state machine at entry idx because of err. f.mu must be
// held.
func (f *FSM) halt(idx uint64, err error) error {
	f.halted = fmt.Errorf("%w at raft index %d: %w", ErrHalted, idx, err)
	if f.onHalt != nil {
		f.onHalt(f.halted)
	}
	return f.halted
}

// supported returns ErrNewerFormat for a command that decodes but asks for
// more than this build can do: raising the cluster to a protocol version
// newer than ProtocolVersion.
func supported(c Command) error {
	if c.Op == OpSetVersion && c.Token > ProtocolVersion {
		return fmt.Errorf("%w: protocol version %d (this build runs %d)", ErrNewerFormat, c.Token, ProtocolVersion)
	}
	return nil
}

// nextToken returns the fencing token of the command at raft index idx:
// the index itself under protocol version 1, the next sequence number from
// version 2 on (a batch entry holds several commands, and each grant needs
// its own token). f.mu must be held.
func (f *FSM) nextToken(idx uint64) uint64 {
	if f.version.Load() < 2 {
		return idx
	}
	f.seq++
	return f.seq
}

// raiseVersion applies OpSetVersion at raft index idx. Raising the version
// to 2 starts the sequence at idx: every token granted before is an index
// below it, so tokens keep growing. From version 3 on, id names the
// cluster if nothing has named it yet. f.mu must be held.
func (f *FSM) raiseVersion(idx, v uint64, id string) {
	if v >= 3 && id != "" && f.ClusterID() == "" {
		f.clusterID.Store(&id)
	}
	cur := f.version.Load()
	if v <= cur {
		return
	}
	if cur < 2 && v >= 2 {
		f.seq = idx
	}
	f.version.Store(v)
}

// applyBatch applies a batch entry: each command in order, as if each were
// its own entry at the batch's index, with its own fencing token.
func (f *FSM) applyBatch(l *raft.Log) *BatchResult {
	cmds, err := DecodeBatch(l.Data)
	for i := 0; err == nil && i < len(cmds); i++ {
		err = supported(cmds[i])
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	err = f.admit(l.Index, err)
	if err == nil && f.version.Load() < 2 {
		err = fmt.Errorf("%w: a batch entry before protocol version 2", ErrBadCommand)
	}
	if err != nil {
		return &BatchResult{Results: []Result{{Err: err}}}
	}
	out := &BatchResult{Results: make([]Result, len(cmds))}
	for i, c := range cmds {
		out.Results[i] = f.apply(l.Index, c)
	}
	return out
}
