package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/distlock/distlock/clients"
	"github.com/distlock/distlock/tlsconf"
)

// Exit codes. Under "lock", any other code is the command's own (128+N
// when it was killed by signal N), so a command's 1 to 4 cannot be told
// from lockctl's by the code alone: lockctl then says what happened on
// stderr.
const (
	exitOK = 0
	// exitError: the cluster could not be used (unreachable, no quorum,
	// wrong password, bad reply).
	exitError = 1
	// exitUsage: bad flags or arguments.
	exitUsage = 2
	// exitHeld: lock: another owner held the lock until --timeout.
	exitHeld = 3
	// exitLost: lock: the lease was lost while the command ran; the
	// command was terminated.
	exitLost = 4
	// exitCannotRun: lock: the command was found but could not be run.
	exitCannotRun = 126
	// exitNotFound: lock: the command was not found.
	exitNotFound = 127
)

const usage = `Usage:
  lockctl [flags] lock [flags] KEY [--] COMMAND [ARGS...]
  lockctl [flags] info KEY
  lockctl [flags] list
  lockctl [flags] cluster

Commands:
  lock     Acquire the lock KEY (queueing up to --timeout), run COMMAND
           while renewing it, release it when COMMAND exits, and exit with
           COMMAND's status. COMMAND gets LOCK_KEY, LOCK_TOKEN (the fencing
           token) and LOCK_OWNER in its environment and runs in its own
           process group (unless stdin is a terminal). Signals lockctl
           receives (INT, TERM, HUP, QUIT) are passed on to it. If the
           lease is lost, COMMAND's process group gets SIGTERM, then
           SIGKILL after --grace, and lockctl exits 4. If lockctl itself
           dies, even by SIGKILL, COMMAND gets SIGTERM (on Linux). If the
           release fails, lockctl says so and still exits with COMMAND's
           status (the lock expires after its TTL). Flags must come
           before KEY.
  info     Describe the lock KEY (prints "KEY is not held" or null if free).
  list     Describe every held lock.
  cluster  Describe the cluster: leader, term, quorum, nodes.

Flags:
  --addr ADDRS      comma-separated RESP addresses of cluster nodes; any node
                    will do, others are tried when one fails
                    (env LOCKCTL_ADDR, default 127.0.0.1:6379)
  --password PASS   the nodes' password (env LOCKCTL_PASSWORD)
  --json            print JSON instead of tables (info, list, cluster)
  --request-timeout D  time allowed for one attempt of one request (default 5s)
  --ttl D           lock: lease length, renewed every ttl/3 (default 15s)
  --timeout D       lock: how long to queue while another owner holds the
                    lock, server side, first come first served; 0 fails at
                    once (default 0; at most the server's --max-wait)
  --grace D         lock: time between SIGTERM and SIGKILL after the lease is
                    lost (default 5s)
  --owner ID        lock: owner identity (default host-pid-random)
  -v, --verbose     lock: report acquiring and releasing on stderr
  --tls             connect over TLS (env LOCKCTL_TLS; implied by the next three)
  --cacert FILE     CA certificates to verify the nodes with (env LOCKCTL_CACERT;
                    default the system's)
  --cert FILE, --key FILE  a client certificate and its key, for nodes run with
                    --tls-auth-clients yes (env LOCKCTL_CERT, LOCKCTL_KEY)

Durations are Go durations (500ms, 30s, 5m) or bare milliseconds.

Exit status:
  0    success (lock: COMMAND exited 0)
  1    error: cluster unreachable, no quorum, wrong password
  2    usage error
  3    lock: KEY was held by another owner until --timeout ran out
  4    lock: the lease was lost while COMMAND ran; COMMAND was terminated
  126  lock: COMMAND could not be run
  127  lock: COMMAND was not found
  *    lock: COMMAND's own exit status (128+N if killed by signal N)
`

// cli is one invocation of lockctl, with its I/O injected for tests.
type cli struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
	// signals delivers the signals lockctl should pass on to COMMAND (or
	// that interrupt it before COMMAND runs).
	signals <-chan os.Signal
}

// options are the parsed flags.
type options struct {
	addrs          []string
	password       string
	json           bool
	requestTimeout time.Duration
	ttl            time.Duration
	timeout        time.Duration
	grace          time.Duration
	owner          string
	verbose        bool
	tls            bool   // connect over TLS (also implied by the files below)
	caCert         string // CA certificates (PEM) to verify the nodes with, instead of the system's
	cert, key      string // a client certificate and its key, for nodes that ask for one
}

// durationValue is a flag.Value taking a Go duration or bare milliseconds.
type durationValue struct{ d *time.Duration }

func (v durationValue) String() string {
	if v.d == nil {
		return ""
	}
	return v.d.String()
}

func (v durationValue) Set(s string) error {
	d, err := parseDuration(s)
	if err != nil {
		return err
	}
	*v.d = d
	return nil
}

// parseDuration reads a Go duration or a bare integer of milliseconds,
// like the server; it refuses negative values.
func parseDuration(s string) (time.Duration, error) {
	var d time.Duration
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		d = time.Duration(n) * time.Millisecond
	} else if d, err = time.ParseDuration(s); err != nil {
		return 0, fmt.Errorf("%q is neither a duration (30s, 500ms) nor milliseconds", s)
	}
	if d < 0 {
		return 0, fmt.Errorf("%q is negative", s)
	}
	return d, nil
}

// flagSet returns a flag set filling o, which the environment provides
// defaults for.
func (c *cli) flagSet(o *options) *flag.FlagSet {
	fs := flag.NewFlagSet("lockctl", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	addr := c.getenv("LOCKCTL_ADDR")
	if addr == "" {
		addr = clients.DefaultAddr
	}
	o.addrs = splitAddrs(addr)
	o.password = c.getenv("LOCKCTL_PASSWORD")
	o.requestTimeout, o.ttl, o.grace = 5*time.Second, clients.DefaultTTL, 5*time.Second
	fs.Func("addr", "", func(s string) error {
		o.addrs = splitAddrs(s)
		if len(o.addrs) == 0 {
			return errors.New("no address given")
		}
		return nil
	})
	fs.StringVar(&o.password, "password", o.password, "")
	fs.BoolVar(&o.json, "json", false, "")
	fs.Var(durationValue{&o.requestTimeout}, "request-timeout", "")
	fs.Var(durationValue{&o.ttl}, "ttl", "")
	fs.Var(durationValue{&o.timeout}, "timeout", "")
	fs.Var(durationValue{&o.grace}, "grace", "")
	fs.StringVar(&o.owner, "owner", "", "")
	fs.BoolVar(&o.verbose, "verbose", false, "")
	fs.BoolVar(&o.verbose, "v", false, "")
	o.caCert, o.cert, o.key = c.getenv("LOCKCTL_CACERT"), c.getenv("LOCKCTL_CERT"), c.getenv("LOCKCTL_KEY")
	fs.BoolVar(&o.tls, "tls", c.getenv("LOCKCTL_TLS") != "", "")
	fs.StringVar(&o.caCert, "cacert", o.caCert, "")
	fs.StringVar(&o.cert, "cert", o.cert, "")
	fs.StringVar(&o.key, "key", o.key, "")
	return fs
}

// splitAddrs splits a comma-separated address list, dropping blanks.
func splitAddrs(s string) []string {
	var out []string
	for _, a := range strings.Split(s, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

// usageError reports a usage problem and returns exitUsage.
func (c *cli) usageError(format string, args ...any) int {
	fmt.Fprintf(c.stderr, "lockctl: "+format+"\n", args...)
	fmt.Fprintln(c.stderr, `Run "lockctl help" for usage.`)
	return exitUsage
}

// run runs lockctl with args (without the program name) and returns the
// exit status.
func (c *cli) run(args []string) int {
	var o options
	fs := c.flagSet(&o)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(c.stdout, usage)
			return exitOK
		}
		return c.usageError("%v", err)
	}
	if fs.NArg() == 0 {
		fmt.Fprint(c.stderr, usage)
		return exitUsage
	}
	cmd, rest := fs.Arg(0), fs.Args()[1:]
	switch cmd {
	case "help", "-h", "--help":
		fmt.Fprint(c.stdout, usage)
		return exitOK
	case "lock":
		// Flags, then KEY, then the command, verbatim: its own flags are
		// not lockctl's.
		if err := fs.Parse(rest); err != nil {
			return c.usageError("lock: %v", err)
		}
		rest = fs.Args()
		if len(rest) == 0 {
			return c.usageError("lock: missing KEY")
		}
		key, argv := rest[0], rest[1:]
		if len(argv) > 0 && argv[0] == "--" {
			argv = argv[1:]
		}
		if len(argv) == 0 {
			return c.usageError("lock: missing COMMAND to run under the lock")
		}
		if o.ttl < time.Millisecond {
			return c.usageError("lock: --ttl must be at least 1ms")
		}
		return c.lock(&o, key, argv)
	case "info", "list", "cluster":
		pos, err := parseInterspersed(fs, rest)
		if err != nil {
			return c.usageError("%s: %v", cmd, err)
		}
		want := map[string]int{"info": 1, "list": 0, "cluster": 0}[cmd]
		if len(pos) != want {
			if want == 1 {
				return c.usageError("%s: want exactly one KEY, got %d arguments", cmd, len(pos))
			}
			return c.usageError("%s: takes no arguments, got %q", cmd, pos)
		}
		return c.inspect(&o, cmd, pos)
	default:
		return c.usageError("unknown command %q", cmd)
	}
}

// parseInterspersed parses flags that may come before, between or after
// positional arguments, and returns the positional ones.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// newClient returns a client for o.
func newClient(o *options) (*clients.Client, error) {
	tc, err := o.tlsConfig()
	if err != nil {
		return nil, err
	}
	return clients.New(clients.Config{Addrs: o.addrs, Password: o.password, RequestTimeout: o.requestTimeout, TLSConfig: tc})
}

// tlsConfig returns the TLS configuration o asks for, or nil for plain TCP.
func (o *options) tlsConfig() (*tls.Config, error) {
	if !o.tls && o.caCert == "" && o.cert == "" && o.key == "" {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if o.caCert != "" {
		roots, err := tlsconf.ReadCAFile(o.caCert)
		if err != nil {
			return nil, fmt.Errorf("--cacert: %w", err)
		}
		tc.RootCAs = roots
	}
	if o.cert != "" || o.key != "" {
		pair, err := tls.LoadX509KeyPair(o.cert, o.key)
		if err != nil {
			return nil, fmt.Errorf("--cert and --key: %w", err)
		}
		tc.Certificates = []tls.Certificate{pair}
	}
	return tc, nil
}

// interruptible returns a context cancelled when a signal arrives, and the
// signal (nil if none came) once the context ended.
func (c *cli) interruptible() (context.Context, func() os.Signal) {
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan os.Signal, 1)
	go func() {
		select {
		case s := <-c.signals:
			got <- s
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, func() os.Signal {
		cancel()
		select {
		case s := <-got:
			return s
		default:
			return nil
		}
	}
}

// signalStatus is the conventional exit status after signal s: 128+N.
func signalStatus(s os.Signal) int {
	if n, ok := s.(syscall.Signal); ok {
		return 128 + int(n)
	}
	return exitError
}

// inspect runs info, list or cluster.
func (c *cli) inspect(o *options, cmd string, pos []string) int {
	cl, err := newClient(o)
	if err != nil {
		return c.usageError("%v", err)
	}
	defer cl.Close()
	ctx, stop := c.interruptible()
	var out any
	switch cmd {
	case "info":
		info, err := cl.Info(ctx, pos[0])
		switch {
		case errors.Is(err, clients.ErrNotFound):
			out = freeLock(pos[0])
		case err != nil:
			return c.fail(err, stop())
		default:
			out = info
		}
	case "list":
		locks, err := cl.List(ctx)
		if err != nil {
			return c.fail(err, stop())
		}
		out = locks
	case "cluster":
		ci, err := cl.ClusterInfo(ctx)
		if err != nil {
			return c.fail(err, stop())
		}
		out = ci
	}
	stop()
	if o.json {
		err = writeJSON(c.stdout, out)
	} else {
		err = writeTable(c.stdout, out)
	}
	if err != nil {
		fmt.Fprintf(c.stderr, "lockctl: %v\n", err)
		return exitError
	}
	return exitOK
}

// fail reports err and returns exitError, or the signal's status if a
// signal interrupted the request.
func (c *cli) fail(err error, sig os.Signal) int {
	if sig != nil {
		fmt.Fprintf(c.stderr, "lockctl: interrupted by %v\n", sig)
		return signalStatus(sig)
	}
	fmt.Fprintf(c.stderr, "lockctl: %v\n", err)
	return exitError
}
