//go:build unix

package tests

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestDockerCompose builds the image (without pulling anything), starts the
// seed's 3-node cluster with docker-compose, takes a lock through each node,
// stops the leader's container, sees a new leader keep the lock, then cuts
// one container off the network and sees it refuse writes. It needs the
// Docker engine and docker-compose: it skips without them, except under
// CI=true.
func TestDockerCompose(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping the Docker test")
	}
	docker := requireTool(t, "docker")
	compose := requireTool(t, "docker-compose")
	if out, err := exec.Command(docker, "info").CombinedOutput(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("the Docker engine is required under CI=true: %v\n%s", err, out)
		}
		t.Skipf("Docker engine not reachable: %v", err)
	}
	run := func(name string, args ...string) string {
		t.Helper()
		cmd := exec.Command(name, args...)
		cmd.Dir = ".."
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out))
	}
	image := fmt.Sprintf("distlock:e2e-%d", os.Getpid())
	run("bash", "docker/build.sh", image)
	t.Cleanup(func() { exec.Command(docker, "rmi", "-f", image).Run() })

	project := fmt.Sprintf("distlocke2e%d", os.Getpid())
	var ports map[string]int
	var env []string
	pickPorts := func() {
		ports = map[string]int{}
		env = append(os.Environ(), "DISTLOCK_IMAGE="+image)
		for i := 1; i <= 3; i++ {
			for _, kind := range []string{"RESP", "HTTP"} {
				name := fmt.Sprintf("NODE%d_%s_PORT", i, kind)
				ports[name] = freePort(t)
				env = append(env, fmt.Sprintf("%s=%d", name, ports[name]))
			}
		}
	}
	t.Cleanup(func() {
		if t.Failed() {
			cmd := exec.Command(compose, "-p", project, "logs", "--no-color", "--tail", "60")
			cmd.Dir, cmd.Env = "..", env
			out, _ := cmd.CombinedOutput()
			t.Logf("container logs:\n%s", out)
		}
		cmd := exec.Command(compose, "-p", project, "down", "-v", "--timeout", "2")
		cmd.Dir, cmd.Env = "..", env
		cmd.Run()
	})
	// A port found free can be taken by another process (the test packages
	// run in parallel) before Docker binds it: then try again with others.
	for attempt := 1; ; attempt++ {
		pickPorts()
		cmd := exec.Command(compose, "-p", project, "up", "-d")
		cmd.Dir, cmd.Env = "..", env
		out, err := cmd.CombinedOutput()
		if err == nil {
			break
		}
		if attempt == 3 || !strings.Contains(string(out), "address already in use") && !strings.Contains(string(out), "port is already allocated") {
			t.Fatalf("docker-compose up -d (attempt %d): %v\n%s", attempt, err, out)
		}
		t.Logf("docker-compose up -d: a published port was taken meanwhile; again with other ports:\n%s", out)
		down := exec.Command(compose, "-p", project, "down", "-v", "--timeout", "2")
		down.Dir, down.Env = "..", env
		if out, err := down.CombinedOutput(); err != nil {
			t.Fatalf("docker-compose down after a failed up: %v\n%s", err, out)
		}
	}

	nodes := []*proc{}
	for i := 1; i <= 3; i++ {
		nodes = append(nodes, &proc{t: t, id: fmt.Sprintf("node%d", i),
			httpPort: ports[fmt.Sprintf("NODE%d_HTTP_PORT", i)], respPort: ports[fmt.Sprintf("NODE%d_RESP_PORT", i)]})
	}
	container := func(p *proc) string { return fmt.Sprintf("%s_%s_1", project, p.id) }
	poll(t, 60*time.Second, "three healthy containers", func() bool {
		for _, p := range nodes {
			st, _ := exec.Command(docker, "inspect", "-f", "{{.State.Health.Status}}", container(p)).Output()
			if strings.TrimSpace(string(st)) != "healthy" {
				return false
			}
		}
		return true
	})
	ctx := ctxFor(t)
	tokens := map[string]int64{}
	for _, p := range nodes {
		key := "via-" + p.id
		tok, err := p.redis(2).Do(ctx, "LOCK.ACQUIRE", key, "owner-"+p.id, "2m").Int64()
		if err != nil {
			t.Fatalf("acquire through %s: %v", p.id, err)
		}
		tokens[key] = tok
	}
	leaderOf := func(p *proc) string {
		code, m := httpJSONQuiet(p.url("/cluster/info"))
		if code != 200 || m["has_quorum"] != true {
			return ""
		}
		s, _ := m["leader_id"].(string)
		return s
	}
	var lead *proc
	poll(t, 10*time.Second, "a leader", func() bool {
		id := leaderOf(nodes[0])
		for _, p := range nodes {
			if p.id == id {
				lead = p
			}
		}
		return lead != nil
	})
	run(docker, "stop", "-t", "1", container(lead))
	var rest []*proc
	for _, p := range nodes {
		if p != lead {
			rest = append(rest, p)
		}
	}
	poll(t, 20*time.Second, "a new leader", func() bool {
		id := leaderOf(rest[0])
		return id != "" && id != lead.id && id == leaderOf(rest[1])
	})
	for key, tok := range tokens {
		info := infoMap(t, rest[0].redis(2).Do(ctx, "LOCK.INFO", key))
		if info["fencing_token"] != tok {
			t.Fatalf("after stopping the leader LOCK.INFO %s = %v, want token %d", key, info, tok)
		}
	}
	// A real partition: disconnect one of the two survivors from the
	// cluster network; alone it is a minority and must refuse writes. Its
	// published ports go with the network, so the write is sent from
	// inside its network namespace by a static probe.
	probeDir := t.TempDir()
	build := exec.Command("go", "build", "-o", probeDir+"/respprobe", "./respprobe")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building respprobe: %v\n%s", err, out)
	}
	network := project + "_lock"
	cut := rest[1]
	run(docker, "network", "disconnect", network, container(cut))
	probe := func() string {
		out, _ := exec.Command(docker, "run", "--rm", "--network", "container:"+container(cut),
			"-v", probeDir+":/probe:ro", "--entrypoint", "/probe/respprobe", image,
			"127.0.0.1:6379", "LOCK.ACQUIRE", "minority", "x", "5s").CombinedOutput()
		return strings.TrimSpace(string(out))
	}
	poll(t, 30*time.Second, "the cut-off node to refuse writes", func() bool {
		reply := probe()
		if strings.HasPrefix(reply, ":") {
			t.Fatalf("a write succeeded on a partitioned minority: %q", reply)
		}
		return strings.HasPrefix(reply, "-CLUSTERDOWN")
	})
	// The majority side (one node now) cannot serve either; heal and the
	// cluster serves again with nothing lost.
	run(docker, "network", "connect", network, container(cut))
	run(docker, "start", container(lead))
	poll(t, 30*time.Second, "the healed cluster to serve", func() bool {
		return rest[0].redis(2).Do(ctx, "LOCK.ACQUIRE", "healed", "y", "5s").Err() == nil
	})
	for key, tok := range tokens {
		info := infoMap(t, rest[0].redis(2).Do(ctx, "LOCK.INFO", key))
		if info["fencing_token"] != tok {
			t.Fatalf("after healing LOCK.INFO %s = %v, want token %d", key, info, tok)
		}
	}
}
