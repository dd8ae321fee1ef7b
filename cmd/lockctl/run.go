package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"

	"github.com/distlock/distlock/clients"
)

// releaseTimeout bounds the release after COMMAND exits.
const releaseTimeout = 10 * time.Second

// lease is the part of a [clients.Lease] that runLocked needs.
type lease interface {
	Key() string
	Owner() string
	Token() uint64
	Done() <-chan struct{}
	Err() error
	Release(ctx context.Context) error
}

// lock acquires key, runs argv under it and returns the exit status.
func (c *cli) lock(o *options, key string, argv []string) int {
	cl, err := newClient(o)
	if err != nil {
		return c.usageError("%v", err)
	}
	defer cl.Close()

	// Acquire, giving up when a signal comes.
	type acquired struct {
		l   *clients.Lease
		err error
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan acquired, 1)
	go func() {
		l, err := cl.Acquire(ctx, key, clients.AcquireOptions{TTL: o.ttl, Wait: o.timeout, Owner: o.owner})
		got <- acquired{l, err}
	}()
	var a acquired
	select {
	case a = <-got:
	case s := <-c.signals:
		cancel()
		a = <-got // Acquire releases what it may have taken
		if a.err == nil {
			a.l.Release(context.Background())
		}
		fmt.Fprintf(c.stderr, "lockctl: interrupted by %v while acquiring %q\n", s, key)
		return signalStatus(s)
	}
	switch {
	case errors.Is(a.err, clients.ErrHeld):
		if o.timeout == 0 {
			fmt.Fprintf(c.stderr, "lockctl: %q is held by another owner (use --timeout to queue for it)\n", key)
		} else {
			fmt.Fprintf(c.stderr, "lockctl: %q is still held by another owner after waiting %s\n", key, o.timeout)
		}
		return exitHeld
	case errors.Is(a.err, clients.ErrInvalid):
		fmt.Fprintf(c.stderr, "lockctl: %v\n", a.err)
		return exitUsage
	case a.err != nil:
		fmt.Fprintf(c.stderr, "lockctl: %v\n", a.err)
		return exitError
	}
	if o.verbose {
		fmt.Fprintf(c.stderr, "lockctl: acquired %q as %s, fencing token %d\n", key, a.l.Owner(), a.l.Token())
	}
	return c.runLocked(a.l, argv, o.grace, o.verbose)
}

// runLocked runs argv while l lasts, releases l when argv exits, and
// returns the exit status (see the exit codes in cli.go).
func (c *cli) runLocked(l lease, argv []string, grace time.Duration, verbose bool) int {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = c.stdin, c.stdout, c.stderr
	cmd.Env = append(os.Environ(),
		"LOCK_KEY="+l.Key(), "LOCK_TOKEN="+strconv.FormatUint(l.Token(), 10), "LOCK_OWNER="+l.Owner())
	// Its own process group, so that the whole of it can be stopped, not
	// only a shell that wraps the real work; except on a terminal, where a
	// background group could not read its input (SIGTTIN), and where the
	// terminal delivers ^C to the command itself.
	p := &child{cmd: cmd, ownGroup: !isTerminal(c.stdin)}
	cmd.SysProcAttr = childAttr(p.ownGroup)
	if err := cmd.Start(); err != nil {
		c.release(l, verbose)
		fmt.Fprintf(c.stderr, "lockctl: %v\n", err)
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, os.ErrNotExist) {
			return exitNotFound
		}
		return exitCannotRun
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	for {
		select {
		case err := <-exited:
			status := exitStatus(err)
			if lerr := l.Err(); lerr != nil && !errors.Is(lerr, clients.ErrReleased) {
				fmt.Fprintf(c.stderr, "lockctl: %s exited (status %d) after the lease on %q was lost: %v\n", argv[0], status, l.Key(), lerr)
				c.releaseLost(l)
				return exitLost
			}
			c.release(l, verbose)
			return status
		case <-l.Done():
			fmt.Fprintf(c.stderr, "lockctl: lease on %q lost: %v; terminating %s (SIGTERM, SIGKILL after %s)\n", l.Key(), l.Err(), argv[0], grace)
			c.terminate(p, exited, grace)
			c.releaseLost(l)
			return exitLost
		case s := <-c.signals:
			if !p.ownGroup && (s == syscall.SIGINT || s == syscall.SIGQUIT) {
				continue // the terminal sent it to the command too
			}
			if verbose {
				fmt.Fprintf(c.stderr, "lockctl: passing %v on to %s\n", s, argv[0])
			}
			p.signal(s)
		}
	}
}

// child is the running command.
type child struct {
	cmd *exec.Cmd
	// ownGroup: the command leads its own process group.
	ownGroup bool
}

// signal sends s to the command's process group, or to the command alone
// when it has no group of its own.
func (p *child) signal(s os.Signal) {
	sig, ok := s.(syscall.Signal)
	if !ok {
		return
	}
	signalCommand(p.cmd.Process, p.ownGroup, sig)
}

// terminate stops the command: SIGTERM, then SIGKILL after grace if it
// has not exited; whatever is left of its process group is killed once
// it has exited.
func (c *cli) terminate(p *child, exited <-chan error, grace time.Duration) {
	p.signal(syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-exited:
	case <-t.C:
		fmt.Fprintf(c.stderr, "lockctl: %s still running %s after SIGTERM; sending SIGKILL\n", p.cmd.Args[0], grace)
		p.signal(syscall.SIGKILL)
		<-exited
	}
	if p.ownGroup {
		p.signal(syscall.SIGKILL)
	}
}

// release releases l; a failure is reported on stderr (the lock then
// expires after its TTL).
func (c *cli) release(l lease, verbose bool) {
	ctx, cancel := context.WithTimeout(context.Background(), releaseTimeout)
	defer cancel()
	err := l.Release(ctx)
	switch {
	case err == nil:
		if verbose {
			fmt.Fprintf(c.stderr, "lockctl: released %q\n", l.Key())
		}
	case errors.Is(err, clients.ErrNotHeld):
		fmt.Fprintf(c.stderr, "lockctl: %q was no longer held when released\n", l.Key())
	default:
		fmt.Fprintf(c.stderr, "lockctl: release %q: %v (it expires after its TTL)\n", l.Key(), err)
	}
}

// releaseLost releases a lost lease, in case the server still has it
// (the lease may have been lost to a deadline while the cluster was
// unreachable); that it is not held is expected and not reported.
func (c *cli) releaseLost(l lease) {
	ctx, cancel := context.WithTimeout(context.Background(), releaseTimeout)
	defer cancel()
	l.Release(ctx)
}

// exitStatus turns cmd.Wait's error into an exit status: the command's
// own, or 128+N when signal N killed it.
func exitStatus(err error) int {
	if err == nil {
		return exitOK
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ee.ExitCode()
	}
	return exitError
}

var _ lease = (*clients.Lease)(nil)
