package freeport

import (
	"net"
	"strconv"
	"testing"
)

func TestLoopbackDistinctAndFree(t *testing.T) {
	ports, err := Loopback(20)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, p := range ports {
		if p <= 0 || seen[p] {
			t.Fatalf("ports %v: %d repeated or invalid", ports, p)
		}
		seen[p] = true
	}
	// Closed again: each can be listened on now.
	for _, p := range ports[:3] {
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			t.Fatalf("port %d not free after Loopback: %v", p, err)
		}
		l.Close()
	}
}
