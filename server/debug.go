package server

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"net/http"
)

// debugState serves GET /debug/state: this node's own state machine, not
// the leader's: the applied index and a SHA-256 of its snapshot bytes. Two
// nodes at the same applied index must report the same hash; the chaos
// tests check convergence with it.
func (n *Node) debugState(w http.ResponseWriter, r *http.Request) {
	if !n.authorized(w, r) {
		return
	}
	h := sha256.New()
	if err := n.fsm.WriteSnapshot(h); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{
		"node_id":       n.cfg.ID,
		"applied_index": n.fsm.AppliedIndex(),
		"locks":         n.fsm.Len(),
		"state_sha256":  hex.EncodeToString(h.Sum(nil)),
	})
}

// authorized checks the bearer password of a debug request, answering 401
// itself when it is wrong.
func (n *Node) authorized(w http.ResponseWriter, r *http.Request) bool {
	if n.cfg.Password == "" {
		return true
	}
	want := []byte("Bearer " + n.cfg.Password)
	if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
		http.Error(w, `{"success":false,"error":"authentication required"}`, http.StatusUnauthorized)
		return false
	}
	return true
}

// requirePassword wraps h with the bearer password check.
func (n *Node) requirePassword(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.authorized(w, r) {
			h.ServeHTTP(w, r)
		}
	})
}
