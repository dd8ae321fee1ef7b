// Package promtext reads the few gauges and counters the benchmark wants
// from a Prometheus text exposition (a node's or etcd's /metrics).
package promtext

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Watched are the series read before and after a run: this server's raft
// election counter and term, and etcd's leader-change counter.
var Watched = []string{"raft_election_count", "raft_term", "etcd_server_leader_changes_seen_total", "etcd_server_is_leader", "raft_state"}

// Parse returns the value of every unlabelled sample whose name is in want
// (all of them when want is empty). Labelled samples are summed under
// their bare name.
func Parse(r io.Reader, want []string) (map[string]float64, error) {
	wanted := map[string]bool{}
	for _, w := range want {
		wanted[w] = true
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) < 2 {
			continue
		}
		name := fields[0]
		if i := strings.IndexByte(name, '{'); i >= 0 {
			// value is after the closing brace; labels may hold spaces
			j := strings.LastIndexByte(line, '}')
			if j < 0 {
				continue
			}
			rest := strings.Fields(line[j+1:])
			if len(rest) < 1 {
				continue
			}
			fields = []string{name[:i], rest[0]}
			name = name[:i]
		}
		if len(wanted) > 0 && !wanted[name] {
			continue
		}
		v, err := strconv.ParseFloat(fields[1], 64)
		if err != nil {
			continue
		}
		out[name] += v
	}
	return out, sc.Err()
}

// Scrape fetches base+"/metrics" (base is a URL or host:port).
func Scrape(ctx context.Context, base string, want []string) (map[string]float64, error) {
	u := strings.TrimRight(base, "/")
	if !strings.Contains(u, "://") {
		u = "http://" + u
	}
	if !strings.HasSuffix(u, "/metrics") {
		u += "/metrics"
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", u, resp.Status)
	}
	return Parse(io.LimitReader(resp.Body, 16<<20), want)
}
