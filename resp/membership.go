package resp

import (
	"context"
	"time"
)

// Membership is the optional part of the service that changes the cluster's
// voters; the node implements it. Without it CLUSTER.JOIN and CLUSTER.LEAVE
// answer an error.
type Membership interface {
	// Join adds a voter with the given id and raft address.
	Join(ctx context.Context, id, raftAddr string) error
	// Leave removes the voter with the given id.
	Leave(ctx context.Context, id string) error
}

// membershipTimeout bounds a membership change requested over RESP.
const membershipTimeout = 60 * time.Second

// CLUSTER.JOIN id raft-addr
// help: adds a voter; it catches up from the leader (by snapshot when
// needed). Replies +OK.
func cmdClusterJoin(c *client, args [][]byte) {
	c.membership(func(ctx context.Context, m Membership) error {
		return m.Join(ctx, string(args[1]), string(args[2]))
	})
}

// CLUSTER.LEAVE id
// help: removes a voter. Replies +OK.
func cmdClusterLeave(c *client, args [][]byte) {
	c.membership(func(ctx context.Context, m Membership) error {
		return m.Leave(ctx, string(args[1]))
	})
}

func (c *client) membership(do func(context.Context, Membership) error) {
	m, ok := c.srv.svc.(Membership)
	if !ok {
		c.writeErrorText("ERR membership changes are not supported by this server")
		return
	}
	ctx, cancel := c.srv.commandContext(membershipTimeout)
	defer cancel()
	if err := do(ctx, m); err != nil {
		c.writeError(err)
		return
	}
	c.writeOK()
}
