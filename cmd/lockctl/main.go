// Command lockctl runs a command while holding a distlock lock, and
// inspects locks and the cluster. Run "lockctl help" for usage; the logic
// lives in cli.go, run.go and format.go.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/redis/go-redis/v9"
)

func main() {
	// go-redis logs dial failures to stderr; lockctl reports errors itself.
	redis.SetLogger(quietLogger{})
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT)
	c := &cli{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv, signals: sigs}
	os.Exit(c.run(os.Args[1:]))
}

// quietLogger drops go-redis's log lines.
type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}
