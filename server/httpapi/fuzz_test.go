package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/distlock/distlock/lockapi"
)

// FuzzAcquireBody sends arbitrary bodies to POST /locks/acquire: bad input
// must never panic or answer 500, every reply must be a JSON object with a
// success field, and whatever reaches the service must be valid. Seeds are
// in testdata/fuzz/FuzzAcquireBody; run with
//
//	go test -run=^$ -fuzz=FuzzAcquireBody ./server/httpapi/
func FuzzAcquireBody(f *testing.F) {
	for _, s := range []string{
		`{"key":"resource-1","owner":"client-abc","ttl":"30s"}`,
		`{"key":"k","owner":"o","ttl":1500,"wait":"5s"}`,
		`{"key":"k","owner":"o","ttl":"9223372036854775807"}`,
		`{"key":"k","owner":"o","ttl":-1}`,
		`{"key":"k","owner":"o","ttl":"1s"} {}`,
		`{"key":"k","owner":"o","ttl":"1s","x":1}`,
		`[`,
		``,
	} {
		f.Add([]byte(s))
	}
	const maxTTL, maxWait = time.Hour, time.Minute
	svc := &fakeService{AcquireFn: func(_ context.Context, req lockapi.AcquireRequest) (lockapi.Lock, error) {
		if lockapi.CheckKey(req.Key) != nil || lockapi.CheckOwner(req.Owner) != nil ||
			lockapi.CheckTTL(req.TTL, maxTTL) != nil || lockapi.CheckWait(req.Wait, maxWait) != nil {
			panic("invalid request reached the service")
		}
		return lockapi.Lock{Key: req.Key, Owner: req.Owner, TTL: req.TTL, Token: 1, Version: 1,
			ExpiresAt: time.Unix(1700000000, 0)}, nil
	}}
	a, _ := newAPI(f, svc, func(c *Config) { c.MaxTTL = maxTTL; c.MaxWait = maxWait })
	f.Fuzz(func(t *testing.T, body []byte) {
		req := httptest.NewRequest("POST", "/locks/acquire", bytes.NewReader(body))
		rec := httptest.NewRecorder()
		a.ServeHTTP(rec, req)
		switch rec.Code {
		case http.StatusOK, http.StatusBadRequest, http.StatusRequestEntityTooLarge:
		default:
			t.Fatalf("status %d for body %q: %s", rec.Code, body, rec.Body)
		}
		var reply map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &reply); err != nil {
			t.Fatalf("reply %q is not JSON: %v", rec.Body, err)
		}
		if ok, isBool := reply["success"].(bool); !isBool || ok != (rec.Code == http.StatusOK) {
			t.Fatalf("status %d with success %v", rec.Code, reply["success"])
		}
	})
}
