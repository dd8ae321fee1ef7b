//go:build unix

package chaos

import "sync"

// resource is the thing the locks protect: one counter per key that lock
// holders read-modify-write. It is fenced: every access carries the
// holder's token, and an access with a token lower than the highest the
// resource has seen is rejected. Reads are fenced too (a read raises the
// high-water mark), so a holder that read under an old token cannot write
// after a newer holder has started. With correct tokens no accepted write
// is ever based on a stale read ("lost update").
type resource struct {
	h    *History
	mu   sync.Mutex
	keys map[string]*resourceKey
}

type resourceKey struct {
	max   uint64
	value int64
}

func newResource(h *History) *resource {
	return &resource{h: h, keys: map[string]*resourceKey{}}
}

// access performs one read (write=false) or write of key by client with
// token. leaseEnd is the end of the client's own lease: an access at or
// after it is stale (the paused-holder fault makes such accesses on
// purpose). It returns the value read and whether the access was accepted.
func (r *resource) access(key string, client int, token uint64, write bool, base, leaseEnd int64) (int64, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := r.keys[key]
	if k == nil {
		k = &resourceKey{}
		r.keys[key] = k
	}
	at := r.h.Now()
	a := Access{Key: key, Client: client, Token: token, Write: write, Stale: at >= leaseEnd,
		MaxBefore: k.max, Base: base, Before: k.value, At: at, LeaseEnd: leaseEnd}
	a.Accepted = token >= k.max
	if a.Accepted {
		k.max = token
		if write {
			k.value = base + 1
		}
	}
	r.h.addAccess(a)
	return a.Before, a.Accepted
}
