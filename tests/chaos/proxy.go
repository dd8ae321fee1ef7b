//go:build unix

package chaos

import (
	"io"
	"net"
	"sync"
	"time"
)

// linkState is the state of one directed link.
type linkState int

const (
	// linkUp forwards bytes both ways.
	linkUp linkState = iota
	// linkBlackhole accepts connections and swallows their bytes: dials
	// succeed and requests time out, as in a real partition.
	linkBlackhole
	// linkRefuse closes the listener: dials fail at once.
	linkRefuse
)

func (s linkState) String() string {
	return [...]string{"up", "blackhole", "refuse"}[s]
}

// link is the TCP proxy for one directed raft link from node `from` to node
// `to`: node from dials listen (via its --test-dial-map) whenever it would
// dial to's raft port, for raft RPCs and for forwarded client requests.
// Cutting the link from->to stops from's requests to to (and their answers)
// but not to's requests to from, which travel on the to->from link.
type link struct {
	from, to int
	listen   string // 127.0.0.1:port
	target   string // 127.0.0.1:raft port of node to

	mu    sync.Mutex
	state linkState
	ln    net.Listener
	conns map[net.Conn]struct{} // every accepted and upstream connection
	done  bool
}

func newLink(from, to int, listen, target string) (*link, error) {
	l := &link{from: from, to: to, listen: listen, target: target, conns: map[net.Conn]struct{}{}}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, err
	}
	l.ln = ln
	go l.accept(ln)
	return l, nil
}

func (l *link) accept(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		l.mu.Lock()
		if l.done || l.ln != ln {
			l.mu.Unlock()
			c.Close()
			return
		}
		l.conns[c] = struct{}{}
		state := l.state
		l.mu.Unlock()
		if state == linkBlackhole {
			go l.swallow(c)
		} else {
			go l.pipe(c)
		}
	}
}

func (l *link) forget(cs ...net.Conn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range cs {
		delete(l.conns, c)
		c.Close()
	}
}

// swallow reads and discards until the connection is closed (by set).
func (l *link) swallow(c net.Conn) {
	io.Copy(io.Discard, c)
	l.forget(c)
}

// pipe connects c to the target and copies both ways until either side
// closes or set closes them.
func (l *link) pipe(c net.Conn) {
	u, err := net.DialTimeout("tcp", l.target, time.Second)
	if err != nil {
		l.forget(c)
		return
	}
	l.mu.Lock()
	if l.done || l.state != linkUp {
		l.mu.Unlock()
		u.Close()
		l.forget(c)
		return
	}
	l.conns[u] = struct{}{}
	l.mu.Unlock()
	var wg sync.WaitGroup
	wg.Add(2)
	cp := func(dst, src net.Conn) {
		defer wg.Done()
		io.Copy(dst, src)
		l.forget(dst, src) // a half-closed raft stream is useless: close both
	}
	go cp(u, c)
	go cp(c, u)
	wg.Wait()
}

// set changes the link's state. Every existing connection is closed, so
// traffic starts again from fresh dials, as after a real network change.
func (l *link) set(s linkState) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.done || s == l.state {
		return
	}
	for c := range l.conns {
		c.Close()
		delete(l.conns, c)
	}
	if s == linkRefuse && l.ln != nil {
		l.ln.Close()
		l.ln = nil
	}
	if s != linkRefuse && l.ln == nil {
		// Rebind the same port; retry briefly while it is released.
		var ln net.Listener
		var err error
		for i := 0; i < 50; i++ {
			if ln, err = net.Listen("tcp", l.listen); err == nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err != nil {
			l.state = linkRefuse // could not heal: stays cut, reported by the caller
			return
		}
		l.ln = ln
		go l.accept(ln)
	}
	l.state = s
}

// get returns the link's state.
func (l *link) get() linkState {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.state
}

// close stops the proxy for good.
func (l *link) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.done = true
	if l.ln != nil {
		l.ln.Close()
		l.ln = nil
	}
	for c := range l.conns {
		c.Close()
		delete(l.conns, c)
	}
}
