package walstore

import (
	"bufio"
	"bytes"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// The crash test re-executes the test binary as a writer child (TestMain
// dispatches on crashChildEnv) and SIGKILLs it at random moments.
//
// Child protocol, one line per write(2) on stdout:
//
//	R first last          opened; the log holds [first, last] (0 0 = empty)
//	I S from to gen       about to StoreLogs testLogs(from, to, gen)
//	I F k                 about to DeleteRange(first, k)  (prefix)
//	I B k                 about to DeleteRange(k, last)   (suffix)
//	I W                   about to DeleteRange(first, last) (whole)
//	A                     the operation above returned nil (acknowledged)
const (
	crashChildEnv  = "WALSTORE_CRASH_CHILD_DIR"
	crashSeedEnv   = "WALSTORE_CRASH_CHILD_SEED"
	crashRoundEnv  = "WALSTORE_CRASH_CHILD_ROUND"
	crashSegment   = 8 << 10
	crashBudget    = 10 * time.Second
	crashMaxRounds = 400
)

// crashChild is the writer process. It never returns normally: the parent
// kills it. Exit code 3 means an operation failed.
func crashChild(dir string) int {
	seedV, _ := strconv.ParseUint(os.Getenv(crashSeedEnv), 10, 64)
	round, _ := strconv.ParseUint(os.Getenv(crashRoundEnv), 10, 64)
	rng := rand.New(rand.NewPCG(seedV, round))
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	s, err := Open(dir, &Options{SegmentSize: crashSegment, Logger: logger})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child open:", err)
		return 3
	}
	say := func(format string, a ...any) { os.Stdout.WriteString(fmt.Sprintf(format, a...) + "\n") }
	first, _ := s.FirstIndex()
	last, _ := s.LastIndex()
	empty := first == 0 && last == 0
	say("R %d %d", first, last)
	for op := uint64(1); ; op++ {
		gen := round<<32 | op
		var err error
		switch p := rng.IntN(100); {
		case p < 4 && !empty && last-first >= 2:
			k := first + rng.Uint64N(last-first)
			say("I F %d", k)
			err = s.DeleteRange(first, k)
			first = k + 1
		case p < 8 && !empty && last-first >= 2:
			k := first + 1 + rng.Uint64N(last-first)
			say("I B %d", k)
			err = s.DeleteRange(k, last)
			last = k - 1
		case p < 9 && !empty:
			say("I W")
			err = s.DeleteRange(first, last)
			empty = true
		default:
			from := last + 1
			if empty {
				from = 1 + rng.Uint64N(1<<20) // anywhere, also below the old log
			}
			to := from + rng.Uint64N(16)
			say("I S %d %d %d", from, to, gen)
			err = s.StoreLogs(testLogs(from, to, gen))
			if empty {
				first, empty = from, false
			}
			last = to
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "child op:", err)
			return 3
		}
		say("A")
	}
}

// crashModel is the parent's view of what the log must hold.
type crashModel struct {
	empty       bool
	first, last uint64
	gen         map[uint64]uint64 // index -> gen of its entry
}

func (m *crashModel) set(first, last uint64, gen func(uint64) uint64) {
	m.empty, m.first, m.last = false, first, last
	for i := first; i <= last; i++ {
		m.gen[i] = gen(i)
	}
}

// apply applies one acknowledged child operation.
func (m *crashModel) apply(op []string) {
	n := func(i int) uint64 { v, _ := strconv.ParseUint(op[i], 10, 64); return v }
	switch op[1] {
	case "S":
		from, to, g := n(2), n(3), n(4)
		if m.empty {
			m.gen = map[uint64]uint64{}
			m.set(from, to, func(uint64) uint64 { return g })
		} else {
			m.set(m.first, to, func(i uint64) uint64 {
				if i >= from {
					return g
				}
				return m.gen[i]
			})
		}
	case "F":
		m.first = n(2) + 1
	case "B":
		m.last = n(2) - 1
	case "W":
		m.empty, m.gen = true, map[uint64]uint64{}
	}
}

func TestCrashRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test skipped with -short")
	}
	sd := seed(t)
	rng := rand.New(rand.NewPCG(sd, 0))
	dir := t.TempDir()
	m := &crashModel{empty: true, gen: map[uint64]uint64{}}
	start := time.Now()
	rounds, acked, pendingSeen := 0, 0, 0
	for rounds < crashMaxRounds && time.Since(start) < crashBudget {
		rounds++
		lines, stderr := runCrashChild(t, dir, sd, uint64(rounds), rng)
		var pending []string
		for _, ln := range lines {
			f := strings.Fields(ln)
			switch {
			case len(f) > 0 && f[0] == "I":
				pending = f
			case len(f) == 1 && f[0] == "A" && pending != nil:
				m.apply(pending)
				pending = nil
				acked++
			}
		}
		if pending != nil {
			pendingSeen++
		}
		s, err := Open(dir, &Options{SegmentSize: crashSegment, Logger: quietLogger()})
		if err != nil {
			t.Fatalf("round %d: reopen after kill: %v\nchild stderr:\n%s", rounds, err, stderr)
		}
		if err := checkCrashState(s, m, pending); err != nil {
			s.Close()
			t.Fatalf("round %d (seed %d): %v\npending op %v\nchild stderr:\n%s", rounds, sd, err, pending, stderr)
		}
		// The store must accept the next append; keep the log short.
		next := m.last + 1
		if m.empty {
			next = 1 + rng.Uint64N(1<<20)
		}
		g := uint64(rounds)<<32 | 0xffffffff
		if err := s.StoreLogs(testLogs(next, next, g)); err != nil {
			t.Fatalf("round %d: append after recovery: %v", rounds, err)
		}
		m.apply([]string{"I", "S", fmt.Sprint(next), fmt.Sprint(next), fmt.Sprint(g)})
		if m.last-m.first > 3000 {
			k := m.last - 1000
			if err := s.DeleteRange(m.first, k); err != nil {
				t.Fatalf("round %d: compaction: %v", rounds, err)
			}
			m.first = k + 1
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d kill rounds in %v, %d acknowledged operations, %d killed mid-operation",
		rounds, time.Since(start).Round(time.Millisecond), acked, pendingSeen)
	if rounds < 20 {
		t.Errorf("only %d rounds ran", rounds)
	}
}

// runCrashChild starts a writer child, kills it at a random moment and
// returns its complete stdout lines and its stderr.
func runCrashChild(t *testing.T, dir string, sd, round uint64, rng *rand.Rand) ([]string, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(),
		crashChildEnv+"="+dir,
		crashSeedEnv+"="+strconv.FormatUint(sd, 10),
		crashRoundEnv+"="+strconv.FormatUint(round, 10))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	linec := make(chan string, 1024)
	var lines []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			// bufio drops a final line without '\n' only at EOF; a torn
			// line cannot be split mid-way since each is one write(2).
			linec <- sc.Text()
		}
		close(linec)
	}()
	// Kill during open in 1 round of 10, else a random time after it opened.
	var killAt <-chan time.Time
	if rng.IntN(10) == 0 {
		killAt = time.After(time.Duration(rng.IntN(15_000)) * time.Microsecond)
	}
	timeout := time.After(10 * time.Second)
loop:
	for {
		select {
		case ln, ok := <-linec:
			if !ok {
				break loop // the child exited by itself; stderr says why
			}
			lines = append(lines, ln)
			if killAt == nil && strings.HasPrefix(ln, "R ") {
				killAt = time.After(time.Duration(rng.IntN(30_000)) * time.Microsecond)
			}
		case <-killAt:
			break loop
		case <-timeout:
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("child not killed after 10s: %s", stderr.String())
		}
	}
	cmd.Process.Kill() // SIGKILL, by PID
	for ln := range linec {
		lines = append(lines, ln)
	}
	<-done
	cmd.Wait()
	if strings.Contains(stderr.String(), "child op:") || strings.Contains(stderr.String(), "child open:") {
		t.Fatalf("child failed: %s", stderr.String())
	}
	return lines, stderr.String()
}

// checkCrashState verifies that s holds the model, allowing the one pending
// (unacknowledged) operation to have happened fully or, for a store, in
// part. On success the model is updated to what s holds.
func checkCrashState(s *Store, m *crashModel, pending []string) error {
	af, _ := s.FirstIndex()
	al, _ := s.LastIndex()
	aEmpty := af == 0 && al == 0
	n := func(i int) uint64 { v, _ := strconv.ParseUint(pending[i], 10, 64); return v }
	op := ""
	if pending != nil {
		op = pending[1]
	}
	mf, ml, wasEmpty := m.first, m.last, m.empty
	// fromPending reports whether index i, if present, must come from the
	// pending store.
	fromPending := func(i uint64) bool { return op == "S" && i >= n(2) && (wasEmpty || i > ml) }
	switch {
	case m.empty && aEmpty:
		return nil
	case m.empty && op == "S" && !aEmpty:
		if af != n(2) || al < af || al > n(3) {
			return fmt.Errorf("log [%d, %d], want empty or a prefix of pending [%d, %d]", af, al, n(2), n(3))
		}
	case m.empty:
		return fmt.Errorf("log [%d, %d], want empty", af, al)
	case aEmpty && op == "W":
		m.empty, m.gen = true, map[uint64]uint64{}
		return nil
	case op == "S" && af == mf && al >= ml && al <= n(3):
	case op == "F" && (af == mf || af == n(2)+1) && al == ml:
	case op == "B" && af == mf && (al == ml || al == n(2)-1):
	case af == mf && al == ml:
	default:
		return fmt.Errorf("log [%d, %d], model [%d, %d]", af, al, mf, ml)
	}
	for i := af; i <= al; i++ {
		g, ok := m.gen[i]
		if fromPending(i) {
			g, ok = n(4), true
		}
		if !ok {
			return fmt.Errorf("index %d: not in model", i)
		}
		var got raft.Log
		if err := s.GetLog(i, &got); err != nil {
			return fmt.Errorf("GetLog(%d): %w", i, err)
		}
		if d := diffLog(testLog(i, g), &got); d != "" {
			return fmt.Errorf("GetLog(%d): %s", i, d)
		}
	}
	if wasEmpty {
		m.gen = map[uint64]uint64{}
	}
	old := m.gen
	m.set(af, al, func(i uint64) uint64 {
		if fromPending(i) {
			return n(4)
		}
		return old[i]
	})
	return nil
}
