package promtext

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	in := `# HELP raft_term Current raft term.
# TYPE raft_term gauge
raft_term 3
raft_election_count 1
lock_failures_total{op="acquire",reason="held"} 7
lock_failures_total{op="release",reason="not held"} 2
etcd_server_leader_changes_seen_total 1
go_goroutines 12
bad_line
`
	m, err := Parse(strings.NewReader(in), []string{"raft_term", "raft_election_count", "lock_failures_total", "etcd_server_leader_changes_seen_total"})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{"raft_term": 3, "raft_election_count": 1, "lock_failures_total": 9, "etcd_server_leader_changes_seen_total": 1}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s = %v, want %v", k, m[k], v)
		}
	}
	if _, ok := m["go_goroutines"]; ok {
		t.Error("unwanted series kept")
	}
}
