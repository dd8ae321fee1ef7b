package httpapi

import (
	"context"
	"net/http"
	"testing"

	"github.com/distlock/distlock/lockapi"
)

// memberService is a fakeService that also implements Membership.
type memberService struct {
	fakeService
	joined, left []string
	err          error
}

func (m *memberService) Join(_ context.Context, id, addr string) error {
	m.joined = append(m.joined, id+"@"+addr)
	return m.err
}

func (m *memberService) Leave(_ context.Context, id string) error {
	m.left = append(m.left, id)
	return m.err
}

func TestMembershipRoutes(t *testing.T) {
	svc := &memberService{}
	api, _ := newAPI(t, svc, nil)
	tests := []struct {
		target, body string
		want         int
	}{
		{"/cluster/join", `{"id":"node4","address":"host:9004"}`, http.StatusOK},
		{"/cluster/join", `{"id":"node4"}`, http.StatusBadRequest},
		{"/cluster/join", `{"id":"node4","address":"h:1","extra":1}`, http.StatusBadRequest},
		{"/cluster/leave", `{"id":"node4"}`, http.StatusOK},
		{"/cluster/leave", `{}`, http.StatusBadRequest},
	}
	for _, tt := range tests {
		if rec := do(api, "POST", tt.target, tt.body); rec.Code != tt.want {
			t.Errorf("POST %s %s = %d %s, want %d", tt.target, tt.body, rec.Code, rec.Body, tt.want)
		}
	}
	if len(svc.joined) != 1 || svc.joined[0] != "node4@host:9004" || len(svc.left) != 1 || svc.left[0] != "node4" {
		t.Fatalf("service saw joins %v, leaves %v", svc.joined, svc.left)
	}
	svc.err = lockapi.ErrNoLeader
	if rec := do(api, "POST", "/cluster/leave", `{"id":"x"}`); rec.Code != http.StatusServiceUnavailable {
		t.Errorf("leave without a leader = %d, want 503", rec.Code)
	}
	plain, _ := newAPI(t, &fakeService{}, nil)
	if rec := do(plain, "POST", "/cluster/join", `{"id":"a","address":"b:1"}`); rec.Code != http.StatusNotImplemented {
		t.Errorf("join on a service without membership = %d, want 501", rec.Code)
	}
}
