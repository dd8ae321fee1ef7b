package drivers

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"
)

type etcdSystem struct {
	o       Options
	targets []string
	clis    []*clientv3.Client
}

func openEtcd(ctx context.Context, o Options) (System, error) {
	if o.LeaderOnly {
		return nil, errors.New("-leader-only applies to this server, not etcd")
	}
	s := &etcdSystem{o: o}
	for _, a := range o.Addrs {
		ep := a
		if !strings.Contains(ep, "://") {
			ep = "http://" + ep
		}
		s.targets = append(s.targets, ep)
		cli, err := clientv3.New(clientv3.Config{
			Endpoints:   []string{ep},
			DialTimeout: 5 * time.Second,
			Logger:      zap.NewNop(),
			Password:    "",
		})
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("%s: %w", ep, err)
		}
		s.clis = append(s.clis, cli)
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err = cli.Status(sctx, ep)
		cancel()
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("%s: %w", ep, err)
		}
	}
	return s, nil
}

func (s *etcdSystem) Targets() []string { return s.targets }
func (s *etcdSystem) HasTokens() bool   { return true }

func (s *etcdSystem) Close() error {
	var errs []error
	for _, c := range s.clis {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}

func (s *etcdSystem) ttlSeconds() int {
	sec := int((s.o.TTL + time.Second - 1) / time.Second)
	if sec < 1 {
		sec = 1
	}
	return sec
}

func (s *etcdSystem) NewClient(ctx context.Context, w int) (Client, error) {
	c := &etcdClient{cli: s.clis[w%len(s.clis)], ttl: s.ttlSeconds()}
	if err := c.ensureSession(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

type etcdClient struct {
	cli  *clientv3.Client
	ttl  int
	sess *concurrency.Session
	mu   *concurrency.Mutex
	key  string
}

// ensureSession (re)creates the client's session (its lease) when it has
// none or the old one expired.
func (c *etcdClient) ensureSession(ctx context.Context) error {
	if c.sess != nil {
		select {
		case <-c.sess.Done():
			c.sess = nil
		default:
			return nil
		}
	}
	sess, err := concurrency.NewSession(c.cli, concurrency.WithTTL(c.ttl), concurrency.WithContext(context.Background()))
	if err != nil {
		return fmt.Errorf("session: %w", err)
	}
	c.sess = sess
	return nil
}

// createRevision is the lock key's create revision, the fencing token etcd
// documents for its Mutex (Mutex.IsOwner compares against it).
func createRevision(m *concurrency.Mutex) uint64 {
	cmp := pb.Compare(m.IsOwner())
	return uint64(cmp.GetCreateRevision())
}

func (c *etcdClient) Acquire(ctx context.Context, key string, wait bool, waitFor time.Duration) (Result, error) {
	if err := c.ensureSession(ctx); err != nil {
		return Result{Tries: 1}, err
	}
	m := concurrency.NewMutex(c.sess, "/"+key)
	var err error
	if wait {
		wctx, cancel := context.WithTimeout(ctx, waitFor)
		err = m.Lock(wctx)
		timedOut := wctx.Err() != nil
		cancel()
		if err != nil && timedOut {
			return Result{Tries: 1}, nil
		}
	} else {
		err = m.TryLock(ctx)
		if errors.Is(err, concurrency.ErrLocked) {
			return Result{Tries: 1}, nil
		}
	}
	if err != nil {
		return Result{Tries: 1}, err
	}
	c.mu, c.key = m, key
	return Result{Granted: true, Token: createRevision(m), HasToken: true, Tries: 1}, nil
}

func (c *etcdClient) Release(ctx context.Context, key string) error {
	if c.mu == nil || key != c.key {
		return fmt.Errorf("release of %q, which this client did not acquire", key)
	}
	err := c.mu.Unlock(ctx)
	if errors.Is(err, concurrency.ErrLockReleased) {
		return ErrNotHeld
	}
	if err == nil {
		c.mu = nil
	}
	return err
}

func (c *etcdClient) Close() error {
	if c.sess == nil {
		return nil
	}
	// Revoke the lease so that the keys go at once.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_, err := c.cli.Revoke(ctx, c.sess.Lease())
	c.sess.Orphan()
	return err
}
