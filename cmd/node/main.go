// Command node runs one member of the distributed lock cluster: a RESP
// (Redis protocol) listener, an HTTP JSON sidecar with metrics and health
// checks, and a raft peer. Started alone it bootstraps a one-node cluster;
// with --peers it forms a cluster with the nodes listed.
//
// Every flag can also be set by an environment variable named DLOCK_ and the
// flag's name in upper case with dashes as underscores (--raft-port is
// DLOCK_RAFT_PORT); a flag on the command line wins.
package main

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/distlock/distlock/server"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	if len(args) > 0 && args[0] == "--health-check" {
		return healthCheck(args[1:], os.Getenv, os.ReadFile, os.Stderr)
	}
	cfg, logger, err := parseConfig(args, os.Getenv, os.ReadFile)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "node: %v\n", err)
		return 2
	}
	slog.SetDefault(logger)
	n, err := server.Start(cfg)
	if err != nil {
		logger.Error("cannot start", "err", err)
		return 1
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	select {
	case s := <-sig:
		logger.Info("shutting down", "signal", s.String())
	case <-n.Failed():
		n.Close()
		logger.Error("node stopped itself", "err", n.Err())
		return 1
	}
	if err := n.Close(); err != nil {
		logger.Error("shutdown", "err", err)
		return 1
	}
	return 0
}
