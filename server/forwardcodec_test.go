package server

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/distlock/distlock/lockapi"
)

func TestRequestCodecRoundTrip(t *testing.T) {
	cases := []fwdRequest{
		{},
		{Op: "acquire", Key: "k", Owner: "o", TTL: 30 * time.Second, Wait: 5 * time.Second, Timeout: 15 * time.Second, Hops: 1},
		{Op: "release", Key: "k", Owner: "o", Token: 1<<64 - 1},
		{Op: "register", NodeID: "node2", RESPAddr: "127.0.0.1:6380", HTTPAddr: "127.0.0.1:8002"},
		{Op: "join", NodeID: "node4", Addr: "10.0.0.4:9001"},
		{Op: "do", Argv: [][]byte{[]byte("SET"), []byte("k"), {}, []byte("\x00\xff\r\n")}},
		{Op: "acquire", Key: strings.Repeat("k", 10_000), TTL: -time.Second},
	}
	for _, want := range cases {
		got, err := decodeRequest(encodeRequest(want))
		if err != nil {
			t.Fatalf("%+v: %v", want, err)
		}
		for i := range got.Argv { // an empty argument decodes as empty, not nil
			if len(got.Argv[i]) == 0 && want.Argv[i] != nil && len(want.Argv[i]) == 0 {
				got.Argv[i] = want.Argv[i]
			}
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", got, want)
		}
	}
}

func TestResponseCodecRoundTrip(t *testing.T) {
	at := time.Unix(1_800_000_000, 123_456_789)
	lock := lockapi.Lock{Key: "k", Owner: "o", Token: 42, Version: 3, TTL: time.Minute, Remaining: 59 * time.Second, ExpiresAt: at, Waiters: 2}
	nested := lockapi.Value{Kind: lockapi.KindArray, Elems: []lockapi.Value{lockapi.IntValue(-7), lockapi.StatusValue("OK"),
		{Kind: lockapi.KindArray, Elems: []lockapi.Value{lockapi.NilValue()}}}}
	cases := []fwdResponse{
		{},
		{Lock: &lock},
		{Lock: &lockapi.Lock{Key: "p", Owner: "v", Persistent: true}},
		{Locks: []lockapi.Lock{}},
		{Locks: []lockapi.Lock{lock, {Key: "b"}}},
		{Value: &nested},
		{Code: "held", Error: "lock is held by another owner", Lock: &lock},
	}
	for _, want := range cases {
		got, err := decodeResponse(encodeResponse(want))
		if err != nil {
			t.Fatalf("%+v: %v", want, err)
		}
		if got.Lock != nil && want.Lock != nil && got.Lock.ExpiresAt.Equal(want.Lock.ExpiresAt) {
			got.Lock.ExpiresAt = want.Lock.ExpiresAt // same instant; the location may differ
		}
		for i := range got.Locks {
			if got.Locks[i].ExpiresAt.Equal(want.Locks[i].ExpiresAt) {
				got.Locks[i].ExpiresAt = want.Locks[i].ExpiresAt
			}
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", got, want)
		}
	}
}

func TestCodecRejectsBadBodies(t *testing.T) {
	good := encodeResponse(fwdResponse{Lock: &lockapi.Lock{Key: "k"}})
	deep := []byte{codecVersion, 0, 0, respHasValue}
	for range maxValueDepth + 2 {
		deep = append(deep, byte(lockapi.KindArray)*2, 0, 0, 1) // kind (zigzag), str, int, one element
	}
	cases := map[string][]byte{
		"empty":             nil,
		"wrong version":     append([]byte{9}, good[1:]...),
		"truncated":         good[:len(good)-2],
		"trailing bytes":    append(append([]byte{}, good...), 0),
		"unknown flag":      {codecVersion, 0, 0, 0x80},
		"huge count":        {codecVersion, 0, 0, respHasLocks, 0xff, 0xff, 0xff, 0xff, 0x0f},
		"too deeply nested": deep,
	}
	for name, body := range cases {
		if _, err := decodeResponse(body); !errors.Is(err, errBadBody) {
			t.Errorf("%s: %v, want errBadBody", name, err)
		}
	}
	if _, err := decodeRequest(encodeRequest(fwdRequest{Op: "info"})[:3]); !errors.Is(err, errBadBody) {
		t.Errorf("truncated request: %v", err)
	}
}

func FuzzDecodeBodies(f *testing.F) {
	f.Add(encodeRequest(fwdRequest{Op: "acquire", Key: "k", Owner: "o", TTL: time.Second}))
	f.Add(encodeRequest(fwdRequest{Op: "do", Argv: [][]byte{[]byte("GET"), []byte("k")}}))
	f.Add(encodeResponse(fwdResponse{Lock: &lockapi.Lock{Key: "k", Owner: "o", Token: 5}}))
	f.Add(encodeResponse(fwdResponse{Locks: []lockapi.Lock{{Key: "a"}}, Value: &lockapi.Value{Kind: lockapi.KindArray, Elems: []lockapi.Value{{}}}}))
	f.Fuzz(func(t *testing.T, body []byte) {
		if r, err := decodeRequest(body); err == nil {
			if again, err := decodeRequest(encodeRequest(r)); err != nil || !reflect.DeepEqual(normalizeArgv(again), normalizeArgv(r)) {
				t.Fatalf("request does not round-trip: %v", err)
			}
		}
		if r, err := decodeResponse(body); err == nil {
			if _, err := decodeResponse(encodeResponse(r)); err != nil {
				t.Fatalf("response does not round-trip: %v", err)
			}
		}
	})
}

func normalizeArgv(r fwdRequest) fwdRequest {
	for i, a := range r.Argv {
		if len(a) == 0 {
			r.Argv[i] = nil
		}
	}
	return r
}

var (
	benchReq  = fwdRequest{Op: "acquire", Key: "lock:orders:000042", Owner: "6f1c2a0e-8a4b-4c7e-9d2f-3b5a7c9e1d00", TTL: 30 * time.Second, Timeout: 10 * time.Second}
	benchLock = lockapi.Lock{Key: benchReq.Key, Owner: benchReq.Owner, Token: 123456, Version: 1, TTL: 30 * time.Second, Remaining: 30 * time.Second, ExpiresAt: time.Unix(1_800_000_000, 0)}
)

// BenchmarkForwardCodec measures what a follower and the leader spend on
// the bodies of one forwarded acquire: encode and decode the request and
// the answer, binary against the encoding/json this codec replaced.
func BenchmarkForwardCodec(b *testing.B) {
	b.Run("binary", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			if _, err := decodeRequest(encodeRequest(benchReq)); err != nil {
				b.Fatal(err)
			}
			if _, err := decodeResponse(encodeResponse(fwdResponse{Lock: &benchLock})); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("json", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			var req fwdRequest
			body, _ := json.Marshal(benchReq)
			if err := json.Unmarshal(body, &req); err != nil {
				b.Fatal(err)
			}
			var resp fwdResponse
			body, _ = json.Marshal(fwdResponse{Lock: &benchLock})
			if err := json.Unmarshal(body, &resp); err != nil {
				b.Fatal(err)
			}
		}
	})
}
