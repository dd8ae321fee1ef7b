package httpapi

import (
	"context"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/distlock/distlock/lockapi"
)

// TestAcquire_GoldenBody pins the acquire reply byte for byte.
func TestAcquire_GoldenBody(t *testing.T) {
	svc := &fakeService{AcquireFn: func(context.Context, lockapi.AcquireRequest) (lockapi.Lock, error) {
		return sampleLock, nil
	}}
	a, _ := newAPI(t, svc, nil)
	rec := do(a, "POST", "/locks/acquire", `{"key":"resource-1","owner":"client-abc","ttl":"30s"}`)
	const golden = `{"success":true,"lock":{"key":"resource-1","owner":"client-abc","ttl":"30s",` +
		`"expires_at":"2024-01-15T10:30:30.000Z","version":1,"fencing_token":42}}` + "\n"
	if rec.Code != http.StatusOK || rec.Body.String() != golden {
		t.Fatalf("got %d %q\nwant 200 %q", rec.Code, rec.Body, golden)
	}
}

// TestEndpoints checks every endpoint's success reply.
func TestEndpoints(t *testing.T) {
	local := time.FixedZone("CET", 3600)
	other := lockapi.Lock{Key: "b/c", Owner: "o2", Token: 7, Version: 3, TTL: 1500 * time.Millisecond,
		ExpiresAt: time.Date(2024, 1, 15, 11, 0, 0, 123456789, local)}
	svc := &fakeService{
		AcquireFn: func(context.Context, lockapi.AcquireRequest) (lockapi.Lock, error) { return sampleLock, nil },
		RenewFn: func(context.Context, lockapi.RenewRequest) (lockapi.Lock, error) {
			l := sampleLock
			l.Version = 2
			return l, nil
		},
		ReleaseFn: func(context.Context, lockapi.ReleaseRequest) error { return nil },
		InfoFn: func(_ context.Context, key string) (lockapi.Lock, error) {
			if key == "b/c" {
				return other, nil
			}
			return sampleLock, nil
		},
		ListFn: func(context.Context) ([]lockapi.Lock, error) { return []lockapi.Lock{sampleLock, other}, nil },
		ClusterInfoFn: func(context.Context) (lockapi.ClusterInfo, error) {
			return lockapi.ClusterInfo{LeaderID: "node1", Term: 5, QuorumSize: 2, HasQuorum: true,
				Nodes: []lockapi.NodeInfo{
					{ID: "node1", State: "leader"},
					{ID: "node2", State: "follower", Address: "10.0.0.2:9002", RESPAddr: "10.0.0.2:6379", HTTPAddr: "10.0.0.2:8002"},
					{ID: "node3", State: "follower"},
				}}, nil
		},
	}
	a, _ := newAPI(t, svc, nil)
	otherJSON := `{"key":"b/c","owner":"o2","ttl":"1.5s","expires_at":"2024-01-15T10:00:00.123Z","version":3,"fencing_token":7}`
	tests := []struct {
		name, method, path, body, want string
	}{
		{"acquire", "POST", "/locks/acquire", `{"key":"resource-1","owner":"client-abc","ttl":"30s"}`,
			`{"success":true,"lock":` + sampleLockJSON + `}`},
		{"renew", "POST", "/locks/renew", `{"key":"resource-1","owner":"client-abc","ttl":"30s","fencing_token":42}`,
			`{"success":true,"lock":` + strings.Replace(sampleLockJSON, `"version":1`, `"version":2`, 1) + `}`},
		{"release", "POST", "/locks/release", `{"key":"resource-1","owner":"client-abc"}`, `{"success":true}`},
		{"info", "GET", "/locks/resource-1", "", `{"success":true,"lock":` + sampleLockJSON + `}`},
		{"info slash key", "GET", "/locks/b/c", "", `{"success":true,"lock":` + otherJSON + `}`},
		{"info escaped key", "GET", "/locks/b%2Fc", "", `{"success":true,"lock":` + otherJSON + `}`},
		{"list", "GET", "/locks", "", `{"success":true,"count":2,"locks":[` + sampleLockJSON + `,` + otherJSON + `]}`},
		{"cluster info", "GET", "/cluster/info", "", `{"leader_id":"node1","term":5,"quorum_size":2,"has_quorum":true,
			"nodes":[{"id":"node1","state":"leader"},
			{"id":"node2","state":"follower","address":"10.0.0.2:9002","resp_address":"10.0.0.2:6379","http_address":"10.0.0.2:8002"},
			{"id":"node3","state":"follower"}]}`},
		{"health", "GET", "/health", "", `{"status":"ok","node_id":"node1"}`},
		{"healthz", "GET", "/healthz", "", `{"status":"ok","node_id":"node1"}`},
		{"ready", "GET", "/health/ready", "", `{"status":"ready","node_id":"node1","leader_id":"node1","has_quorum":true}`},
		{"readyz", "GET", "/readyz", "", `{"status":"ready","node_id":"node1","leader_id":"node1","has_quorum":true}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkJSON(t, do(a, tt.method, tt.path, tt.body), http.StatusOK, tt.want)
		})
	}
}

// TestEmptyCollections checks that empty lists are [] rather than null.
func TestEmptyCollections(t *testing.T) {
	svc := &fakeService{
		ListFn: func(context.Context) ([]lockapi.Lock, error) { return nil, nil },
		ClusterInfoFn: func(context.Context) (lockapi.ClusterInfo, error) {
			return lockapi.ClusterInfo{}, nil
		},
	}
	a, _ := newAPI(t, svc, nil)
	checkJSON(t, do(a, "GET", "/locks", ""), 200, `{"success":true,"locks":[],"count":0}`)
	checkJSON(t, do(a, "GET", "/cluster/info", ""), 200,
		`{"leader_id":"","term":0,"nodes":[],"quorum_size":0,"has_quorum":false}`)
}

// TestRequests checks what reaches the service for each accepted body.
func TestRequests(t *testing.T) {
	var got any
	svc := &fakeService{
		AcquireFn: func(_ context.Context, r lockapi.AcquireRequest) (lockapi.Lock, error) {
			got = r
			return sampleLock, nil
		},
		RenewFn: func(_ context.Context, r lockapi.RenewRequest) (lockapi.Lock, error) {
			got = r
			return sampleLock, nil
		},
		ReleaseFn: func(_ context.Context, r lockapi.ReleaseRequest) error {
			got = r
			return nil
		},
		InfoFn: func(_ context.Context, k string) (lockapi.Lock, error) {
			got = k
			return sampleLock, nil
		},
	}
	a, _ := newAPI(t, svc, nil)
	tests := []struct {
		name, method, path, body string
		want                     any
	}{
		{"ttl string", "POST", "/locks/acquire", `{"key":"k","owner":"o","ttl":"30s"}`,
			lockapi.AcquireRequest{Key: "k", Owner: "o", TTL: 30 * time.Second}},
		{"ttl ms string", "POST", "/locks/acquire", `{"key":"k","owner":"o","ttl":"1500"}`,
			lockapi.AcquireRequest{Key: "k", Owner: "o", TTL: 1500 * time.Millisecond}},
		{"ttl ms number", "POST", "/locks/acquire", `{"key":"k","owner":"o","ttl":1500}`,
			lockapi.AcquireRequest{Key: "k", Owner: "o", TTL: 1500 * time.Millisecond}},
		{"wait", "POST", "/locks/acquire", `{"key":"k","owner":"o","ttl":"30s","wait":"5s"}`,
			lockapi.AcquireRequest{Key: "k", Owner: "o", TTL: 30 * time.Second, Wait: 5 * time.Second}},
		{"wait number", "POST", "/locks/acquire", `{"key":"k","owner":"o","ttl":"30s","wait":250}`,
			lockapi.AcquireRequest{Key: "k", Owner: "o", TTL: 30 * time.Second, Wait: 250 * time.Millisecond}},
		{"wait null zero", "POST", "/locks/acquire", `{"key":"k","owner":"o","ttl":"30s","wait":null}`,
			lockapi.AcquireRequest{Key: "k", Owner: "o", TTL: 30 * time.Second}},
		{"wait 0", "POST", "/locks/acquire", `{"key":"k","owner":"o","ttl":"30s","wait":"0s"}`,
			lockapi.AcquireRequest{Key: "k", Owner: "o", TTL: 30 * time.Second}},
		{"unicode key, spaces", "POST", "/locks/acquire", " \n{\"key\":\"ключ <&>\",\"owner\":\"o\",\"ttl\":\"1m\"}\n ",
			lockapi.AcquireRequest{Key: "ключ <&>", Owner: "o", TTL: time.Minute}},
		{"renew no token", "POST", "/locks/renew", `{"key":"k","owner":"o","ttl":"10s"}`,
			lockapi.RenewRequest{Key: "k", Owner: "o", TTL: 10 * time.Second}},
		{"renew fencing_token", "POST", "/locks/renew", `{"key":"k","owner":"o","ttl":"10s","fencing_token":42}`,
			lockapi.RenewRequest{Key: "k", Owner: "o", TTL: 10 * time.Second, Token: 42}},
		{"renew token string", "POST", "/locks/renew", `{"key":"k","owner":"o","ttl":"10s","token":"18446744073709551615"}`,
			lockapi.RenewRequest{Key: "k", Owner: "o", TTL: 10 * time.Second, Token: 1<<64 - 1}},
		{"renew both agree", "POST", "/locks/renew", `{"key":"k","owner":"o","ttl":"10s","token":7,"fencing_token":"7"}`,
			lockapi.RenewRequest{Key: "k", Owner: "o", TTL: 10 * time.Second, Token: 7}},
		{"release", "POST", "/locks/release", `{"key":"k","owner":"o"}`,
			lockapi.ReleaseRequest{Key: "k", Owner: "o"}},
		{"release token", "POST", "/locks/release", `{"key":"k","owner":"o","token":9}`,
			lockapi.ReleaseRequest{Key: "k", Owner: "o", Token: 9}},
		{"info dot key", "GET", "/locks/%2E", "", "."},
		{"info key named acquire", "GET", "/locks/acquire", "", "acquire"},
		{"info key with trailing slash", "GET", "/locks/a/", "", "a/"},
		{"info percent key", "GET", "/locks/100%25%20sure", "", "100% sure"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got = nil
			rec := do(a, tt.method, tt.path, tt.body)
			if rec.Code != http.StatusOK {
				t.Fatalf("status %d: %s", rec.Code, rec.Body)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("service got %+v, want %+v", got, tt.want)
			}
		})
	}
}

// TestBadInput checks that malformed requests get 400 (or 413) and never
// reach the service.
func TestBadInput(t *testing.T) {
	svc := &fakeService{}
	a, _ := newAPI(t, svc, func(c *Config) { c.MaxTTL = time.Hour; c.MaxWait = time.Minute })
	acq := func(fields string) string { return `{"key":"k","owner":"o"` + fields + `}` }
	long := strings.Repeat("x", lockapi.MaxKeyLen+1)
	tests := []struct {
		name, path, body string
		code             int
		substr           string
	}{
		{"empty body", "/locks/acquire", "", 400, "body is empty"},
		{"malformed", "/locks/acquire", `{"key":`, 400, "malformed JSON"},
		{"syntax", "/locks/acquire", `{"key" "k"}`, 400, "malformed JSON"},
		{"not an object", "/locks/acquire", `["k","o","30s"]`, 400, "must be a JSON object"},
		{"string body", "/locks/acquire", `"hello"`, 400, "must be a JSON object"},
		{"unknown field", "/locks/acquire", acq(`,"ttl":"1s","lease":"1s"`), 400, `unknown field "lease"`},
		{"trailing object", "/locks/acquire", acq(`,"ttl":"1s"`) + `{}`, 400, "after the JSON object"},
		{"trailing junk", "/locks/acquire", acq(`,"ttl":"1s"`) + `x`, 400, "after the JSON object"},
		{"key wrong type", "/locks/acquire", `{"key":1,"owner":"o","ttl":"1s"}`, 400, `field "key" must be a JSON string`},
		{"missing key", "/locks/acquire", `{"owner":"o","ttl":"1s"}`, 400, "key must not be empty"},
		{"missing owner", "/locks/acquire", `{"key":"k","ttl":"1s"}`, 400, "owner must not be empty"},
		{"missing ttl", "/locks/acquire", acq(``), 400, "ttl is required"},
		{"null ttl", "/locks/acquire", acq(`,"ttl":null`), 400, "ttl is required"},
		{"ttl 0", "/locks/acquire", acq(`,"ttl":0`), 400, "at least 1ms"},
		{"ttl 0s", "/locks/acquire", acq(`,"ttl":"0s"`), 400, "at least 1ms"},
		{"ttl negative", "/locks/acquire", acq(`,"ttl":-1`), 400, "at least 1ms"},
		{"ttl negative string", "/locks/acquire", acq(`,"ttl":"-5s"`), 400, "at least 1ms"},
		{"ttl abc", "/locks/acquire", acq(`,"ttl":"abc"`), 400, `ttl: duration "abc"`},
		{"ttl empty", "/locks/acquire", acq(`,"ttl":""`), 400, "empty duration"},
		{"ttl float", "/locks/acquire", acq(`,"ttl":1.5`), 400, "ttl"},
		{"ttl exponent", "/locks/acquire", acq(`,"ttl":1e3`), 400, "ttl"},
		{"ttl bool", "/locks/acquire", acq(`,"ttl":true`), 400, "ttl must be a string or a number"},
		{"ttl object", "/locks/acquire", acq(`,"ttl":{}`), 400, "ttl must be a string or a number"},
		{"ttl overflow ms", "/locks/acquire", acq(`,"ttl":9300000000000`), 400, "overflows"},
		{"ttl overflow int64", "/locks/acquire", acq(`,"ttl":"99999999999999999999"`), 400, "overflows"},
		{"ttl overflow duration", "/locks/acquire", acq(`,"ttl":"9999999999h"`), 400, "ttl"},
		{"ttl above max", "/locks/acquire", acq(`,"ttl":"2h"`), 400, "exceeds the maximum"},
		{"wait negative", "/locks/acquire", acq(`,"ttl":"1s","wait":"-1s"`), 400, "must not be negative"},
		{"wait above max", "/locks/acquire", acq(`,"ttl":"1s","wait":"2m"`), 400, "exceeds the maximum"},
		{"wait abc", "/locks/acquire", acq(`,"ttl":"1s","wait":"abc"`), 400, `wait: duration "abc"`},
		{"oversized key", "/locks/acquire", `{"key":"` + long + `","owner":"o","ttl":"1s"}`, 400, "the maximum is 1024"},
		{"oversized owner", "/locks/acquire", `{"key":"k","owner":"` + long + `","ttl":"1s"}`, 400, "the maximum is 1024"},
		{"oversized body", "/locks/acquire", `{"key":"` + strings.Repeat("x", maxBodyBytes) + `"}`, 413, "too large"},
		{"oversized trailing whitespace", "/locks/acquire", acq(`,"ttl":"1s"`) + strings.Repeat(" ", maxBodyBytes), 413, "too large"},
		{"renew missing ttl", "/locks/renew", `{"key":"k","owner":"o"}`, 400, "ttl is required"},
		{"renew token 0", "/locks/renew", acq(`,"ttl":"1s","token":0`), 400, "not a positive integer"},
		{"renew token negative", "/locks/renew", acq(`,"ttl":"1s","fencing_token":-1`), 400, "not a positive integer"},
		{"renew token text", "/locks/renew", acq(`,"ttl":"1s","token":"abc"`), 400, "not a positive integer"},
		{"renew token float", "/locks/renew", acq(`,"ttl":"1s","token":1.5`), 400, "not a positive integer"},
		{"renew token overflow", "/locks/renew", acq(`,"ttl":"1s","token":18446744073709551616`), 400, "not a positive integer"},
		{"renew tokens differ", "/locks/renew", acq(`,"ttl":"1s","token":1,"fencing_token":2`), 400, "differ"},
		{"release unknown ttl", "/locks/release", acq(`,"ttl":"1s"`), 400, `unknown field "ttl"`},
		{"release token bool", "/locks/release", acq(`,"token":false`), 400, "token must be a string or a number"},
		{"release missing owner", "/locks/release", `{"key":"k"}`, 400, "owner must not be empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkFailure(t, do(a, "POST", tt.path, tt.body), tt.code, tt.substr)
		})
	}
	for _, tt := range []struct{ name, path, substr string }{
		{"empty key", "/locks/", "key must not be empty"},
		{"oversized key", "/locks/" + long, "the maximum is 1024"},
	} {
		t.Run("GET "+tt.name, func(t *testing.T) {
			checkFailure(t, do(a, "GET", tt.path, ""), 400, tt.substr)
		})
	}
	if n := svc.Calls(); n != 0 {
		t.Errorf("service was called %d times for bad input", n)
	}
}

// TestContentLengthTooLarge checks the early 413 from a declared length.
func TestContentLengthTooLarge(t *testing.T) {
	a, _ := newAPI(t, &fakeService{}, nil)
	req := newRequest("POST", "/locks/acquire", `{}`)
	req.ContentLength = maxBodyBytes + 1
	checkFailure(t, serve(a, req), 413, fmt.Sprint(maxBodyBytes+1))
}
