package resp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/distlock/distlock/lockapi"
)

// fuzzService answers by the first byte of the key (or owner), covering
// every reply and error path, panics included.
func fuzzService() *fakeService {
	pick := func(s string) error {
		if s == "" {
			return nil
		}
		switch s[0] % 12 {
		case 0:
			return lockapi.ErrHeld
		case 1:
			return lockapi.ErrNotHeld
		case 2:
			return lockapi.ErrNotFound
		case 3:
			return fmt.Errorf("x: %w", lockapi.ErrNoQuorum)
		case 4:
			return lockapi.Invalidf("bad %q", s)
		case 5:
			return errors.New("line1\r\nline2")
		case 6:
			panic("fuzz panic")
		case 7:
			return context.DeadlineExceeded
		}
		return nil
	}
	lock := func(key string) lockapi.Lock {
		return lockapi.Lock{Key: key, Owner: "o\r\n", Token: uint64(len(key)), Remaining: -time.Second}
	}
	return &fakeService{
		acquireFn: func(_ context.Context, r lockapi.AcquireRequest) (lockapi.Lock, error) {
			return lock(r.Key), pick(r.Key)
		},
		renewFn: func(_ context.Context, r lockapi.RenewRequest) (lockapi.Lock, error) {
			return lock(r.Key), pick(r.Owner)
		},
		releaseFn: func(_ context.Context, r lockapi.ReleaseRequest) error { return pick(r.Key) },
		infoFn:    func(_ context.Context, key string) (lockapi.Lock, error) { return lock(key), pick(key) },
		listFn: func(context.Context) ([]lockapi.Lock, error) {
			return []lockapi.Lock{lock("a"), lock("")}, nil
		},
		clusterInfoFn: func(context.Context) (lockapi.ClusterInfo, error) { return testCluster, nil },
		doFn: func(_ context.Context, argv [][]byte) (lockapi.Value, error) {
			key := ""
			if len(argv) > 1 {
				key = string(argv[1])
			}
			if err := pick(key); err != nil {
				return lockapi.Value{}, err
			}
			deep := lockapi.BulkValue("a\r\nb")
			for range len(key) % 200 {
				deep = lockapi.ArrayValue(deep, lockapi.ErrorValue("E\r\nx"), lockapi.NilValue())
			}
			return deep, nil
		},
	}
}

// FuzzDispatch runs arbitrary argument vectors (data split at NUL bytes)
// through the dispatcher and checks that nothing panics and that every
// command leaves exactly one well-formed RESP reply.
func FuzzDispatch(f *testing.F) {
	for _, tc := range doCases {
		var parts [][]byte
		for _, a := range tc.args {
			parts = append(parts, []byte(a.(string)))
		}
		f.Add(bytes.Join(parts, []byte{0}), false, "")
	}
	f.Add([]byte("hello\x003\x00auth\x00default\x00pw\x00setname\x00n"), true, "pw")
	f.Add([]byte("lock.acquire\x00\x06\x00o\x001000"), true, "")
	f.Add([]byte("eval\x00aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\x000"), true, "")
	f.Add([]byte("client\x00tracking\x00on\x00optin"), true, "")
	f.Add([]byte("info\x00all"), false, "")
	f.Add([]byte("command"), false, "")
	s, err := New(Config{Service: fuzzService(), Logger: quietLogger()})
	if err != nil {
		f.Fatal(err)
	}
	sPass, err := New(Config{Service: fuzzService(), Logger: quietLogger(), Password: "pw"})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte, resp3 bool, password string) {
		srv := s
		if password != "" {
			srv = sPass
		}
		c := srv.newClient(nil, 1)
		c.resp3 = resp3
		args := bytes.Split(data, []byte{0})
		if len(args) > 16 {
			args = args[:16]
		}
		// Twice on one client, so state changes (HELLO, AUTH) are used.
		for range 2 {
			srv.dispatch(c, args)
			rest, err := parseRESP(c.out)
			if err != nil || len(rest) != 0 {
				t.Fatalf("%q: reply %q: %v (%d bytes left)", args, c.out, err, len(rest))
			}
			c.resetOut()
		}
	})
}

// parseRESP consumes one RESP2 or RESP3 value from b and returns the rest.
func parseRESP(b []byte) ([]byte, error) {
	line, rest, ok := bytes.Cut(b, []byte("\r\n"))
	if !ok || len(line) == 0 {
		return nil, fmt.Errorf("no line in %q", b)
	}
	if bytes.ContainsAny(line, "\r\n") {
		return nil, fmt.Errorf("newline inside %q", line)
	}
	body := string(line[1:])
	switch line[0] {
	case '+', '-':
		return rest, nil
	case ':':
		_, err := strconv.ParseInt(body, 10, 64)
		return rest, err
	case '_':
		if body != "" {
			return nil, fmt.Errorf("bad null %q", line)
		}
		return rest, nil
	case '#':
		if body != "t" && body != "f" {
			return nil, fmt.Errorf("bad boolean %q", line)
		}
		return rest, nil
	case '$':
		n, err := strconv.Atoi(body)
		if err != nil || n < -1 {
			return nil, fmt.Errorf("bad bulk %q", line)
		}
		if n == -1 {
			return rest, nil
		}
		if len(rest) < n+2 || string(rest[n:n+2]) != "\r\n" {
			return nil, fmt.Errorf("short bulk %q", b)
		}
		return rest[n+2:], nil
	case '*', '%':
		n, err := strconv.Atoi(body)
		if err != nil || n < -1 || (n == -1 && line[0] == '%') {
			return nil, fmt.Errorf("bad aggregate %q", line)
		}
		if line[0] == '%' {
			n *= 2
		}
		for range n {
			if rest, err = parseRESP(rest); err != nil {
				return nil, err
			}
		}
		return rest, nil
	}
	return nil, fmt.Errorf("unknown type %q", line)
}
