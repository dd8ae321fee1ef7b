// Command scalebench measures one node of this server holding many locks
// (the "1,000,000 held locks" target): it starts the node binary on free
// loopback ports with a fresh data dir, fills it with -locks held locks
// (pipelined LOCK.ACQUIRE key owner ttl_ms over -conns connections), reads
// the node's RSS from /proc/<pid>/status, times the snapshot of the full
// state from the node's own log lines, stops the node with SIGTERM,
// restarts it on the same data dir, times exec -> first LOCK.INFO of a
// filled key and -> /health/ready 200, checks that the locks survived
// (DBSIZE and a sample of LOCK.INFO), and prints a markdown table with the
// verdicts against the targets.
//
//	scalebench -node ./node -dir /tmp/scale [-locks 1000000] [-conns 128] [-pprof]
//
// Every wait is bounded; the node is started with Pdeathsig (Linux) so it
// dies with this program. Exit status: 0 when every target is met, 1 when
// one is missed, 2 on bad flags, 3 when the run itself failed.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/distlock/distlock/tests/bench/internal/freeport"
)

// Targets of the performance issue.
const (
	targetRSS      = 512 << 20
	targetSnapshot = 3 * time.Second
	targetRestore  = 3 * time.Second
	targetRestart  = 5 * time.Second
)

type config struct {
	node         string
	dir          string
	locks        int
	conns        int
	pipeline     int
	ttl          time.Duration
	snapInterval time.Duration
	fillTimeout  time.Duration
	snapWait     time.Duration
	readyTimeout time.Duration
	samples      int
	order        string
	churn        time.Duration
	churnConns   int
	pprof        bool
	nodeArgs     []string
	nodeEnv      []string
}

func main() { os.Exit(run(os.Args[1:])) }

func run(args []string) int {
	fs := flag.NewFlagSet("scalebench", flag.ContinueOnError)
	var c config
	var extra, env string
	fs.StringVar(&c.node, "node", "", "node binary (required)")
	fs.StringVar(&c.dir, "dir", "", "work directory for the data dir, logs and profiles (required; must be empty or absent)")
	fs.IntVar(&c.locks, "locks", 1_000_000, "locks to hold")
	fs.IntVar(&c.conns, "conns", 128, "RESP connections filling in parallel")
	fs.IntVar(&c.pipeline, "pipeline", 200, "LOCK.ACQUIREs per pipeline")
	fs.DurationVar(&c.ttl, "ttl", 30*time.Minute, "TTL of every lock (long enough that nothing expires during the run)")
	fs.DurationVar(&c.snapInterval, "snapshot-interval", 20*time.Second, "node --snapshot-interval, so that a snapshot of the full state follows the fill")
	fs.DurationVar(&c.fillTimeout, "fill-timeout", 20*time.Minute, "give up filling after this long")
	fs.DurationVar(&c.snapWait, "snapshot-wait", 3*time.Minute, "longest wait for the snapshot of the full state")
	fs.DurationVar(&c.readyTimeout, "ready-timeout", 2*time.Minute, "longest wait for the node to serve after a start")
	fs.IntVar(&c.samples, "samples", 1000, "keys checked with LOCK.INFO after the restart")
	fs.StringVar(&c.order, "order", "random", "order keys are acquired in: random (a fixed permutation; clients lock arbitrary keys) or sequential")
	fs.DurationVar(&c.churn, "churn", 20*time.Second, "after the restart, load the node this long with clients acquiring and releasing keys of their own while it holds the locks, sampling RSS (0: skip)")
	fs.IntVar(&c.churnConns, "churn-conns", 64, "clients of the load after the restart")
	fs.BoolVar(&c.pprof, "pprof", false, "start the node with --enable-pprof; save heap profiles (after the fill, after the restart) and a CPU profile (while the full snapshot is taken) in -dir")
	fs.StringVar(&extra, "node-args", "", "extra node flags, space-separated")
	fs.StringVar(&env, "node-env", "", "extra environment of the node, space-separated NAME=value (e.g. GOMEMLIMIT=400MiB)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if c.node == "" || c.dir == "" || c.locks < 1 || c.conns < 1 || c.pipeline < 1 || c.samples < 1 || c.churn < 0 || c.churnConns < 1 ||
		(c.order != "random" && c.order != "sequential") {
		fmt.Fprintln(os.Stderr, "scalebench: -node and -dir are required; -locks, -conns, -pipeline, -samples, -churn-conns must be positive, -churn not negative; -order random or sequential")
		return 2
	}
	redis.SetLogger(quietLogger{}) // connection-refused noise while polling a restarting node
	c.nodeArgs = strings.Fields(extra)
	c.nodeEnv = strings.Fields(env)
	r := &bench{cfg: c}
	err := r.run()
	r.print(os.Stdout, err)
	switch {
	case err != nil:
		fmt.Fprintf(os.Stderr, "scalebench: %v\n", err)
		return 3
	case !r.allPass():
		return 1
	}
	return 0
}

// node is one running node process.
type node struct {
	cmd     *exec.Cmd
	log     string
	started time.Time
	done    chan struct{}
	waitErr error
}

func (n *node) pid() int { return n.cmd.Process.Pid }

func (n *node) exited() bool {
	select {
	case <-n.done:
		return true
	default:
		return false
	}
}

// bench holds the run's ports and everything measured.
type bench struct {
	cfg                  config
	http, resp, raftPort int
	data                 string

	fillDur       time.Duration
	fillErrors    map[string]int
	filled        int64
	rssFill       int64 // VmRSS after the fill
	hwmFill       int64 // VmHWM after the fill (peak during it)
	rssFillGC     int64 // VmRSS after a forced GC (pprof only)
	heapFill      float64
	fillSnaps     []snapTiming // snapshots taken during the fill
	snap          snapTiming   // the snapshot of the full state
	rssSnap       int64
	hwmSnap       int64
	appliedIndex  float64
	dbsizeFill    int64
	stopDur       time.Duration
	restoreDur    time.Duration // from the node's log: restore start -> done
	openDur       time.Duration // exec -> "starting restore" log line
	leaderAfter   time.Duration // exec -> "entering leader state"
	toInfo        time.Duration
	toReady       time.Duration
	rssRestart    int64
	hwmRestart    int64
	rssSettled    int64
	heapRestart   float64
	dbsizeRestart int64
	sampled       int
	sampleBad     int
	sampleErrs    []string
	churned       churnResult
}

type snapTiming struct {
	index      uint64
	start, end time.Time
}

func (s snapTiming) dur() time.Duration { return s.end.Sub(s.start) }

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[scalebench %s] %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

func (b *bench) run() error {
	c := b.cfg
	if err := os.MkdirAll(c.dir, 0o755); err != nil {
		return err
	}
	b.data = filepath.Join(c.dir, "data")
	if _, err := os.Stat(b.data); err == nil {
		return fmt.Errorf("%s exists: scalebench needs a fresh data dir", b.data)
	}
	ports, err := freeport.Loopback(3)
	if err != nil {
		return err
	}
	b.http, b.resp, b.raftPort = ports[0], ports[1], ports[2]

	// --- first start and fill ---
	n1, err := b.start(1)
	if err != nil {
		return err
	}
	defer b.stop(n1)
	if _, _, err := b.waitServing(n1, ""); err != nil {
		return fmt.Errorf("first start: %w", err)
	}
	rdb := redis.NewClient(&redis.Options{
		Addr: fmt.Sprintf("127.0.0.1:%d", b.resp), PoolSize: c.conns, Protocol: 2, DisableIdentity: true,
		DialTimeout: 5 * time.Second, ReadTimeout: 60 * time.Second, WriteTimeout: 10 * time.Second,
		PoolTimeout: 90 * time.Second, MaxRetries: -1,
	})
	defer rdb.Close()
	if err := b.fill(rdb, n1); err != nil {
		return err
	}
	b.rssFill, b.hwmFill = procMem(n1.pid())
	b.heapFill = b.metric("go_memstats_heap_inuse_bytes")
	b.appliedIndex = b.metric("raft_applied_index")
	b.dbsizeFill, err = dbsize(rdb)
	if err != nil {
		return fmt.Errorf("DBSIZE after the fill: %w", err)
	}
	logf("filled %d locks in %s; DBSIZE %d; RSS %s (peak %s); go heap in use %s; applied index %.0f",
		b.filled, b.fillDur.Round(time.Millisecond), b.dbsizeFill, mibs(b.rssFill), mibs(b.hwmFill), mibs(int64(b.heapFill)), b.appliedIndex)
	if c.pprof {
		if err := b.saveProfile("heap-after-fill.pb.gz", "/debug/pprof/heap?gc=1", 30*time.Second); err != nil {
			logf("heap profile: %v", err)
		}
		b.rssFillGC, _ = procMem(n1.pid())
	}

	// --- the snapshot of the full state ---
	logf("waiting up to %s for a snapshot at index >= %.0f (node --snapshot-interval %s)", c.snapWait, b.appliedIndex, c.snapInterval)
	var cpu chan error
	if c.pprof {
		cpu = b.profileAsync("cpu-snapshot.pb.gz", "/debug/pprof/profile?seconds="+strconv.Itoa(int(c.snapInterval/time.Second)+10), c.snapInterval+40*time.Second)
	}
	deadline := time.Now().Add(c.snapWait)
	for {
		snaps, err := snapshots(n1.log)
		if err != nil {
			return err
		}
		b.fillSnaps = nil
		for _, s := range snaps {
			if float64(s.index) >= b.appliedIndex {
				b.snap = s
				break
			}
			b.fillSnaps = append(b.fillSnaps, s)
		}
		if b.snap.index != 0 {
			break
		}
		if time.Now().After(deadline) || n1.exited() {
			return fmt.Errorf("no snapshot at index >= %.0f within %s", b.appliedIndex, c.snapWait)
		}
		time.Sleep(200 * time.Millisecond)
	}
	b.rssSnap, b.hwmSnap = procMem(n1.pid())
	logf("snapshot up to %d took %s; RSS %s (peak %s)", b.snap.index, b.snap.dur().Round(time.Millisecond), mibs(b.rssSnap), mibs(b.hwmSnap))
	if cpu != nil {
		if err := <-cpu; err != nil {
			logf("cpu profile: %v", err)
		}
	}

	// --- stop and restart ---
	t := time.Now()
	if err := b.stop(n1); err != nil {
		return err
	}
	b.stopDur = time.Since(t)
	logf("node stopped %s after SIGTERM", b.stopDur.Round(time.Millisecond))
	var key, owner string
	{
		i := b.cfg.locks / 2
		key, owner = lockKey(i), lockOwner(i)
	}
	n2, err := b.start(2)
	if err != nil {
		return err
	}
	defer b.stop(n2)
	b.toInfo, b.toReady, err = b.waitServing(n2, key+"\x00"+owner)
	if err != nil {
		return fmt.Errorf("restart: %w", err)
	}
	b.rssRestart, b.hwmRestart = procMem(n2.pid())
	b.heapRestart = b.metric("go_memstats_heap_inuse_bytes")
	if ev, err := events(n2.log); err == nil {
		if !ev.restoreStart.IsZero() && !ev.restoreEnd.IsZero() {
			b.restoreDur = ev.restoreEnd.Sub(ev.restoreStart)
			b.openDur = ev.restoreStart.Sub(n2.started)
		}
		if !ev.leader.IsZero() {
			b.leaderAfter = ev.leader.Sub(n2.started)
		}
	}
	logf("restarted: LOCK.INFO after %s, /health/ready after %s; restore %s; RSS %s (peak %s)",
		b.toInfo.Round(time.Millisecond), b.toReady.Round(time.Millisecond), b.restoreDur.Round(time.Millisecond), mibs(b.rssRestart), mibs(b.hwmRestart))
	rdb2 := redis.NewClient(&redis.Options{
		Addr: fmt.Sprintf("127.0.0.1:%d", b.resp), PoolSize: 4, Protocol: 2, DisableIdentity: true,
		DialTimeout: 5 * time.Second, ReadTimeout: 60 * time.Second, MaxRetries: -1,
	})
	defer rdb2.Close()
	b.dbsizeRestart, err = dbsize(rdb2)
	if err != nil {
		return fmt.Errorf("DBSIZE after the restart: %w", err)
	}
	b.checkSample(rdb2)
	if c.pprof {
		if err := b.saveProfile("heap-after-restart.pb.gz", "/debug/pprof/heap?gc=1", 30*time.Second); err != nil {
			logf("heap profile: %v", err)
		}
	}
	time.Sleep(10 * time.Second) // let the scavenger return the restore's garbage
	b.rssSettled, _ = procMem(n2.pid())
	if c.churn > 0 {
		logf("loading the node for %s: %d clients acquire and release keys of their own", c.churn, c.churnConns)
		if b.churned, err = b.churn(n2); err != nil {
			return err
		}
		logf("load: %d cycles in %s; RSS at most %s sampled (peak since the restart %s), soft memory limit %s",
			b.churned.cycles, b.churned.dur.Round(time.Millisecond), mibs(b.churned.rssMax), mibs(b.churned.hwm), mibs(int64(b.churned.memLimit)))
	}
	return nil
}

// start execs the node (the n-th start) on the bench's ports and data dir.
func (b *bench) start(n int) (*node, error) {
	c := b.cfg
	logPath := filepath.Join(c.dir, fmt.Sprintf("node-start%d.log", n))
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	args := []string{
		"--id", "scale1", "--bind", "127.0.0.1", "--advertise", "127.0.0.1",
		"--port", strconv.Itoa(b.http), "--resp-port", strconv.Itoa(b.resp), "--raft-port", strconv.Itoa(b.raftPort),
		"--data-dir", b.data, "--log-format", "json", "--log-level", "info",
		"--snapshot-interval", c.snapInterval.String(),
	}
	if c.pprof {
		args = append(args, "--enable-pprof")
	}
	args = append(args, c.nodeArgs...)
	cmd := exec.Command(c.node, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), c.nodeEnv...)
	setDeathSignal(cmd)
	nd := &node{cmd: cmd, log: logPath, done: make(chan struct{})}
	nd.started = time.Now()
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", c.node, err)
	}
	go func() {
		nd.waitErr = cmd.Wait()
		f.Close()
		close(nd.done)
	}()
	// scale.sh's trap reads this to stop the node if scalebench is killed.
	_ = os.WriteFile(filepath.Join(c.dir, "node.pid"), []byte(strconv.Itoa(nd.pid())+"\n"), 0o644)
	logf("started node (pid %d, RESP %d, HTTP %d, raft %d), log %s", nd.pid(), b.resp, b.http, b.raftPort, logPath)
	return nd, nil
}

// stop sends SIGTERM and waits up to 60 s, then SIGKILL. It is a no-op on
// a node that has exited.
func (b *bench) stop(n *node) error {
	if n.exited() {
		return nil
	}
	_ = n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.done:
		if n.waitErr != nil {
			return fmt.Errorf("node exited after SIGTERM: %v (log %s)", n.waitErr, n.log)
		}
		return nil
	case <-time.After(60 * time.Second):
		_ = n.cmd.Process.Kill()
		<-n.done
		return fmt.Errorf("node ignored SIGTERM for 60s: killed (log %s)", n.log)
	}
}

// waitServing polls, every 10 ms from the node's exec, /health/ready (200)
// and, when probe is "key\x00owner", LOCK.INFO key until it names owner.
// It returns the time from exec to each.
func (b *bench) waitServing(n *node, probe string) (info, ready time.Duration, err error) {
	key, owner, _ := strings.Cut(probe, "\x00")
	hc := &http.Client{Timeout: time.Second}
	url := fmt.Sprintf("http://127.0.0.1:%d/health/ready", b.http)
	// A fresh client per failed probe: go-redis's pool backs off dialing
	// after refused connections, which would add to the measured time.
	newClient := func() *redis.Client {
		return redis.NewClient(&redis.Options{
			Addr: fmt.Sprintf("127.0.0.1:%d", b.resp), PoolSize: 1, Protocol: 2, DisableIdentity: true,
			DialTimeout: time.Second, ReadTimeout: 2 * time.Second, MaxRetries: -1,
		})
	}
	rdb := newClient()
	defer func() { rdb.Close() }()
	deadline := n.started.Add(b.cfg.readyTimeout)
	var lastErr error
	for time.Now().Before(deadline) {
		if n.exited() {
			return 0, 0, fmt.Errorf("node exited: %v (log %s)", n.waitErr, n.log)
		}
		if ready == 0 {
			if resp, err := hc.Get(url); err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					ready = time.Since(n.started)
				} else {
					lastErr = fmt.Errorf("/health/ready: %s", resp.Status)
				}
			} else {
				lastErr = err
			}
		}
		if info == 0 && key != "" {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			fields, err := lockInfo(ctx, rdb, key)
			cancel()
			switch {
			case err != nil:
				lastErr = err
				rdb.Close()
				rdb = newClient()
			case fields["owner"] == owner:
				info = time.Since(n.started)
			default:
				return 0, 0, fmt.Errorf("LOCK.INFO %s = %v, want owner %s", key, fields, owner)
			}
		}
		if ready != 0 && (info != 0 || key == "") {
			return info, ready, nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return 0, 0, fmt.Errorf("not serving %s after exec (last: %v; log %s)", b.cfg.readyTimeout, lastErr, n.log)
}

// fill acquires cfg.locks locks: cfg.conns workers take batches of
// cfg.pipeline keys and pipeline LOCK.ACQUIRE key owner ttl_ms. A key whose
// acquire failed (timeout, connection error) is retried up to 3 times; an
// acquire by a key's own owner is idempotent (it extends the lease), so a
// retry after an unknown outcome is safe.
func (b *bench) fill(rdb *redis.Client, n *node) error {
	c := b.cfg
	ctx, cancel := context.WithTimeout(context.Background(), c.fillTimeout)
	defer cancel()
	ttl := strconv.FormatInt(c.ttl.Milliseconds(), 10)
	perm := permutation(c.locks, c.order == "random")
	var next, done atomic.Int64
	var mu sync.Mutex
	b.fillErrors = map[string]int{}
	var lost atomic.Int64
	start := time.Now()
	stopProgress := make(chan struct{})
	go func() {
		t := time.NewTicker(5 * time.Second)
		defer t.Stop()
		prev, prevT := int64(0), start
		for {
			select {
			case <-stopProgress:
				return
			case now := <-t.C:
				d := done.Load()
				rss, _ := procMem(n.pid())
				logf("fill: %d/%d (%.0f/s now, %.0f/s avg), RSS %s", d, c.locks,
					float64(d-prev)/now.Sub(prevT).Seconds(), float64(d)/now.Sub(start).Seconds(), mibs(rss))
				prev, prevT = d, now
			}
		}
	}()
	var wg sync.WaitGroup
	for w := 0; w < c.conns; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				lo := int(next.Add(int64(c.pipeline))) - c.pipeline
				if lo >= c.locks {
					return
				}
				keys := make([]int, 0, c.pipeline)
				for i := lo; i < min(lo+c.pipeline, c.locks); i++ {
					keys = append(keys, i)
				}
				for attempt := 0; attempt < 4 && len(keys) > 0 && ctx.Err() == nil; attempt++ {
					pipe := rdb.Pipeline()
					cmds := make([]*redis.Cmd, len(keys))
					for j, i := range keys {
						k := perm(i)
						cmds[j] = pipe.Do(ctx, "LOCK.ACQUIRE", lockKey(k), lockOwner(k), ttl)
					}
					_, _ = pipe.Exec(ctx)
					var retry []int
					for j, cmd := range cmds {
						tok, err := cmd.Int64()
						if err == nil && tok > 0 {
							continue
						}
						if err == nil {
							err = fmt.Errorf("token %d", tok)
						}
						mu.Lock()
						b.fillErrors[errKind(err)]++
						mu.Unlock()
						retry = append(retry, keys[j])
					}
					done.Add(int64(len(keys) - len(retry)))
					keys = retry
				}
				lost.Add(int64(len(keys)))
			}
		}()
	}
	wg.Wait()
	close(stopProgress)
	b.fillDur = time.Since(start)
	b.filled = done.Load()
	if ctx.Err() != nil {
		return fmt.Errorf("fill: %d of %d locks after %s: %w", b.filled, c.locks, c.fillTimeout, ctx.Err())
	}
	if lost.Load() > 0 {
		return fmt.Errorf("fill: %d locks failed 4 times (errors: %v)", lost.Load(), b.fillErrors)
	}
	return nil
}

// checkSample reads cfg.samples keys spread over the keyspace with
// pipelined LOCK.INFO and checks owner, token and remaining TTL.
func (b *bench) checkSample(rdb *redis.Client) {
	c := b.cfg
	n := min(c.samples, c.locks)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pipe := rdb.Pipeline()
	cmds := make([]*redis.Cmd, n)
	idx := make([]int, n)
	for j := range n {
		idx[j] = int((int64(j)*int64(c.locks))/int64(n)+int64(j)*7) % c.locks
		cmds[j] = pipe.Do(ctx, "LOCK.INFO", lockKey(idx[j]))
	}
	_, _ = pipe.Exec(ctx)
	for j, cmd := range cmds {
		b.sampled++
		fields, err := infoFields(cmd)
		bad := ""
		switch {
		case err != nil:
			bad = err.Error()
		case fields["owner"] != lockOwner(idx[j]):
			bad = fmt.Sprintf("owner %q", fields["owner"])
		case fields["fencing_token"] == "" || fields["fencing_token"] == "0":
			bad = "no fencing token"
		default:
			if ttl, _ := strconv.ParseInt(fields["ttl_ms"], 10, 64); ttl <= 0 {
				bad = "ttl_ms " + fields["ttl_ms"]
			}
		}
		if bad != "" {
			b.sampleBad++
			if len(b.sampleErrs) < 5 {
				b.sampleErrs = append(b.sampleErrs, lockKey(idx[j])+": "+bad)
			}
		}
	}
}

// permutation returns the key index acquired in slot i: i itself, or a
// fixed pseudo-random bijection of [0, n) (i*step mod n, step coprime to n).
func permutation(n int, random bool) func(int) int {
	if !random || n < 3 {
		return func(i int) int { return i }
	}
	step := int64(float64(n)*0.6180339887) | 1
	for gcd(step, int64(n)) != 1 {
		step += 2
	}
	return func(i int) int { return int((int64(i)*step + 12345) % int64(n)) }
}

func gcd(a, b int64) int64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}

func lockKey(i int) string { return fmt.Sprintf("lock:%07d", i) }

// lockOwner is a deterministic uuid-like owner (36 characters) of lock i.
func lockOwner(i int) string {
	x := splitmix(uint64(i))
	y := splitmix(x)
	return fmt.Sprintf("%08x-%04x-4%03x-a%03x-%012x", uint32(x>>32), uint16(x>>16), uint16(x)&0xfff, uint16(y>>48)&0xfff, y&0xffffffffffff)
}

func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

func errKind(err error) string {
	s := err.Error()
	if len(s) > 60 {
		s = s[:60]
	}
	return s
}

func lockInfo(ctx context.Context, rdb *redis.Client, key string) (map[string]string, error) {
	return infoFields(rdb.Do(ctx, "LOCK.INFO", key))
}

// infoFields turns a LOCK.INFO reply (field, value, ...) into a map.
func infoFields(cmd *redis.Cmd) (map[string]string, error) {
	vals, err := cmd.Slice()
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for i := 0; i+1 < len(vals); i += 2 {
		out[fmt.Sprint(vals[i])] = fmt.Sprint(vals[i+1])
	}
	return out, nil
}

func dbsize(rdb *redis.Client) (int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return rdb.DBSize(ctx).Result()
}
