package raftfsm

import (
	"cmp"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	"github.com/tidwall/btree"

	"github.com/distlock/distlock/lockapi"
)

// LockState is one held lock inside the state machine.
type LockState struct {
	Key   string
	Owner string
	// Token is the fencing token of the grant: the raft index of the
	// granting entry while the cluster's protocol version is 1, and the
	// granting command's sequence number from version 2 on (see DESIGN.md).
	Token uint64
	// Version is 1 at grant and grows by one per renewal or re-acquire.
	Version uint64
	// TTL is the lease most recently granted.
	TTL time.Duration
	// Deadline is the cluster time at which the lock expires (for a key
	// without a TTL, the largest Duration: never).
	Deadline time.Duration
	// Hash holds the fields of a hash key (HSET); it is nil for a string
	// key, whose value is Owner.
	Hash *Hash
}

// Result is what [FSM.Apply] returns for every command entry. Err carries a
// refusal that was decided by the state machine (and so is the same on every
// replica): lockapi.ErrHeld, ErrNotHeld, ErrNotFound, or ErrBadCommand.
type Result struct {
	// Lock is the lock after the command (acquire, renew), the lock that was
	// freed (release), or the current holder when Err is lockapi.ErrHeld.
	Lock LockState
	// Extended is true when an acquire found the lock already held by the
	// same owner and extended it.
	Extended bool
	// Expired counts the locks this entry found past their deadline.
	Expired int
	// Reply is the Redis reply of an OpExec command.
	Reply lockapi.Value
	// Granted is the lock an OpHandoff gave to its NextOwner; it is zero
	// when the release was refused (Err) or NextTTL was not valid.
	Granted LockState
	Err     error
}

// NodeAddrs are a cluster member's client addresses, as it registered them.
type NodeAddrs struct {
	RESP string
	HTTP string
}

// expiryItem orders locks by deadline, then key, for the expiry index.
type expiryItem struct {
	deadline time.Duration
	key      string
}

func expiryLess(a, b expiryItem) bool {
	if a.deadline != b.deadline {
		return a.deadline < b.deadline
	}
	return a.key < b.key
}

// FSM is the lock state machine; it implements raft.FSM. Apply, Snapshot and
// Restore are called by raft from one goroutine; the query methods (Get,
// List, Now...) may be called concurrently from any goroutine.
type FSM struct {
	mu      sync.RWMutex
	now     time.Duration
	applied uint64
	locks   lockTable
	expiry  *btree.BTreeG[expiryItem]
	nodes   map[string]NodeAddrs
	scripts scriptCache
	onFree  func(key string)
	// protos caches compiled scripts by SHA1. It is not replicated state:
	// compiling is deterministic, so it only saves work.
	protos protoCache
	// noNatives makes every script run in Lua (tests compare the paths).
	noNatives bool

	// version is the cluster's protocol version (1 until an OpSetVersion
	// raises it). It changes under mu but is atomic, so ClusterVersion,
	// which the leader reads for every entry it proposes, does not wait
	// for Apply's lock. seq is the last command sequence number handed out
	// as a fencing token since version 2.
	version atomic.Uint64
	seq     uint64
	// clusterID names the cluster once a raise to protocol version 3 has
	// set it (see [FSM.ClusterID]); it never changes after that.
	clusterID atomic.Pointer[string]
	// halted is set when an entry of a newer format arrived; from then on
	// Apply changes nothing and Snapshot refuses. onHalt hears of it.
	halted error
	onHalt func(error)
}

var _ raft.FSM = (*FSM)(nil)

// New returns an empty state machine at cluster time zero.
func New() *FSM {
	f := &FSM{}
	f.reset()
	return f
}

// OnFree registers fn to be called, inside Apply and so on raft's goroutine,
// whenever a lock is released or expires. fn must not block and must not
// call back into the FSM. It lets the leader wake queued waiters; it has no
// effect on state. Call it before raft starts.
func (f *FSM) OnFree(fn func(key string)) { f.onFree = fn }

func (f *FSM) freed(key string) {
	if f.onFree != nil {
		f.onFree(key)
	}
}

func (f *FSM) reset() {
	f.now = 0
	f.applied = 0
	f.locks = newLockTable()
	f.expiry = btree.NewBTreeGOptions(expiryLess, btree.Options{NoLocks: true})
	f.nodes = make(map[string]NodeAddrs)
	f.scripts = scriptCache{}
	f.version.Store(1)
	f.seq = 0
	f.clusterID.Store(new(string))
}

// Apply applies one committed raft log entry and returns a *Result, or a
// *BatchResult for a batch entry. Entries that do not decode yield a Result
// with ErrBadCommand (every replica refuses them identically) rather than a
// panic. An entry of a newer format (ErrNewerFormat) halts the state
// machine instead: skipping it would let this replica diverge from peers
// that apply it.
func (f *FSM) Apply(l *raft.Log) interface{} {
	if IsBatch(l.Data) {
		return f.applyBatch(l)
	}
	c, err := Decode(l.Data)
	if err == nil {
		err = supported(c)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.admit(l.Index, err); err != nil {
		return &Result{Err: err}
	}
	r := f.apply(l.Index, c)
	return &r
}

// apply runs one decoded command at raft index idx. f.mu must be held.
func (f *FSM) apply(idx uint64, c Command) Result {
	tok := f.nextToken(idx)
	if c.Now > f.now {
		f.now = c.Now
	}
	var r Result
	r.Expired = f.expireDue()
	switch c.Op {
	case OpAcquire:
		f.acquire(tok, c, &r)
	case OpRenew:
		f.renew(c, &r)
	case OpRelease:
		f.release(c, &r)
	case OpExpire:
		// Time has advanced; expireDue did the work.
	case OpSetNode:
		f.nodes[c.Key] = NodeAddrs{RESP: c.RESPAddr, HTTP: c.HTTPAddr}
	case OpRemoveNode:
		delete(f.nodes, c.Key)
	case OpExec:
		r.Reply = f.exec(tok, c)
	case OpHandoff:
		f.handoff(tok, c, &r)
	case OpSetVersion:
		f.raiseVersion(idx, c.Token, c.Key)
	default:
		r.Err = fmt.Errorf("%w: unknown op %d", ErrBadCommand, c.Op)
	}
	return r
}

// validTTL keeps a committed entry with a nonsensical TTL from corrupting the
// expiry index; the service validates TTLs before proposing.
func validTTL(ttl time.Duration) error {
	if ttl <= 0 {
		return lockapi.Invalidf("ttl must be positive, got %s", ttl)
	}
	return nil
}

func (f *FSM) acquire(tok uint64, c Command, r *Result) {
	if err := validTTL(c.TTL); err != nil {
		r.Err = err
		return
	}
	cur, held := f.locks.Get(c.Key)
	switch {
	case held && cur.IsHash():
		r.Err = lockapi.ErrWrongType
	case held && cur.Owner != c.Owner:
		r.Lock, r.Err = cur, lockapi.ErrHeld
	case held:
		f.extend(&cur, c.TTL)
		r.Lock, r.Extended = cur, true
	default:
		l := LockState{Key: c.Key, Owner: c.Owner, Token: tok, Version: 1, TTL: c.TTL, Deadline: f.deadline(c.TTL)}
		f.put(l)
		r.Lock = l
	}
}

func (f *FSM) renew(c Command, r *Result) {
	if err := validTTL(c.TTL); err != nil {
		r.Err = err
		return
	}
	cur, err := f.heldBy(c)
	if err != nil {
		r.Lock, r.Err = cur, err
		return
	}
	f.extend(&cur, c.TTL)
	r.Lock = cur
}

func (f *FSM) release(c Command, r *Result) {
	cur, err := f.heldBy(c)
	if err != nil {
		r.Lock, r.Err = cur, err
		return
	}
	f.remove(cur)
	f.freed(cur.Key)
	r.Lock = cur
}

// handoff releases c.Key like release and grants it to c.NextOwner with
// fencing token tok, without freeing it in between (no OnFree: the queue's
// head was served).
func (f *FSM) handoff(tok uint64, c Command, r *Result) {
	cur, err := f.heldBy(c)
	if err != nil {
		r.Lock, r.Err = cur, err
		return
	}
	f.remove(cur)
	r.Lock = cur
	if c.NextOwner == "" || validTTL(c.NextTTL) != nil {
		f.freed(cur.Key)
		return
	}
	l := LockState{Key: c.Key, Owner: c.NextOwner, Token: tok, Version: 1, TTL: c.NextTTL, Deadline: f.deadline(c.NextTTL)}
	f.put(l)
	r.Granted = l
}

// heldBy returns the lock on c.Key if c.Owner (and c.Token, when set) holds it.
func (f *FSM) heldBy(c Command) (LockState, error) {
	cur, held := f.locks.Get(c.Key)
	if !held {
		return LockState{}, lockapi.ErrNotFound
	}
	if cur.IsHash() {
		return LockState{}, lockapi.ErrWrongType
	}
	if cur.Owner != c.Owner || (c.Token != 0 && c.Token != cur.Token) {
		return cur, lockapi.ErrNotHeld
	}
	return cur, nil
}

// extend gives l a fresh lease of ttl from now and bumps its version.
func (f *FSM) extend(l *LockState, ttl time.Duration) {
	old := *l
	l.TTL = ttl
	l.Deadline = f.deadline(ttl)
	l.Version++
	f.replace(old, *l)
}

// deadline returns now+ttl, saturating instead of overflowing.
func (f *FSM) deadline(ttl time.Duration) time.Duration {
	if d := f.now + ttl; d >= f.now {
		return d
	}
	return noDeadline - 1
}

// put stores l, which must not be in the keyspace with another deadline
// (see replace).
func (f *FSM) put(l LockState) {
	f.locks.Set(l)
	if l.HasTTL() {
		f.expiry.Set(expiryItem{l.Deadline, l.Key})
	}
}

// replace stores l in place of old (the same key).
func (f *FSM) replace(old, l LockState) {
	if old.HasTTL() && old.Deadline != l.Deadline {
		f.expiry.Delete(expiryItem{old.Deadline, old.Key})
	}
	f.put(l)
}

func (f *FSM) remove(l LockState) {
	f.locks.Delete(l.Key)
	if l.HasTTL() {
		f.expiry.Delete(expiryItem{l.Deadline, l.Key})
	}
}

// expireDue removes every lock whose deadline is at or before now.
func (f *FSM) expireDue() int {
	n := 0
	for {
		it, ok := f.expiry.Min()
		if !ok || it.deadline > f.now {
			return n
		}
		f.expiry.Delete(it)
		f.locks.Delete(it.key)
		f.freed(it.key)
		n++
	}
}

// Get returns the lock held under key, as of the last applied entry.
func (f *FSM) Get(key string) (LockState, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.locks.Get(key)
}

// List returns every lock in key order, as of the last applied entry.
func (f *FSM) List() []LockState {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := make([]LockState, 0, f.locks.Len())
	f.locks.Scan(func(l LockState) bool {
		out = append(out, l)
		return true
	})
	return out
}

// Len returns the number of locks held.
func (f *FSM) Len() int {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.locks.Len()
}

// Now returns the cluster time of the last applied entry.
func (f *FSM) Now() time.Duration {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.now
}

// AppliedIndex returns the raft index of the last applied entry (or of the
// restored snapshot).
func (f *FSM) AppliedIndex() uint64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.applied
}

// copyNodes copies the node table; f.mu must be held.
func (f *FSM) copyNodes() map[string]NodeAddrs {
	out := make(map[string]NodeAddrs, len(f.nodes))
	for id, a := range f.nodes {
		out[id] = a
	}
	return out
}

// Nodes returns a copy of the registered client addresses of every node.
func (f *FSM) Nodes() map[string]NodeAddrs {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.copyNodes()
}

// NextDeadline returns the earliest lock deadline, if any lock is held.
func (f *FSM) NextDeadline() (time.Duration, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	it, ok := f.expiry.Min()
	return it.deadline, ok
}

// Snapshot captures the state in O(1) (the maps are copy-on-write) for
// Persist to write while Apply goes on.
//
// A halted state machine refuses: its state stops at the entry it could not
// apply, and a snapshot labelled with a later index would make the skipped
// entries look applied after a restart.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.halted != nil {
		return nil, f.halted
	}
	return &snapshot{now: f.now, applied: f.applied, locks: f.locks.Copy(), nodes: f.copyNodes(), scripts: f.scripts.copy(),
		version: f.version.Load(), seq: f.seq, clusterID: f.ClusterID()}, nil
}

// Restore replaces all state with the snapshot read from rc. The keyspace
// and its expiry index are built, in bulk, before the state is replaced: a
// stream that does not verify leaves the state untouched.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	st, err := readSnapshot(rc)
	if err != nil {
		return err
	}
	expiry := buildExpiry(st.locks)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.halted != nil {
		return f.halted
	}
	f.reset()
	f.now, f.applied = st.now, st.applied
	f.version.Store(st.version)
	f.seq = st.seq
	f.clusterID.Store(&st.clusterID)
	f.locks, f.expiry = st.locks, expiry
	for _, n := range st.nodes {
		f.nodes[n.id] = n.addrs
	}
	f.scripts = st.scripts
	return nil
}

// buildExpiry returns the expiry index of locks: the (deadline, key) of
// every key with a TTL, sorted once and bulk-loaded (inserting them one by
// one, in key order, costs a tree search each).
func buildExpiry(locks lockTable) *btree.BTreeG[expiryItem] {
	items := make([]expiryItem, 0, locks.Len())
	locks.Scan(func(l LockState) bool {
		if l.HasTTL() {
			items = append(items, expiryItem{l.Deadline, l.Key})
		}
		return true
	})
	slices.SortFunc(items, func(a, b expiryItem) int {
		if c := cmp.Compare(a.deadline, b.deadline); c != 0 {
			return c
		}
		return strings.Compare(a.key, b.key)
	})
	expiry := btree.NewBTreeGOptions(expiryLess, btree.Options{NoLocks: true})
	bulk := bulkLoader[expiryItem]{load: func(it expiryItem) { expiry.Load(it) }, set: func(it expiryItem) { expiry.Set(it) }}
	bulk.loadAll(items)
	return expiry
}

// WriteSnapshot writes the current state in the snapshot format to w. Two
// replicas at the same applied index write identical bytes, which is how
// convergence is checked.
func (f *FSM) WriteSnapshot(w io.Writer) error {
	snap, err := f.Snapshot()
	if err != nil {
		return err
	}
	return snap.(*snapshot).write(w)
}

// Stats are counts of the keyspace and script cache.
type Stats struct {
	Keys, Expires, Scripts int
}

// Stats counts the live keys (as of the last applied entry), those with a
// TTL, and the cached scripts.
func (f *FSM) Stats() Stats {
	f.mu.RLock()
	defer f.mu.RUnlock()
	keys, expires := f.countLive(f.now)
	return Stats{Keys: keys, Expires: expires, Scripts: len(f.scripts.m)}
}
