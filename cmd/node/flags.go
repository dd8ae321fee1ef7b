package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/distlock/distlock/lockapi"
	"github.com/distlock/distlock/server"
	"github.com/distlock/distlock/tlsconf"
)

// defaultRESPPort is Redis's port, used by a node on the default --port.
const defaultRESPPort = 6379

// envPrefix starts the environment variable of every flag.
const envPrefix = "DLOCK_"

// envName returns the environment variable that sets a flag.
func envName(flagName string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// parseConfig turns command-line arguments and environment variables into a
// server configuration and a logger. Flags given on the command line win
// over the environment.
func parseConfig(args []string, getenv func(string) string, readFile func(string) ([]byte, error)) (server.Config, *slog.Logger, error) {
	fs := flag.NewFlagSet("node", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var (
		id          = fs.String("id", "node1", "unique node identifier")
		port        = fs.Int("port", 8001, "HTTP API port")
		raftPort    = fs.Int("raft-port", 9001, "raft consensus port")
		respPort    = fs.Int("resp-port", 6379, "RESP (Redis protocol) port")
		dataDir     = fs.String("data-dir", "./data", "data directory; the node keeps its state in <data-dir>/<id>")
		peers       = fs.String("peers", "", "comma-separated peer list (id:host:port of each other node's raft port)")
		bind        = fs.String("bind", "127.0.0.1", "address the listeners bind to (0.0.0.0 for every interface)")
		advertise   = fs.String("advertise", "", "host other nodes reach this node's raft port at (default: localhost for a loopback bind, else the hostname)")
		election    = fs.Duration("election-timeout", 150*time.Millisecond, "base election timeout (randomized between 1x and 2x)")
		heartbeat   = fs.Duration("heartbeat-interval", 50*time.Millisecond, "leader heartbeat interval when idle")
		snapEvery   = fs.Duration("snapshot-interval", 5*time.Minute, "automatic snapshot interval")
		snapAfter   = fs.Uint64("snapshot-threshold", 8192, "log entries since the last snapshot that trigger a new one")
		trailing    = fs.Uint64("trailing-logs", 10240, "log entries kept behind a snapshot for slow followers")
		join        = fs.String("join", "", "raft address (host:port) of a member of an existing cluster to join instead of bootstrapping")
		maxTTL      = fs.Duration("max-ttl", lockapi.DefaultMaxTTL, "longest lock TTL accepted")
		maxWait     = fs.Duration("max-wait", lockapi.DefaultMaxWait, "longest WAIT accepted by LOCK.ACQUIRE")
		maxClients  = fs.Int("maxclients", 10000, "maximum concurrent RESP connections")
		pass        = fs.String("requirepass", "", "password required by AUTH (RESP) and as a bearer token (HTTP); prefer --requirepass-file or the environment")
		passFile    = fs.String("requirepass-file", "", "file holding the password (trailing newline ignored)")
		logLevel    = fs.String("log-level", "info", "log level: debug, info, warn or error")
		skewFile    = fs.String("test-clock-skew-file", "", "TEST ONLY: shift this node's wall clock by the duration written in this file")
		dialMapFile = fs.String("test-dial-map", "", "TEST ONLY: file of lines 'host:port=host:port' rewriting the peer addresses this node dials (to route links through proxies)")
		unsafeBugs  = fs.String("test-unsafe", "", "TEST ONLY: plant bugs (comma-separated: stale-reads, wall-clock-expiry) to prove the safety tests catch them")
		logFormat   = fs.String("log-format", "text", "log format: text or json")
		tlsCert     = fs.String("tls-cert-file", "", "this node's certificate (PEM, for server and client authentication): with --tls-key-file and --tls-ca-cert-file, every port serves TLS only and peers authenticate each other")
		tlsKey      = fs.String("tls-key-file", "", "the key of --tls-cert-file (both are read again when they change)")
		tlsCA       = fs.String("tls-ca-cert-file", "", "CA certificates (PEM) that sign the peers' certificates, and the clients' unless --tls-client-ca-cert-file is set")
		tlsClientCA = fs.String("tls-client-ca-cert-file", "", "CA certificates (PEM) that sign the RESP and HTTP clients' certificates (default: --tls-ca-cert-file)")
		tlsClients  = fs.String("tls-auth-clients", "yes", "whether RESP and HTTP clients must present a certificate of the CA: yes, optional or no (peers always must)")
		pprofOn     = fs.Bool("enable-pprof", false, "serve Go's profiler under /debug/pprof/ on the HTTP port")
		memHeadroom = fs.Int("memory-headroom", 50, "keep a soft memory limit of the live heap plus this percentage (at least 256 MiB) and a heap goal of at least 64 MiB; 0 leaves Go's GOGC default; ignored when GOMEMLIMIT is set (an explicit GOGC keeps its own percentage)")
	)
	fs.Usage = func() {}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printUsage(fs)
		}
		return server.Config{}, nil, err
	}
	if fs.NArg() > 0 {
		return server.Config{}, nil, fmt.Errorf("unexpected argument %q (flags start with --)", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] {
			return
		}
		if v := getenv(envName(f.Name)); v != "" {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %v", envName(f.Name), v, err))
			}
		}
	})
	if len(errs) > 0 {
		return server.Config{}, nil, errors.Join(errs...)
	}

	logger, err := newLogger(*logLevel, *logFormat)
	if err != nil {
		return server.Config{}, nil, err
	}
	listeners := func() []namedPort {
		return []namedPort{{"port", *port}, {"raft-port", *raftPort}, {"resp-port", *respPort}}
	}
	for _, l := range listeners() {
		if l.port < 0 || l.port > 65535 {
			errs = append(errs, fmt.Errorf("--%s %d is not a port (0-65535; 0 picks a free one)", l.flag, l.port))
		}
	}
	if ip := net.ParseIP(*bind); ip == nil && *bind != "localhost" {
		errs = append(errs, fmt.Errorf("--bind %q is not an IP address", *bind))
	}
	peerList, err := server.ParsePeers(*peers)
	if err != nil {
		errs = append(errs, fmt.Errorf("--peers: %w", err))
	}
	password := *pass
	if *passFile != "" {
		b, err := readFile(*passFile)
		if err != nil {
			errs = append(errs, fmt.Errorf("--requirepass-file: %w", err))
		}
		password = strings.TrimRight(string(b), "\r\n")
	}
	var tlsConfig *tlsconf.Config
	if *tlsCert != "" || *tlsKey != "" || *tlsCA != "" || *tlsClientCA != "" {
		auth, err := tlsconf.ParseClientAuth(*tlsClients)
		if err == nil {
			tlsConfig, err = tlsconf.Load(tlsconf.Files{CertFile: *tlsCert, KeyFile: *tlsKey, CAFile: *tlsCA,
				ClientCAFile: *tlsClientCA, ClientAuth: auth, Logger: logger})
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("--tls-*: %w", err))
		}
	}
	var unsafe server.UnsafeHooks
	for _, bug := range strings.Split(*unsafeBugs, ",") {
		switch strings.TrimSpace(bug) {
		case "":
		case "stale-reads":
			unsafe.StaleReads = true
		case "wall-clock-expiry":
			unsafe.WallClockExpiry = true
		default:
			errs = append(errs, fmt.Errorf("--test-unsafe %q: want stale-reads or wall-clock-expiry", bug))
		}
	}
	if len(errs) > 0 {
		return server.Config{}, nil, errors.Join(errs...)
	}
	if !set["resp-port"] && getenv(envName("resp-port")) == "" {
		*respPort = defaultRESPPort + *port - 8001
		if *port == 0 || *respPort <= 0 || *respPort > 65535 {
			*respPort = defaultRESPPort
		}
	}
	if err := distinctPorts(listeners()); err != nil { // the RESP port may be derived by now
		return server.Config{}, nil, err
	}
	addr := func(p int) string { return net.JoinHostPort(*bind, strconv.Itoa(p)) }
	cfg := server.Config{
		ID:                *id,
		DataDir:           *dataDir,
		RaftAddr:          addr(*raftPort),
		RESPAddr:          addr(*respPort),
		HTTPAddr:          addr(*port),
		Peers:             peerList,
		ElectionTimeout:   *election,
		HeartbeatInterval: *heartbeat,
		SnapshotInterval:  *snapEvery,
		SnapshotThreshold: *snapAfter,
		TrailingLogs:      *trailing,
		Join:              *join,
		MaxTTL:            *maxTTL,
		MaxWait:           *maxWait,
		MaxClients:        *maxClients,
		Password:          password,
		TLS:               tlsConfig,
		Logger:            logger,
		Unsafe:            unsafe,
		EnablePprof:       *pprofOn,
		MemoryHeadroom:    *memHeadroom,
	}
	if *dialMapFile != "" {
		b, err := readFile(*dialMapFile)
		if err != nil {
			return server.Config{}, nil, fmt.Errorf("--test-dial-map: %w", err)
		}
		cfg.Unsafe.DialMap = map[string]string{}
		for _, line := range strings.Split(string(b), "\n") {
			if from, to, ok := strings.Cut(strings.TrimSpace(line), "="); ok {
				cfg.Unsafe.DialMap[strings.TrimSpace(from)] = strings.TrimSpace(to)
			}
		}
	}
	if *skewFile != "" {
		cfg.Clock = server.NewSkewFileClock(*skewFile)
	}
	if *advertise != "" {
		cfg.RaftAdvertise = net.JoinHostPort(*advertise, strconv.Itoa(*raftPort))
	}
	return cfg, logger, nil
}

// namedPort is a listener's port and the flag that sets it.
type namedPort struct {
	flag string
	port int
}

// distinctPorts refuses two listeners on one port (0, a free one, aside),
// before the node creates its data directory.
func distinctPorts(ports []namedPort) error {
	for i, a := range ports {
		for _, b := range ports[i+1:] {
			if a.port != 0 && a.port == b.port {
				return fmt.Errorf("--%s and --%s are both %d: each listener needs a port of its own", a.flag, b.flag, a.port)
			}
		}
	}
	return nil
}

func newLogger(level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}

func printUsage(fs *flag.FlagSet) {
	w := os.Stdout
	fmt.Fprintln(w, "Usage: node [flags]\n       node --health-check [flags]\n\nRuns one node of the distributed lock cluster. With --health-check (first), probes\nthe node those flags describe instead: exit 0 when its /health/ready answers 200.\n\nFlags (each also read from the environment variable shown):")
	fs.VisitAll(func(f *flag.Flag) {
		fmt.Fprintf(w, "  --%s (default %q, env %s)\n      %s\n", f.Name, f.DefValue, envName(f.Name), f.Usage)
	})
}
