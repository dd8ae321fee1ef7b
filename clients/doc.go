// Package clients is the Go client of the distlock lock server. It speaks
// the server's native RESP commands (LOCK.ACQUIRE, LOCK.RENEW, LOCK.RELEASE,
// LOCK.INFO, LOCK.LIST, CLUSTER.INFO) over
// [github.com/redis/go-redis/v9] and turns them into leases:
//
//   - [New] takes the addresses of some or all of the cluster's nodes. Any
//     node serves any command (followers forward to the leader); the client
//     sticks to one node and moves to the next when a connection fails or
//     the node answers CLUSTERDOWN.
//   - [Client.Acquire] grants a lock and returns a [Lease] carrying the
//     lock's fencing token ([Lease.Token]). Pass the token to the resource
//     the lock protects and have it refuse tokens lower than the highest it
//     has seen: a lease is only a promise about time, the token is what makes
//     a late writer harmless.
//   - The lease renews itself (every TTL/3 by default). [Lease.Done] closes
//     when the lease is lost: a renewal was refused, or none was confirmed
//     before the lease's deadline: the TTL, less 1% and 2ms for clock drift,
//     counted from the moment the last successful acquire or renew was
//     *sent*, so the client stops trusting the lease before the server can
//     expire it, even when no node can be reached. [Lease.Err] says why.
//   - [Lease.Release] frees the lock.
//   - [Client.Info], [Client.List] and [Client.ClusterInfo] describe locks
//     and the cluster.
//
// # Retries and unknown outcomes
//
// A request whose answer is lost (a dropped connection, an UNKNOWN or
// TIMEOUT reply) may or may not have taken effect. Every request the client
// retries is idempotent: an acquire is retried with the same owner identity
// (re-acquiring a lock one holds returns the same token), renewals and
// releases carry the fencing token. If an acquire fails for good after such
// an unknown outcome, the client releases the lock with that owner, best
// effort, so that an acquire that did take effect is not left orphaned until
// its TTL runs out. Requests that fail with CLUSTERDOWN (no leader, no
// quorum) or a connection error move to the next node and are retried with
// exponential backoff, bounded by [Config.MaxAttempts] and the context.
//
// # Errors
//
// Errors wrap the sentinels of this package (see [ErrHeld] and the others
// in the same block); match them with [errors.Is]. Error replies from a
// node are [*ServerError] values, which unwrap to the sentinel of their
// code word.
package clients
