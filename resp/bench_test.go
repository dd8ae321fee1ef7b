package resp

import (
	"bufio"
	"io"
	"net"
	"strings"
	"testing"
)

// BenchmarkDispatch measures the command path without the network: lookup,
// parsing, the (fake) service call and the reply.
func BenchmarkDispatch(b *testing.B) {
	s, err := New(Config{Service: scriptedService(&scripted{}), Logger: quietLogger()})
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name string
		args []string
	}{
		{"ping", []string{"PING"}},
		{"acquire", []string{"LOCK.ACQUIRE", "orders:42", "worker-7", "30000"}},
		{"info", []string{"LOCK.INFO", "k"}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			args := make([][]byte, len(bc.args))
			for i, a := range bc.args {
				args[i] = []byte(a)
			}
			c := s.newClient(nil, 1)
			b.ReportAllocs()
			for b.Loop() {
				s.dispatch(c, args)
				c.resetOut()
			}
		})
	}
}

// benchPipeline sends depth copies of the command req per round trip to a
// scripted server and reads depth one-line replies; it reports ns/cmd.
func benchPipeline(b *testing.B, req string, depth int) {
	_, addr := startScripted(b, Config{})
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	all := strings.Repeat(req, depth)
	r := bufio.NewReader(nc)
	b.SetBytes(int64(len(all)))
	for b.Loop() {
		if _, err := io.WriteString(nc, all); err != nil {
			b.Fatal(err)
		}
		for range depth {
			if _, err := r.ReadSlice('\n'); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*depth), "ns/cmd")
}

// BenchmarkPingPipeline measures the whole stack (guard, redcon, dispatch)
// over loopback TCP with 64 pipelined commands per round trip.
func BenchmarkPingPipeline(b *testing.B) { benchPipeline(b, cmd("PING"), 64) }

// BenchmarkAcquirePipeline is BenchmarkPingPipeline with LOCK.ACQUIRE: the
// 64 pipelined writes run concurrently, each on a goroutine with a turn
// (pipeline.go), against a service that answers at once; the difference
// from PING is that machinery's cost.
func BenchmarkAcquirePipeline(b *testing.B) {
	benchPipeline(b, cmd("LOCK.ACQUIRE", "orders:42", "worker-7", "30000"), 64)
}
