package raftfsm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/distlock/distlock/internal/wire"
)

// Op is the kind of a [Command].
type Op uint8

// The operations of the state machine.
const (
	// OpAcquire grants Key to Owner for TTL, or extends it when Owner holds it.
	OpAcquire Op = 1
	// OpRenew extends Key held by Owner (and Token, when non-zero) to TTL.
	OpRenew Op = 2
	// OpRelease frees Key held by Owner (and Token, when non-zero).
	OpRelease Op = 3
	// OpExpire only advances cluster time; locks whose deadline has passed
	// are removed. The leader proposes it when a lock falls due.
	OpExpire Op = 4
	// OpSetNode records node Key's client addresses (RESPAddr, HTTPAddr), so
	// every node can name every member's addresses.
	OpSetNode Op = 5
	// OpRemoveNode forgets node Key's addresses (it left the cluster).
	OpRemoveNode Op = 6
	// OpExec runs the Redis command Args (SET, DEL, EVAL...) in the key
	// engine; Wall is the leader's wall clock at proposal, for PXAT/EXAT
	// and TIME.
	OpExec Op = 7
	// OpHandoff releases Key held by Owner (and Token, when non-zero) and,
	// in the same entry, grants it to NextOwner for NextTTL: the head of
	// the leader's wait queue gets the lock with one commit instead of two,
	// and nobody can take it in between.
	OpHandoff Op = 8
	// OpSetVersion raises the cluster's protocol version to Token (it never
	// lowers it). The leader proposes it once every member of the raft
	// configuration has told it that it runs a build of that version. From
	// protocol version 2 on, fencing tokens come from a per-command sequence
	// and entries may carry a batch of commands (see [EncodeBatch]). From
	// version 3 on, Key names the cluster: the first such entry's Key
	// becomes the cluster id for good (see [FSM.ClusterID]).
	OpSetVersion Op = 9
)

// lastOp is the highest Op this version knows.
const lastOp = OpSetVersion

// ProtocolVersion is the newest log format this build applies and, once
// every member of the cluster runs it, writes. Version 1 is every format up
// to OpHandoff; version 2 adds OpSetVersion, batch entries and sequence
// fencing tokens; version 3 adds the cluster id (OpSetVersion's Key, and a
// snapshot field), which nodes exchange on the raft port.
const ProtocolVersion = 3

// String returns the operation's name.
func (o Op) String() string {
	switch o {
	case OpAcquire:
		return "acquire"
	case OpRenew:
		return "renew"
	case OpRelease:
		return "release"
	case OpExpire:
		return "expire"
	case OpSetNode:
		return "set-node"
	case OpRemoveNode:
		return "remove-node"
	case OpExec:
		return "exec"
	case OpHandoff:
		return "handoff"
	case OpSetVersion:
		return "set-version"
	}
	return fmt.Sprintf("op(%d)", uint8(o))
}

// commandVersion is the first byte of every encoded command; batchVersion
// is the first byte of an entry that carries a batch of commands.
const (
	commandVersion = 1
	batchVersion   = 2
)

// Errors returned by [Decode] and [DecodeEntry].
var (
	// ErrBadCommand means the bytes are not a command this version encodes.
	ErrBadCommand = errors.New("raftfsm: malformed command")
	// ErrNewerFormat means the bytes start like a command of a format this
	// version does not know (an unknown version byte or operation): a newer
	// build wrote them. A replica must not skip such an entry, since its
	// peers apply it; the state machine halts instead (see [FSM.OnHalt]).
	ErrNewerFormat = errors.New("raftfsm: entry written by a newer version")
)

// Command is one state machine operation, as carried in a raft log entry.
type Command struct {
	Op Op
	// Now is the cluster time at which the leader proposed the command: the
	// leader's monotonic clock, continued from the last applied cluster time
	// when it won its election. It is a duration since the cluster's origin.
	Now   time.Duration
	Key   string
	Owner string
	TTL   time.Duration
	// Token, when non-zero, must match the lock's fencing token (renew,
	// release). For OpSetVersion it is the cluster's new protocol version
	// (and Key, from version 3 on, the cluster id).
	Token uint64
	// RESPAddr and HTTPAddr are a node's client addresses (OpSetNode; Key is
	// the node's ID).
	RESPAddr string
	HTTPAddr string
	// Wall is the leader's wall clock when it proposed the command, in unix
	// milliseconds (OpExec only). It converts absolute expiry times (SET
	// ... PXAT) into cluster time and is what TIME returns in a script; it
	// never decides expiry by itself.
	Wall int64
	// Args is the Redis command of an OpExec, name first.
	Args []string
	// NextOwner and NextTTL are the grant of an OpHandoff.
	NextOwner string
	NextTTL   time.Duration
}

// Encode appends the binary form of c to dst and returns it:
//
//	version u8 | op u8 | now varint | ttl varint | token uvarint |
//	len(key) uvarint | key | len(owner) uvarint | owner
//	[OpSetNode only: len(resp) uvarint | resp | len(http) uvarint | http]
//	[OpExec only: wall varint | argc uvarint | argc x (len uvarint | arg)]
//	[OpHandoff only: len(next) uvarint | next | nextTTL varint]
//
// dst grows once, to an upper bound of the encoded size: the server encodes
// every command into a fresh slice, which appending field by field grew
// three to five times.
func Encode(dst []byte, c Command) []byte {
	dst = slices.Grow(dst, encodedSizeBound(c))
	dst = append(dst, commandVersion, byte(c.Op))
	dst = binary.AppendVarint(dst, int64(c.Now))
	dst = binary.AppendVarint(dst, int64(c.TTL))
	dst = binary.AppendUvarint(dst, c.Token)
	dst = wire.AppendString(dst, c.Key)
	dst = wire.AppendString(dst, c.Owner)
	if c.Op == OpSetNode {
		dst = wire.AppendString(dst, c.RESPAddr)
		dst = wire.AppendString(dst, c.HTTPAddr)
	}
	if c.Op == OpExec {
		dst = binary.AppendVarint(dst, c.Wall)
		dst = binary.AppendUvarint(dst, uint64(len(c.Args)))
		for _, a := range c.Args {
			dst = wire.AppendString(dst, a)
		}
	}
	if c.Op == OpHandoff {
		dst = wire.AppendString(dst, c.NextOwner)
		dst = binary.AppendVarint(dst, int64(c.NextTTL))
	}
	return dst
}

// encodedSizeBound returns at least the length of c's encoding.
func encodedSizeBound(c Command) int {
	const v = binary.MaxVarintLen64
	n := 2 + 3*v + 2*v + len(c.Key) + len(c.Owner)
	switch c.Op {
	case OpSetNode:
		n += 2*v + len(c.RESPAddr) + len(c.HTTPAddr)
	case OpExec:
		n += 2 * v
		for _, a := range c.Args {
			n += v + len(a)
		}
	case OpHandoff:
		n += 2*v + len(c.NextOwner)
	}
	return n
}

// Decode parses a command produced by [Encode]. It rejects truncated input
// and trailing bytes (ErrBadCommand) and unknown versions and operations
// (ErrNewerFormat).
func Decode(b []byte) (Command, error) {
	var c Command
	if len(b) < 2 {
		return c, fmt.Errorf("%w: %d bytes", ErrBadCommand, len(b))
	}
	if b[0] != commandVersion {
		return c, fmt.Errorf("%w: command version %d", ErrNewerFormat, b[0])
	}
	c.Op = Op(b[1])
	if c.Op == 0 {
		return c, fmt.Errorf("%w: op 0", ErrBadCommand)
	}
	if c.Op > lastOp {
		return c, fmt.Errorf("%w: unknown op %d", ErrNewerFormat, b[1])
	}
	d := wire.Decoder{B: b[2:]}
	c.Now = time.Duration(d.Varint())
	c.TTL = time.Duration(d.Varint())
	c.Token = d.Uvarint()
	c.Key, c.Owner = d.Strs() // one allocation: a stored lock keeps both
	if c.Op == OpSetNode {
		c.RESPAddr = d.Str()
		c.HTTPAddr = d.Str()
	}
	if c.Op == OpExec {
		c.Wall = d.Varint()
		n := d.Count()
		for i := uint64(0); i < n && d.Err == nil; i++ {
			c.Args = append(c.Args, d.Str())
		}
	}
	if c.Op == OpHandoff {
		c.NextOwner = d.Str()
		c.NextTTL = time.Duration(d.Varint())
	}
	if d.Err != nil {
		return Command{}, fmt.Errorf("%w: %v", ErrBadCommand, d.Err)
	}
	if len(d.B) != 0 {
		return Command{}, fmt.Errorf("%w: %d trailing bytes", ErrBadCommand, len(d.B))
	}
	return c, nil
}

// maxBatch is the most commands one batch entry may carry.
const maxBatch = 4096

// EncodeBatch appends a batch entry carrying cmds, each the output of
// [Encode], to dst and returns it:
//
//	batchVersion u8 | count uvarint | count x (len uvarint | command)
//
// A batch must only be proposed once the cluster's protocol version is 2 or
// more: older builds cannot read it.
func EncodeBatch(dst []byte, cmds [][]byte) []byte {
	size := 1 + binary.MaxVarintLen64
	for _, c := range cmds {
		size += binary.MaxVarintLen32 + len(c)
	}
	dst = slices.Grow(dst, size)
	dst = append(dst, batchVersion)
	dst = binary.AppendUvarint(dst, uint64(len(cmds)))
	for _, c := range cmds {
		dst = binary.AppendUvarint(dst, uint64(len(c)))
		dst = append(dst, c...)
	}
	return dst
}

// IsBatch reports whether an entry's data is a batch (see [EncodeBatch]).
func IsBatch(b []byte) bool { return len(b) > 0 && b[0] == batchVersion }

// DecodeBatch parses a batch entry produced by [EncodeBatch]. A command
// this version does not know makes the whole batch ErrNewerFormat; any
// other damage makes it ErrBadCommand.
func DecodeBatch(b []byte) ([]Command, error) {
	if !IsBatch(b) {
		return nil, fmt.Errorf("%w: not a batch", ErrBadCommand)
	}
	d := wire.Decoder{B: b[1:]}
	n := d.Count()
	if d.Err == nil && (n == 0 || n > maxBatch) {
		return nil, fmt.Errorf("%w: batch of %d commands", ErrBadCommand, n)
	}
	cmds := make([]Command, 0, min(n, maxBatch))
	for i := uint64(0); i < n && d.Err == nil; i++ {
		c, err := Decode(d.Bytes())
		if d.Err != nil {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("command %d of the batch: %w", i, err)
		}
		cmds = append(cmds, c)
	}
	if d.Err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadCommand, d.Err)
	}
	if len(d.B) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes after the batch", ErrBadCommand, len(d.B))
	}
	return cmds, nil
}
