package clients_test

// The examples need a running cluster, so most have no "Output:" comment:
// they are compiled by go test but not run. Start a node (go run
// ./cmd/node) to try them.

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/distlock/distlock/clients"
)

// writeFenced stands for a write to the resource the lock protects, which
// refuses tokens lower than the highest it has seen.
func writeFenced(ctx context.Context, token uint64, data string) error { return nil }

// A job that must not run twice at once: take the lock, work while the
// lease lasts, pass the fencing token along with every write, release.
func Example() {
	c, err := clients.New(clients.Config{
		Addrs: []string{"10.0.0.1:6379", "10.0.0.2:6379", "10.0.0.3:6379"},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	ctx := context.Background()
	lease, err := c.Acquire(ctx, "nightly-report", clients.AcquireOptions{TTL: 15 * time.Second})
	if errors.Is(err, clients.ErrHeld) {
		log.Print("another instance is running the report")
		return
	}
	if err != nil {
		log.Fatal(err)
	}
	defer lease.Release(context.Background())

	// The lease renews itself every 5s. Stop working when it is lost.
	work, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		<-lease.Done()
		cancel()
	}()
	for i := 0; i < 3 && work.Err() == nil; i++ {
		if err := writeFenced(work, lease.Token(), fmt.Sprint("part ", i)); err != nil {
			log.Print(err)
		}
	}
	if err := lease.Err(); errors.Is(err, clients.ErrLeaseLost) {
		log.Printf("lost the lock midway: %v", err)
	}
}

// Queue for a lock held by someone else, for up to a minute, first come
// first served (the server keeps the queue).
func ExampleClient_Acquire_wait() {
	c, err := clients.New(clients.Config{Addrs: []string{"127.0.0.1:6379"}})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	lease, err := c.Acquire(context.Background(), "deploy", clients.AcquireOptions{
		TTL:  30 * time.Second,
		Wait: time.Minute,
	})
	switch {
	case errors.Is(err, clients.ErrHeld):
		fmt.Println("still held after a minute")
	case errors.Is(err, clients.ErrNoQuorum):
		fmt.Println("the cluster is down")
	case err != nil:
		log.Fatal(err)
	default:
		fmt.Println("deploying with fencing token", lease.Token())
		lease.Release(context.Background())
	}
}

// Let the lease run out when the worker stops making progress, instead of
// renewing it forever.
func ExampleAcquireOptions_renewCheck() {
	c, err := clients.New(clients.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	var lastProgress time.Time // updated by the worker
	lease, err := c.Acquire(context.Background(), "compaction", clients.AcquireOptions{
		TTL: 10 * time.Second,
		RenewCheck: func() error {
			if time.Since(lastProgress) > time.Minute {
				return errors.New("no progress for a minute")
			}
			return nil
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	<-lease.Done()
	fmt.Println(lease.Err())
}

// A lease without automatic renewal lasts one TTL unless renewed by hand.
func ExampleLease_Renew() {
	c, err := clients.New(clients.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	lease, err := c.Acquire(ctx, "batch", clients.AcquireOptions{TTL: 20 * time.Second, NoAutoRenew: true})
	if err != nil {
		log.Fatal(err)
	}
	for step := 0; step < 10; step++ {
		// ... one step of at most a few seconds ...
		if err := lease.Renew(ctx); err != nil {
			log.Fatalf("lock lost: %v", err)
		}
	}
	if err := lease.Release(ctx); err != nil {
		log.Print(err)
	}
}

// Who holds a lock, and for how long.
func ExampleClient_Info() {
	c, err := clients.New(clients.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	info, err := c.Info(context.Background(), "nightly-report")
	if errors.Is(err, clients.ErrNotFound) {
		fmt.Println("free")
		return
	}
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("held by %s (token %d) for %s more, %d waiting\n", info.Owner, info.Token, info.TTL, info.Waiters)
}

// The cluster as the node the client uses sees it.
func ExampleClient_ClusterInfo() {
	c, err := clients.New(clients.Config{Addrs: []string{"127.0.0.1:6379", "127.0.0.1:6380"}})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ci, err := c.ClusterInfo(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("leader %s, term %d, quorum %v\n", ci.LeaderID, ci.Term, ci.HasQuorum)
	for _, n := range ci.Nodes {
		fmt.Println(n.ID, n.State, n.RESPAddress)
	}
}

// Error replies are ServerErrors that match this package's sentinels.
func ExampleServerError() {
	var err error = &clients.ServerError{Addr: "127.0.0.1:6379", Code: "CLUSTERDOWN", Message: "CLUSTERDOWN no quorum"}
	err = fmt.Errorf("acquire %q: %w", "job", err)
	fmt.Println(errors.Is(err, clients.ErrNoQuorum))
	var se *clients.ServerError
	if errors.As(err, &se) {
		fmt.Println(se.Code, "from", se.Addr)
	}
	// Output:
	// true
	// CLUSTERDOWN from 127.0.0.1:6379
}
