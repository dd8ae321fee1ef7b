package guard

import (
	"fmt"
	"testing"
)

// BenchmarkParserFeed measures the guard's validation of a 4 KiB read of
// pipelined lock commands, the bytes every RESP request passes through.
func BenchmarkParserFeed(b *testing.B) {
	var chunk []byte
	for i := 0; len(chunk) < 4096-128; i++ {
		key := fmt.Sprintf("lock:%06d", i)
		chunk = fmt.Appendf(chunk, "*4\r\n$12\r\nLOCK.ACQUIRE\r\n$%d\r\n%s\r\n$36\r\n6f1c2a0e-8a4b-4c7e-9d2f-3b5a7c9e1d00\r\n$5\r\n30000\r\n", len(key), key)
	}
	b.SetBytes(int64(len(chunk)))
	p := newParser(Limits{})
	var out []byte
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		out, _ = p.feed(out[:0], chunk)
		if p.err != nil {
			b.Fatal(p.err)
		}
	}
	if len(out) != len(chunk) {
		b.Fatalf("passed %d of %d bytes", len(out), len(chunk))
	}
}
