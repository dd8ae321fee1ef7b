//go:build unix

package tests

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/distlock/distlock/internal/testcerts"
)

// tlsCluster is a 3-node cluster with every port TLS only.
type tlsCluster struct {
	procs  []*proc
	ca     *testcerts.CA
	client testcerts.Pair // a client certificate of the cluster's CA (client authentication only)
	other  testcerts.Pair // a certificate of another CA, for every name
	roots  *x509.CertPool
}

func startTLSCluster(t *testing.T) *tlsCluster {
	t.Helper()
	dir := t.TempDir()
	ca, err := testcerts.NewCA(dir, "cluster")
	if err != nil {
		t.Fatal(err)
	}
	otherCA, err := testcerts.NewCA(dir, "other")
	if err != nil {
		t.Fatal(err)
	}
	c := &tlsCluster{ca: ca, roots: x509.NewCertPool()}
	pem, err := os.ReadFile(ca.CertFile)
	if err != nil || !c.roots.AppendCertsFromPEM(pem) {
		t.Fatalf("CA file: %v", err)
	}
	if c.client, err = ca.IssueClient("client"); err != nil {
		t.Fatal(err)
	}
	if c.other, err = otherCA.Issue("intruder", "localhost", "127.0.0.1"); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		c.procs = append(c.procs, newProc(t, fmt.Sprintf("node%d", i+1)))
	}
	for _, p := range c.procs {
		pair, err := ca.Issue(p.id, "localhost", "127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		var peers []string
		for _, q := range c.procs {
			if q != p {
				peers = append(peers, fmt.Sprintf("%s:localhost:%d", q.id, q.raftPort))
			}
		}
		p.extra = []string{"--peers", strings.Join(peers, ","), "--tls-cert-file", pair.CertFile,
			"--tls-key-file", pair.KeyFile, "--tls-ca-cert-file", ca.CertFile}
		p.launch()
	}
	hc := c.httpClient(t, c.client)
	for _, p := range c.procs {
		poll(t, 30*time.Second, p.id+" ready over TLS", func() bool {
			resp, err := hc.Get(p.tlsURL("/health/ready"))
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusOK
		})
	}
	return c
}

func (p *proc) tlsURL(path string) string {
	return fmt.Sprintf("https://127.0.0.1:%d%s", p.httpPort, path)
}

// tlsConfig verifies the nodes against the cluster's CA and presents pair
// (none when empty).
func (c *tlsCluster) tlsConfig(t *testing.T, pair testcerts.Pair) *tls.Config {
	t.Helper()
	tc := &tls.Config{RootCAs: c.roots, MinVersion: tls.VersionTLS12}
	if pair.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(pair.CertFile, pair.KeyFile)
		if err != nil {
			t.Fatal(err)
		}
		// Present it even if the server's CA list does not name its CA.
		tc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }
	}
	return tc
}

func (c *tlsCluster) httpClient(t *testing.T, pair testcerts.Pair) *http.Client {
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: c.tlsConfig(t, pair)}}
}

func (c *tlsCluster) redis(t *testing.T, p *proc, tc *tls.Config) *redis.Client {
	r := redis.NewClient(&redis.Options{Addr: p.respAddr(), Protocol: 3, TLSConfig: tc, MaxRetries: -1,
		DialTimeout: 2 * time.Second, ReadTimeout: 10 * time.Second})
	t.Cleanup(func() { r.Close() })
	return r
}

// TestTLSCluster runs a 3-node cluster whose ports are all TLS only: the
// nodes elect a leader and forward to it over mutual TLS, clients with a
// certificate of the CA get served over RESP and HTTP (go-redis,
// redis-cli, lockctl, the health check), and everyone else is refused:
// plain TCP, a client without a certificate, one of another CA, and a
// would-be peer of another CA or with a client's certificate on the raft
// port.
func TestTLSCluster(t *testing.T) {
	c := startTLSCluster(t)
	ctx := ctxFor(t)
	good := c.tlsConfig(t, c.client)

	// Every node serves, followers forwarding to the leader over TLS.
	for i, p := range c.procs {
		rdb := c.redis(t, p, good)
		key := fmt.Sprintf("tls-%d", i)
		if tok, err := rdb.Do(ctx, "LOCK.ACQUIRE", key, "owner-a", "30s").Int64(); err != nil || tok <= 0 {
			t.Fatalf("%s: LOCK.ACQUIRE over TLS: %d, %v", p.id, tok, err)
		}
		other := c.redis(t, c.procs[(i+1)%3], good)
		info, err := other.Do(ctx, "LOCK.INFO", key).Result()
		if err != nil || !strings.Contains(fmt.Sprint(info), "owner-a") {
			t.Fatalf("LOCK.INFO %s on another node: %v, %v", key, info, err)
		}
	}

	// HTTP over TLS: the cluster as the seed shows it.
	resp, err := c.httpClient(t, c.client).Get(c.procs[0].tlsURL("/cluster/info"))
	if err != nil {
		t.Fatal(err)
	}
	var ci struct {
		LeaderID  string            `json:"leader_id"`
		Nodes     []json.RawMessage `json:"nodes"`
		HasQuorum bool              `json:"has_quorum"`
	}
	err = json.NewDecoder(resp.Body).Decode(&ci)
	resp.Body.Close()
	if err != nil || ci.LeaderID == "" || len(ci.Nodes) != 3 || !ci.HasQuorum {
		t.Fatalf("GET /cluster/info over TLS: %+v, %v", ci, err)
	}

	// Refused: plain TCP, no certificate, a certificate of another CA.
	refused := []struct {
		name string
		tc   *tls.Config
	}{
		{"plain TCP", nil},
		{"no client certificate", c.tlsConfig(t, testcerts.Pair{})},
		{"a client certificate of another CA", c.tlsConfig(t, c.other)},
	}
	for _, r := range refused {
		if err := c.redis(t, c.procs[0], r.tc).Ping(ctx).Err(); err == nil {
			t.Errorf("RESP, %s: PING answered", r.name)
		}
		hc := &http.Client{Timeout: 5 * time.Second}
		url := c.procs[0].tlsURL("/health/live")
		if r.tc != nil {
			hc.Transport = &http.Transport{TLSClientConfig: r.tc}
		} else {
			url = c.procs[0].url("/health/live")
		}
		// Go's TLS server answers a plain HTTP request with a 400 that
		// says to use HTTPS.
		if resp, err := hc.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest {
				t.Errorf("HTTP, %s: answered %s", r.name, resp.Status)
			}
		}
	}

	// The raft port: a peer must present a certificate of the CA; plain
	// TCP (here a forwarding request) gets nothing either.
	// Nor may a client's certificate of the cluster's CA reach it: the
	// raft port carries forwarded requests that no password guards.
	raftAddr := fmt.Sprintf("127.0.0.1:%d", c.procs[0].raftPort)
	peerRefused := append(refused[1:], struct {
		name string
		tc   *tls.Config
	}{"a client's certificate of the cluster's CA", good})
	for _, r := range peerRefused {
		tc := r.tc.Clone()
		tc.ServerName = "localhost"
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", raftAddr, tc)
		if err != nil {
			continue // refused in the handshake
		}
		// TLS 1.3 refuses a client certificate after the client's
		// handshake: the first read fails. Served, it would wait for the
		// rest of a forwarded request until the deadline.
		conn.SetDeadline(time.Now().Add(3 * time.Second))
		conn.Write([]byte{0xF7})
		_, err = conn.Read(make([]byte, 1))
		conn.Close()
		if ne, ok := err.(net.Error); err == nil || ok && ne.Timeout() {
			t.Errorf("raft port, %s: the connection was served (read: %v)", r.name, err)
		}
	}
	plain, err := net.DialTimeout("tcp", raftAddr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	plain.SetDeadline(time.Now().Add(5 * time.Second))
	plain.Write([]byte{0xF7, 0, 0, 0, 0})
	if b, err := bufio.NewReader(plain).ReadByte(); err == nil {
		t.Errorf("raft port: plain TCP got an answer (%#x)", b)
	}
	plain.Close()

	// lockctl and the container health check over TLS.
	lockctl := buildLockctl(t)
	out, err := exec.Command(lockctl, "--addr", c.procs[1].respAddr(), "--cacert", c.ca.CertFile,
		"--cert", c.client.CertFile, "--key", c.client.KeyFile, "info", "tls-0").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "owner-a") {
		t.Fatalf("lockctl info over TLS: %v\n%s", err, out)
	}
	health := exec.Command(nodeBin, "--health-check")
	health.Env = append(os.Environ(), fmt.Sprintf("DLOCK_PORT=%d", c.procs[2].httpPort))
	for i, a := range c.procs[2].extra {
		if name, ok := strings.CutPrefix(a, "--tls-"); ok {
			health.Env = append(health.Env, envFor("tls-"+name)+"="+c.procs[2].extra[i+1])
		}
	}
	if out, err := health.CombinedOutput(); err != nil {
		t.Fatalf("node --health-check over TLS: %v\n%s", err, out)
	}

	// redis-cli, with Debian's TLS build.
	cli := requireTool(t, "redis-cli")
	out, err = exec.Command(cli, "--tls", "--cacert", c.ca.CertFile, "--cert", c.client.CertFile,
		"--key", c.client.KeyFile, "-p", fmt.Sprint(c.procs[2].respPort), "LOCK.RELEASE", "tls-2", "owner-a").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "(integer) 1" && strings.TrimSpace(string(out)) != "1" {
		t.Fatalf("redis-cli --tls LOCK.RELEASE: %v, %q", err, out)
	}
}

// envFor is the environment variable of a node flag.
func envFor(flagName string) string {
	return "DLOCK_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}
