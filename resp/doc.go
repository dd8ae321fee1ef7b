// Package resp is the Redis-protocol (RESP2 and RESP3) front end of the lock
// server: a redcon server whose command table turns client requests into
// calls on a [lockapi.Service] and the results into RESP replies.
//
// Input is validated before redcon parses it: the listener is wrapped by
// [guard.Listener], which bounds argument counts, bulk and inline lengths
// and the number of connections, and answers framing errors the way Redis
// does.
//
// Commands:
//
//   - native lock commands: LOCK.ACQUIRE, LOCK.RENEW, LOCK.RELEASE,
//     LOCK.INFO, LOCK.LIST and CLUSTER.INFO;
//   - Redis key commands, run by the replicated key engine through a
//     [lockapi.KeyService] (keys.go): SET, GET, DEL, UNLINK, EXISTS, TYPE,
//     (P)EXPIRE(AT), (P)TTL, PERSIST, GETRANGE, STRLEN, MGET, MSET(NX), the
//     hash commands HSET, HGET, HINCRBY, HEXISTS, HDEL, HLEN, PUBLISH, DBSIZE,
//     EVAL, EVALSHA, EVAL_RO, EVALSHA_RO and SCRIPT;
//   - connection commands that client libraries send during their handshake:
//     PING, ECHO, QUIT, RESET, HELLO (2 and 3), AUTH (with a per-connection
//     throttle after failures), SELECT 0, CLIENT (ID, SETNAME, GETNAME,
//     SETINFO, INFO, LIST, TRACKING, CACHING, NO-EVICT, NO-TOUCH, HELP),
//     COMMAND (COUNT, LIST, INFO, DOCS), INFO (server, clients, replication,
//     keyspace, raft), TIME, and CLUSTER/READONLY (refused as by a
//     standalone Redis, which tells cluster-aware clients to use standalone
//     mode).
//
// Pipelined commands are answered in order and take effect in order;
// back-to-back writes of a pipeline run concurrently, each queued for the
// log after the one before it ([lockapi.Turn]), so that they share raft's
// batches instead of paying one commit each (pipeline.go).
//
// Every command runs with a deadline and is cancelled when the server
// closes; a panic in a command is recovered, logged, and answered with
// "ERR internal error". All mapping from errors to RESP error replies
// happens in one function, errorReply (errors.go):
//
//	lockapi.ErrInvalid         ERR <detail>
//	lockapi.ErrWrongType       WRONGTYPE Operation against a key holding the wrong kind of value
//	lockapi.ErrNotHeld         NOTHELD lock is not held by this owner
//	lockapi.ErrNotFound        NOTHELD lock is not held by this owner
//	lockapi.ErrUnknownOutcome  UNKNOWN outcome unknown: ...
//	lockapi.ErrTimeout         TIMEOUT request timed out and may still take effect, ...
//	context.DeadlineExceeded   (the same)
//	lockapi.ErrNoQuorum        CLUSTERDOWN no quorum
//	lockapi.ErrNoLeader        CLUSTERDOWN no leader
//	lockapi.ErrShuttingDown    CLUSTERDOWN node is shutting down
//	context.Canceled           (the same: commands are cancelled by Close)
//	anything else              ERR <message>
//
// (LOCK.ACQUIRE answers lockapi.ErrHeld with a null, LOCK.RELEASE answers
// ErrNotHeld and ErrNotFound with 0, and LOCK.INFO answers ErrNotFound with a
// null; those never reach the mapping.)
package resp
