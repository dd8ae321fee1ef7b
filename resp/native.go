package resp

import (
	"bytes"
	"errors"
	"fmt"
	"time"

	"github.com/distlock/distlock/lockapi"
)

// LOCK.ACQUIRE key owner ttl [WAIT timeout]
// help: grants key to owner for ttl (milliseconds, or a duration such as
// 30s) and replies with the fencing token. Re-acquiring a lock one holds
// extends it and returns the same token. With WAIT, queues (first come,
// first served) for up to timeout while another owner holds the lock.
// Replies null when another owner holds it.
func cmdLockAcquire(c *client, args [][]byte) {
	a, ok := c.lockArgs(args, true, "wait")
	if !ok {
		return
	}
	var wait time.Duration
	if a.hasOpt {
		var err error
		if wait, err = c.srv.parseWait(a.opt); err != nil {
			c.writeError(err)
			return
		}
	}
	ctx, cancel := c.commandContext(wait)
	defer cancel()
	if wait > 0 {
		defer c.cancelOnHangup(cancel)()
	}
	lock, err := c.srv.svc.Acquire(ctx, lockapi.AcquireRequest{Key: a.key, Owner: a.owner, TTL: a.ttl, Wait: wait})
	switch {
	case err == nil:
		c.writeUint(lock.Token)
	case errors.Is(err, lockapi.ErrHeld):
		c.writeNull()
	default:
		c.writeError(err)
	}
}

// LOCK.RENEW key owner ttl [TOKEN token]
// help: extends a lock owner holds (with that fencing token, if given) to
// ttl from now and replies with its fencing token, unchanged. Fails with
// NOTHELD when owner does not hold it.
func cmdLockRenew(c *client, args [][]byte) {
	a, ok := c.lockArgs(args, true, "token")
	if !ok {
		return
	}
	token, ok := c.tokenOption(a)
	if !ok {
		return
	}
	ctx, cancel := c.commandContext(0)
	defer cancel()
	lock, err := c.srv.svc.Renew(ctx, lockapi.RenewRequest{Key: a.key, Owner: a.owner, TTL: a.ttl, Token: token})
	if err != nil {
		c.writeError(err)
		return
	}
	c.writeUint(lock.Token)
}

// LOCK.RELEASE key owner [TOKEN token]
// help: frees a lock owner holds (with that fencing token, if given);
// replies 1, or 0 when owner does not hold it.
func cmdLockRelease(c *client, args [][]byte) {
	a, ok := c.lockArgs(args, false, "token")
	if !ok {
		return
	}
	token, ok := c.tokenOption(a)
	if !ok {
		return
	}
	ctx, cancel := c.commandContext(0)
	defer cancel()
	err := c.srv.svc.Release(ctx, lockapi.ReleaseRequest{Key: a.key, Owner: a.owner, Token: token})
	switch {
	case err == nil:
		c.writeInt(1)
	case errors.Is(err, lockapi.ErrNotHeld), errors.Is(err, lockapi.ErrNotFound):
		c.writeInt(0)
	default:
		c.writeError(err)
	}
}

// LOCK.INFO key
// help: describes a held lock: a map (a flat field-value array on RESP2) of
// key, owner, fencing_token, version, ttl_ms, expires_at (unix ms) and
// waiters. Replies null when the lock is not held.
func cmdLockInfo(c *client, args [][]byte) {
	key := string(args[1])
	if err := lockapi.CheckKey(key); err != nil {
		c.writeError(err)
		return
	}
	ctx, cancel := c.commandContext(0)
	defer cancel()
	lock, err := c.srv.svc.Info(ctx, key)
	switch {
	case err == nil:
		c.writeLock(lock)
	case errors.Is(err, lockapi.ErrNotFound):
		c.writeNullArray()
	default:
		c.writeError(err)
	}
}

// LOCK.LIST
// help: describes every held lock, in key order, as an array of LOCK.INFO
// replies.
func cmdLockList(c *client, args [][]byte) {
	ctx, cancel := c.commandContext(0)
	defer cancel()
	locks, err := c.srv.svc.List(ctx)
	if err != nil {
		c.writeError(err)
		return
	}
	c.writeArray(len(locks))
	for _, l := range locks {
		c.writeLock(l)
	}
}

// CLUSTER.INFO
// help: describes the cluster as this node sees it: a map (a flat
// field-value array on RESP2) of leader_id, term, nodes (each a map of id,
// state, address, resp_address and http_address), quorum_size, has_quorum
// (a boolean; 1 or 0 on RESP2) and cluster_id (empty until the cluster
// runs protocol version 3).
func cmdClusterInfo(c *client, args [][]byte) {
	ctx, cancel := c.commandContext(0)
	defer cancel()
	info, err := c.srv.svc.ClusterInfo(ctx)
	if err != nil {
		c.writeError(err)
		return
	}
	c.writeMap(6)
	c.writeBulkString("leader_id")
	c.writeBulkString(info.LeaderID)
	c.writeBulkString("term")
	c.writeUint(info.Term)
	c.writeBulkString("nodes")
	c.writeArray(len(info.Nodes))
	for _, n := range info.Nodes {
		c.writeMap(5)
		c.writeBulkString("id")
		c.writeBulkString(n.ID)
		c.writeBulkString("state")
		c.writeBulkString(n.State)
		c.writeBulkString("address")
		c.writeBulkString(n.Address)
		c.writeBulkString("resp_address")
		c.writeBulkString(n.RESPAddr)
		c.writeBulkString("http_address")
		c.writeBulkString(n.HTTPAddr)
	}
	c.writeBulkString("quorum_size")
	c.writeInt(int64(info.QuorumSize))
	c.writeBulkString("has_quorum")
	c.writeBool(info.HasQuorum)
	c.writeBulkString("cluster_id")
	c.writeBulkString(info.ClusterID)
}

// writeLock writes a lock as LOCK.INFO does.
func (c *client) writeLock(l lockapi.Lock) {
	expires := l.ExpiresAt
	if expires.IsZero() {
		expires = time.Now().Add(l.Remaining)
	}
	c.writeMap(7)
	c.writeBulkString("key")
	c.writeBulkString(l.Key)
	c.writeBulkString("owner")
	c.writeBulkString(l.Owner)
	c.writeBulkString("fencing_token")
	c.writeUint(l.Token)
	c.writeBulkString("version")
	c.writeUint(l.Version)
	c.writeBulkString("ttl_ms")
	if l.Persistent { // a key set without a TTL: -1, as PTTL says
		c.writeInt(-1)
		c.writeBulkString("expires_at")
		c.writeInt(-1)
	} else {
		c.writeInt(ceilMillis(l.Remaining))
		c.writeBulkString("expires_at")
		c.writeInt(expires.UnixMilli())
	}
	c.writeBulkString("waiters")
	c.writeInt(int64(l.Waiters))
}

// ceilMillis converts a remaining lease to milliseconds, rounding up so that
// a held lock never shows 0, and clamping at 0.
func ceilMillis(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Millisecond - 1) / time.Millisecond)
}

// lockCall is the parsed arguments of LOCK.ACQUIRE, LOCK.RENEW and
// LOCK.RELEASE: key owner [ttl] [NAME value].
type lockCall struct {
	key, owner string
	ttl        time.Duration
	opt        []byte // the value of the one NAME option, if hasOpt
	hasOpt     bool
}

// lockArgs parses key and owner (args[1], args[2]), the ttl at args[3]
// when withTTL, and one trailing optName option. On a bad argument it
// writes the error reply and returns ok false.
func (c *client) lockArgs(args [][]byte, withTTL bool, optName string) (lockCall, bool) {
	var a lockCall
	rest := args[3:]
	if withTTL {
		rest = args[4:]
	}
	var ok bool
	if a.opt, a.hasOpt, ok = option(rest, optName); !ok {
		c.writeErrorText(errSyntax)
		return a, false
	}
	if a.key, a.owner, ok = c.keyOwner(args); !ok {
		return a, false
	}
	if withTTL {
		var err error
		if a.ttl, err = c.srv.parseTTL(args[3]); err != nil {
			c.writeError(err)
			return a, false
		}
	}
	return a, true
}

// tokenOption parses a TOKEN option's value (0 when absent), writing the
// error reply itself on a bad token.
func (c *client) tokenOption(a lockCall) (uint64, bool) {
	if !a.hasOpt {
		return 0, true
	}
	token, err := lockapi.ParseToken(string(a.opt))
	if err != nil {
		c.writeError(err)
		return 0, false
	}
	return token, true
}

// keyOwner validates args[1] and args[2] as key and owner, writing the
// error reply if they are not usable.
func (c *client) keyOwner(args [][]byte) (key, owner string, ok bool) {
	key, owner = string(args[1]), string(args[2])
	if err := lockapi.CheckKey(key); err != nil {
		c.writeError(err)
		return "", "", false
	}
	if err := lockapi.CheckOwner(owner); err != nil {
		c.writeError(err)
		return "", "", false
	}
	return key, owner, true
}

// option parses the trailing options of a command that accepts one
// NAME value option: none, or exactly NAME (any case) and its value. ok is
// false for anything else (unknown or repeated options, a missing value).
func option(args [][]byte, name string) (value []byte, present, ok bool) {
	switch {
	case len(args) == 0:
		return nil, false, true
	case len(args) == 2 && bytes.EqualFold(args[0], []byte(name)):
		return args[1], true, true
	default:
		return nil, false, false
	}
}

// parseTTL parses and checks a TTL argument.
func (s *Server) parseTTL(arg []byte) (time.Duration, error) {
	ttl, err := lockapi.ParseDuration(string(arg))
	if err != nil {
		return 0, fmt.Errorf("invalid ttl: %w", err)
	}
	if err := lockapi.CheckTTL(ttl, s.cfg.MaxTTL); err != nil {
		return 0, err
	}
	return ttl, nil
}

// parseWait parses and checks a WAIT timeout argument.
func (s *Server) parseWait(arg []byte) (time.Duration, error) {
	wait, err := lockapi.ParseDuration(string(arg))
	if err != nil {
		return 0, fmt.Errorf("invalid wait: %w", err)
	}
	if err := lockapi.CheckWait(wait, s.cfg.MaxWait); err != nil {
		return 0, err
	}
	return wait, nil
}
