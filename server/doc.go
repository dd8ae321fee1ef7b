// Package server wires one lock-server node together: raft (with the
// walstore log and stable store, a file snapshot store and a TCP transport),
// the raftfsm state machine, the cluster clock and lock expiry on the leader,
// Prometheus metrics, and the RESP and HTTP listeners.
//
// [Node] implements [lockapi.Service]: both front ends call it, and
// [Node.apply] is the one place in the code base that submits to raft.
package server
