package httpapi

import (
	"context"
	"net/http"
	"slices"
	"time"

	"github.com/distlock/distlock/lockapi"
)

// Service errors are returned as they are: their text is the client's
// message, and writeError logs the method and path of any 500.

// writeMargin is how much longer than a request's wait the response may take
// to be written: the raft round trip after the wait, plus a slow client.
const writeMargin = 30 * time.Second

// POST /locks/acquire {"key","owner","ttl"[,"wait"]}
// Grants the lock (or extends it for its owner), queueing up to wait.
func (a *API) acquire(w http.ResponseWriter, r *http.Request) error {
	var body acquireBody
	if err := decodeBody(w, r, &body); err != nil {
		return err
	}
	if err := checkKeyOwner(body.Key, body.Owner); err != nil {
		return err
	}
	req := lockapi.AcquireRequest{Key: body.Key, Owner: body.Owner}
	var err error
	if req.TTL, err = a.ttl(body.TTL); err != nil {
		return err
	}
	if present(body.Wait) {
		if req.Wait, err = parseDuration("wait", body.Wait); err != nil {
			return err
		}
		if err := lockapi.CheckWait(req.Wait, a.cfg.MaxWait); err != nil {
			return err
		}
	}
	if req.Wait > 0 {
		// A server not built by NewServer (or one whose handler wraps this
		// API) may have a WriteTimeout shorter than the wait; extend it for
		// this response. Writers that cannot are left as they are.
		_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(req.Wait + writeMargin))
	}
	lock, err := a.cfg.Service.Acquire(r.Context(), req)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, lockReply{Success: true, Lock: toLockJSON(lock)})
	return nil
}

// POST /locks/renew {"key","owner","ttl"[,"fencing_token"|"token"]}
// Extends a lock held by owner (and token, when given) to ttl from now.
func (a *API) renew(w http.ResponseWriter, r *http.Request) error {
	var body renewBody
	if err := decodeBody(w, r, &body); err != nil {
		return err
	}
	if err := checkKeyOwner(body.Key, body.Owner); err != nil {
		return err
	}
	req := lockapi.RenewRequest{Key: body.Key, Owner: body.Owner}
	var err error
	if req.TTL, err = a.ttl(body.TTL); err != nil {
		return err
	}
	if req.Token, err = parseToken(body.FencingToken, body.Token); err != nil {
		return err
	}
	lock, err := a.cfg.Service.Renew(r.Context(), req)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, lockReply{Success: true, Lock: toLockJSON(lock)})
	return nil
}

// POST /locks/release {"key","owner"[,"fencing_token"|"token"]}
// Frees a lock held by owner (and token, when given).
func (a *API) release(w http.ResponseWriter, r *http.Request) error {
	var body releaseBody
	if err := decodeBody(w, r, &body); err != nil {
		return err
	}
	if err := checkKeyOwner(body.Key, body.Owner); err != nil {
		return err
	}
	req := lockapi.ReleaseRequest{Key: body.Key, Owner: body.Owner}
	var err error
	if req.Token, err = parseToken(body.FencingToken, body.Token); err != nil {
		return err
	}
	if err := a.cfg.Service.Release(r.Context(), req); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, okReply{Success: true})
	return nil
}

// GET /locks/{key...}
// Returns the lock held under key, or 404.
func (a *API) info(w http.ResponseWriter, r *http.Request) error {
	key := r.PathValue("key")
	if err := lockapi.CheckKey(key); err != nil {
		return err
	}
	lock, err := a.cfg.Service.Info(r.Context(), key)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, lockReply{Success: true, Lock: toLockJSON(lock)})
	return nil
}

// GET /locks
// Returns every held lock in key order.
func (a *API) list(w http.ResponseWriter, r *http.Request) error {
	locks, err := a.cfg.Service.List(r.Context())
	if err != nil {
		return err
	}
	out := make([]lockJSON, 0, len(locks))
	for _, l := range locks {
		out = append(out, toLockJSON(l))
	}
	writeJSON(w, http.StatusOK, listReply{Success: true, Locks: out, Count: len(out)})
	return nil
}

// GET /cluster/info
// Describes the cluster as this node sees it, in the seed's shape.
func (a *API) clusterInfo(w http.ResponseWriter, r *http.Request) error {
	ci, err := a.cfg.Service.ClusterInfo(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, toClusterJSON(ci))
	return nil
}

// Membership is the optional part of the service that changes the cluster's
// voters. The node implements it; without it the membership routes answer
// 501.
type Membership interface {
	// Join adds a voter with the given id and raft address.
	Join(ctx context.Context, id, raftAddr string) error
	// Leave removes the voter with the given id.
	Leave(ctx context.Context, id string) error
}

// POST /cluster/join {"id":"node4","address":"host:9004"}
// Adds a voter; it catches up from the leader (by snapshot when needed).
func (a *API) join(w http.ResponseWriter, r *http.Request) error {
	var body struct {
		ID      string `json:"id"`
		Address string `json:"address"`
	}
	if err := decodeBody(w, r, &body); err != nil {
		return err
	}
	if body.ID == "" || body.Address == "" {
		return lockapi.Invalidf("join needs \"id\" and \"address\" (the new node's raft address)")
	}
	return a.membership(w, func(m Membership) error { return m.Join(r.Context(), body.ID, body.Address) })
}

// POST /cluster/leave {"id":"node4"}
// Removes a voter.
func (a *API) leave(w http.ResponseWriter, r *http.Request) error {
	var body struct {
		ID string `json:"id"`
	}
	if err := decodeBody(w, r, &body); err != nil {
		return err
	}
	if body.ID == "" {
		return lockapi.Invalidf("leave needs \"id\"")
	}
	return a.membership(w, func(m Membership) error { return m.Leave(r.Context(), body.ID) })
}

func (a *API) membership(w http.ResponseWriter, do func(Membership) error) error {
	m, ok := a.cfg.Service.(Membership)
	if !ok {
		writeJSON(w, http.StatusNotImplemented, failureBody{Success: false, Error: "membership changes are not supported by this service"})
		return nil
	}
	if err := do(m); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, okReply{Success: true})
	return nil
}

// GET /health, /healthz
// Liveness: 200 while the process serves HTTP; asks nothing of the cluster.
func (a *API) live(w http.ResponseWriter, _ *http.Request) error {
	writeJSON(w, http.StatusOK, healthReply{Status: "ok", NodeID: a.cfg.NodeID})
	return nil
}

// GET /health/ready, /readyz
// Readiness: 200 when this node sees a leader and a quorum, else 503 with
// the reason.
func (a *API) ready(w http.ResponseWriter, r *http.Request) error {
	ci, err := a.cfg.Service.ClusterInfo(r.Context())
	reason := ""
	switch {
	case err != nil:
		var code int
		if code, reason = errorStatus(err); code == http.StatusInternalServerError {
			a.log.ErrorContext(r.Context(), "readiness: cluster info failed", "err", err)
		}
	case ci.LeaderID == "" && (ci.Removed || !member(ci, a.cfg.NodeID)):
		reason = notMember
	case ci.LeaderID == "":
		reason = lockapi.ErrNoLeader.Error()
	case !ci.HasQuorum:
		reason = lockapi.ErrNoQuorum.Error()
	}
	if reason != "" {
		writeJSON(w, http.StatusServiceUnavailable, notReadyReply{
			Error:  "not ready: " + reason,
			Status: "unavailable", NodeID: a.cfg.NodeID,
			LeaderID: ci.LeaderID, HasQuorum: ci.HasQuorum,
		})
		return nil
	}
	quorum := true
	writeJSON(w, http.StatusOK, healthReply{
		Status: "ready", NodeID: a.cfg.NodeID, LeaderID: ci.LeaderID, HasQuorum: &quorum,
	})
	return nil
}

// notMember is the readiness reason of a node that knows no leader and
// whose copy of the cluster's configuration lists others but not itself:
// it was removed (CLUSTER.LEAVE), and hashicorp/raft then leaves it a
// follower that never campaigns, so it will not serve again as it is. (A
// node that joins sees configurations without itself too while it
// catches up, but it hears from the leader meanwhile.) A node that was down
// when it was removed still lists itself; it learns of its removal from a
// member (ClusterInfo.Removed).
const notMember = "this node is not a member of the cluster (removed with CLUSTER.LEAVE?); CLUSTER.JOIN it again, or stop it"

// member reports whether id is among ci's nodes, or ci lists none yet (a
// node that joins learns the configuration from the leader).
func member(ci lockapi.ClusterInfo, id string) bool {
	return len(ci.Nodes) == 0 || slices.ContainsFunc(ci.Nodes, func(n lockapi.NodeInfo) bool { return n.ID == id })
}

// GET /metrics
// Serves the configured metrics handler, or 404 when there is none.
func (a *API) metrics(w http.ResponseWriter, r *http.Request) error {
	if a.cfg.Metrics == nil {
		return errNoMetrics
	}
	a.cfg.Metrics.ServeHTTP(w, r)
	return nil
}

// checkKeyOwner validates the identity fields every POST carries.
func checkKeyOwner(key, owner string) error {
	if err := lockapi.CheckKey(key); err != nil {
		return err
	}
	return lockapi.CheckOwner(owner)
}

// ttl parses and checks a required ttl field against MaxTTL.
func (a *API) ttl(raw []byte) (time.Duration, error) {
	if !present(raw) {
		return 0, lockapi.Invalidf("ttl is required")
	}
	d, err := parseDuration("ttl", raw)
	if err != nil {
		return 0, err
	}
	if err := lockapi.CheckTTL(d, a.cfg.MaxTTL); err != nil {
		return 0, err
	}
	return d, nil
}
