package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/distlock/distlock/tests/bench/internal/promtext"
)

// metric reads one series from the node's /metrics (NaN-free: 0 on error).
func (b *bench) metric(name string) float64 {
	m, err := promtext.Scrape(context.Background(), fmt.Sprintf("127.0.0.1:%d", b.http), []string{name})
	if err != nil {
		logf("metrics: %v", err)
		return 0
	}
	return m[name]
}

func (b *bench) saveProfile(name, path string, timeout time.Duration) error {
	hc := &http.Client{Timeout: timeout}
	resp, err := hc.Get(fmt.Sprintf("http://127.0.0.1:%d%s", b.http, path))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", path, resp.Status)
	}
	f, err := os.Create(filepath.Join(b.cfg.dir, name))
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	logf("saved %s", filepath.Join(b.cfg.dir, name))
	return f.Close()
}

func (b *bench) profileAsync(name, path string, timeout time.Duration) chan error {
	ch := make(chan error, 1)
	go func() { ch <- b.saveProfile(name, path, timeout) }()
	return ch
}

// procMem returns VmRSS and VmHWM (peak RSS) of pid in bytes (0 when
// unreadable).
func procMem(pid int) (rss, hwm int64) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		fields := strings.Fields(v)
		if len(fields) < 1 {
			continue
		}
		kb, err := strconv.ParseInt(fields[0], 10, 64)
		if err != nil {
			continue
		}
		switch k {
		case "VmRSS":
			rss = kb << 10
		case "VmHWM":
			hwm = kb << 10
		}
	}
	return rss, hwm
}

// logLine is one JSON log line of the node (slog); raft's own lines have
// their hclog key=value pairs inside msg.
type logLine struct {
	Time time.Time `json:"time"`
	Msg  string    `json:"msg"`
}

var indexRE = regexp.MustCompile(`(?:^|\s)index=(\d+)`)

func readLog(path string, fn func(logLine)) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var l logLine
		if json.Unmarshal(sc.Bytes(), &l) == nil && l.Msg != "" {
			fn(l)
		}
	}
	return sc.Err()
}

// snapshots pairs raft's "starting snapshot up to" and "snapshot complete
// up to" lines by index.
func snapshots(path string) ([]snapTiming, error) {
	var out []snapTiming
	started := map[uint64]time.Time{}
	err := readLog(path, func(l logLine) {
		m := indexRE.FindStringSubmatch(l.Msg)
		if m == nil {
			return
		}
		idx, _ := strconv.ParseUint(m[1], 10, 64)
		switch {
		case strings.HasPrefix(l.Msg, "starting snapshot up to"):
			started[idx] = l.Time
		case strings.HasPrefix(l.Msg, "snapshot complete up to"):
			if t, ok := started[idx]; ok {
				out = append(out, snapTiming{index: idx, start: t, end: l.Time})
			}
		}
	})
	return out, err
}

type startEvents struct {
	restoreStart, restoreEnd, leader time.Time
}

func events(path string) (startEvents, error) {
	var ev startEvents
	err := readLog(path, func(l logLine) {
		switch {
		case strings.HasPrefix(l.Msg, "starting restore from snapshot"):
			ev.restoreStart = l.Time
		case strings.HasPrefix(l.Msg, "restored from snapshot"):
			ev.restoreEnd = l.Time
		case strings.HasPrefix(l.Msg, "entering leader state") && ev.leader.IsZero():
			ev.leader = l.Time
		}
	})
	return ev, err
}

func mibs(b int64) string { return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20)) }

func secs(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f s", d.Seconds())
}

func verdict(ok bool) string {
	if ok {
		return "pass"
	}
	return "**FAIL**"
}

func (b *bench) rssOK() bool {
	return b.rssFill > 0 && b.rssFill <= targetRSS && b.rssSnap <= targetRSS && b.rssRestart > 0 && b.rssRestart <= targetRSS
}

func (b *bench) allPass() bool {
	return b.rssOK() && b.hwmFill <= targetRSS && b.hwmSnap <= targetRSS && b.hwmRestart <= targetRSS &&
		b.snap.index != 0 && b.snap.dur() <= targetSnapshot &&
		b.restoreDur > 0 && b.restoreDur <= targetRestore &&
		b.toInfo > 0 && b.toInfo <= targetRestart && b.toReady > 0 && b.toReady <= targetRestart &&
		b.dbsizeRestart == int64(b.cfg.locks) && b.sampleBad == 0 &&
		(b.cfg.churn == 0 || (b.churned.rssMax > 0 && b.churned.rssMax <= targetRSS))
}

// print writes the markdown report of whatever was measured.
func (b *bench) print(w io.Writer, runErr error) {
	c := b.cfg
	fmt.Fprintf(w, "\n## scalebench: %d held locks on one node\n\n", c.locks)
	fmt.Fprintf(w, "fill: %d connections x pipelines of %d `LOCK.ACQUIRE key owner %d`, keys in %s order; node: %s %s %s\n\n",
		c.conns, c.pipeline, c.ttl.Milliseconds(), c.order, strings.Join(c.nodeEnv, " "), filepath.Base(c.node), strings.Join(c.nodeArgs, " "))
	fmt.Fprintln(w, "| figure | measured | target | verdict |")
	fmt.Fprintln(w, "|---|---|---|---|")
	rate := 0.0
	if b.fillDur > 0 {
		rate = float64(b.filled) / b.fillDur.Seconds()
	}
	row := func(name, measured, target, v string) {
		fmt.Fprintf(w, "| %s | %s | %s | %s |\n", name, measured, target, v)
	}
	row("fill", fmt.Sprintf("%d locks in %s = %.0f locks/s (errors retried: %d)", b.filled, secs(b.fillDur), rate, sum(b.fillErrors)), "", "-")
	row("RSS after the fill (VmRSS)", mibs(b.rssFill), "<= 512 MiB", verdict(b.rssFill > 0 && b.rssFill <= targetRSS))
	row("peak RSS during the fill (VmHWM)", mibs(b.hwmFill), "<= 512 MiB", verdict(b.hwmFill > 0 && b.hwmFill <= targetRSS))
	row("Go heap in use after the fill", mibs(int64(b.heapFill)), "", "-")
	if c.pprof && b.rssFillGC > 0 {
		row("RSS after a forced GC (pprof heap?gc=1)", mibs(b.rssFillGC), "", "-")
	}
	maxFill := time.Duration(0)
	for _, s := range b.fillSnaps {
		maxFill = max(maxFill, s.dur())
	}
	row("snapshots during the fill", fmt.Sprintf("%d, longest %s", len(b.fillSnaps), secs(maxFill)), "", "-")
	row(fmt.Sprintf("snapshot of the full state (index %d, from the node's log)", b.snap.index), secs(b.snap.dur()), "<= 3 s", verdict(b.snap.index != 0 && b.snap.dur() <= targetSnapshot))
	row("RSS after that snapshot / peak so far", mibs(b.rssSnap)+" / "+mibs(b.hwmSnap), "<= 512 MiB", verdict(b.rssSnap > 0 && b.rssSnap <= targetRSS && b.hwmSnap <= targetRSS))
	row("stop (SIGTERM -> exit)", secs(b.stopDur), "", "-")
	row("restore on restart (node log: start -> restored)", secs(b.restoreDur), "<= 3 s", verdict(b.restoreDur > 0 && b.restoreDur <= targetRestore))
	row("exec -> restore starts (WAL open etc.)", secs(b.openDur), "", "-")
	row("exec -> leader", secs(b.leaderAfter), "", "-")
	row("exec -> first LOCK.INFO of a filled key", secs(b.toInfo), "<= 5 s", verdict(b.toInfo > 0 && b.toInfo <= targetRestart))
	row("exec -> /health/ready 200", secs(b.toReady), "<= 5 s", verdict(b.toReady > 0 && b.toReady <= targetRestart))
	row("RSS right after serving / peak during restart", mibs(b.rssRestart)+" / "+mibs(b.hwmRestart), "<= 512 MiB",
		verdict(b.rssRestart > 0 && b.rssRestart <= targetRSS && b.hwmRestart <= targetRSS))
	row("RSS 10 s later", mibs(b.rssSettled), "", "-")
	row("Go heap in use after the restart", mibs(int64(b.heapRestart)), "", "-")
	row("locks after the restart (DBSIZE)", fmt.Sprintf("%d (before: %d)", b.dbsizeRestart, b.dbsizeFill), fmt.Sprint(c.locks), verdict(b.dbsizeRestart == int64(c.locks)))
	row("sample of LOCK.INFO after the restart", fmt.Sprintf("%d checked, %d wrong %v", b.sampled, b.sampleBad, b.sampleErrs), "0 wrong", verdict(b.sampled > 0 && b.sampleBad == 0))
	if c.churn > 0 {
		ch := b.churned
		rate := 0.0
		if ch.dur > 0 {
			rate = float64(ch.cycles) / ch.dur.Seconds()
		}
		row(fmt.Sprintf("then under load: %d clients acquire+release keys of their own for %s", c.churnConns, c.churn),
			fmt.Sprintf("%.0f cycles/s; RSS at most %s (sampled every 250 ms; VmHWM since the restart %s), soft memory limit %s",
				rate, mibs(ch.rssMax), mibs(ch.hwm), mibs(int64(ch.memLimit))),
			"<= 512 MiB", verdict(ch.rssMax > 0 && ch.rssMax <= targetRSS))
	}
	if len(b.fillErrors) > 0 {
		fmt.Fprintf(w, "\nfill errors (retried): %v\n", b.fillErrors)
	}
	if runErr != nil {
		fmt.Fprintf(w, "\n**run failed**: %v\n", runErr)
	}
	fmt.Fprintf(w, "\nlogs and profiles: %s\n", c.dir)
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}
