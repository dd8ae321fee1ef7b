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

// BenchmarkPingPipeline measures the whole stack (guard, redcon, dispatch)
// over loopback TCP with 64 pipelined commands per round trip.
func BenchmarkPingPipeline(b *testing.B) {
	_, addr := startScripted(b, Config{})
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	const depth = 64
	req := strings.Repeat(cmd("PING"), depth)
	reply := make([]byte, len("+PONG\r\n")*depth)
	r := bufio.NewReader(nc)
	b.SetBytes(int64(len(req)))
	for b.Loop() {
		if _, err := io.WriteString(nc, req); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(r, reply); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*depth), "ns/cmd")
}

// BenchmarkAcquirePipeline is BenchmarkPingPipeline with LOCK.ACQUIRE: the
// 64 pipelined writes run concurrently, each on a goroutine with a turn
// (pipeline.go), against a service that answers at once; the difference
// from PING is that machinery's cost.
func BenchmarkAcquirePipeline(b *testing.B) {
	_, addr := startScripted(b, Config{})
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	const depth = 64
	req := strings.Repeat(cmd("LOCK.ACQUIRE", "orders:42", "worker-7", "30000"), depth)
	r := bufio.NewReader(nc)
	b.SetBytes(int64(len(req)))
	for b.Loop() {
		if _, err := io.WriteString(nc, req); err != nil {
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
