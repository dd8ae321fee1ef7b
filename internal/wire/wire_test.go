package wire

import (
	"encoding/binary"
	"errors"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	var b []byte
	b = append(b, 7)
	b = binary.AppendUvarint(b, 1<<63)
	b = binary.AppendVarint(b, -12345)
	b = AppendString(b, "héllo")
	b = AppendBytes(b, []byte{0, 0xff})
	b = binary.AppendUvarint(b, 2) // a count of two one-byte strings
	b = AppendString(b, "")
	b = AppendString(b, "")
	d := Decoder{B: b}
	if d.Byte() != 7 || d.Uvarint() != 1<<63 || d.Varint() != -12345 || d.Str() != "héllo" || string(d.Bytes()) != "\x00\xff" || d.Count() != 2 || d.Str() != "" || d.Str() != "" {
		t.Fatalf("round trip failed: %v", d.Err)
	}
	if d.Err != nil || len(d.B) != 0 {
		t.Fatalf("left %d bytes, err %v", len(d.B), d.Err)
	}
}

func TestTruncatedAndForged(t *testing.T) {
	cases := map[string]func(d *Decoder){
		"empty byte":      func(d *Decoder) { d.Byte() },
		"empty uvarint":   func(d *Decoder) { d.Uvarint() },
		"empty varint":    func(d *Decoder) { d.Varint() },
		"string past end": func(d *Decoder) { d.B = []byte{5, 'a'}; d.Str() },
		"count past end":  func(d *Decoder) { d.B = []byte{0xff, 0xff, 0x03}; d.Count() },
		"overlong varint": func(d *Decoder) {
			d.B = []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}
			d.Uvarint()
		},
		"error is remembered": func(d *Decoder) { d.Byte(); d.B = []byte{1}; d.Byte() },
	}
	for name, run := range cases {
		d := Decoder{}
		run(&d)
		if !errors.Is(d.Err, ErrTruncated) {
			t.Errorf("%s: err %v, want ErrTruncated", name, d.Err)
		}
	}
}

func TestPairSharesOneAllocation(t *testing.T) {
	cases := []struct{ a, b string }{
		{"", ""}, {"lock:0000001", ""}, {"", "owner"},
		{"lock:0000001", "3f2a9c1e-0b7d-4e21-a9f0-6c1d2e3f4a5b"},
		{"héllo", "wörld"},
	}
	for _, c := range cases {
		var b []byte
		b = AppendString(b, c.a)
		b = AppendString(b, c.b)
		d := Decoder{B: b}
		var ka, kb string
		allocs := testing.AllocsPerRun(20, func() {
			d = Decoder{B: b}
			ka, kb = d.Strs()
		})
		if d.Err != nil || ka != c.a || kb != c.b || len(d.B) != 0 {
			t.Fatalf("Strs of %q, %q = %q, %q, err %v, %d bytes left", c.a, c.b, ka, kb, d.Err, len(d.B))
		}
		want := 1.0
		if c.a == "" && c.b == "" {
			want = 0
		}
		if allocs != want {
			t.Errorf("Strs of %q, %q: %v allocations, want %v", c.a, c.b, allocs, want)
		}
		// The copies must not alias the input.
		for i := range b {
			b[i] = 0
		}
		if ka != c.a || kb != c.b {
			t.Fatalf("Strs of %q, %q alias the input: now %q, %q", c.a, c.b, ka, kb)
		}
	}
	d := Decoder{B: []byte{3, 'a'}}
	if a, b := d.Strs(); a != "" || b != "" || !errors.Is(d.Err, ErrTruncated) {
		t.Fatalf("truncated: %q, %q, %v", a, b, d.Err)
	}
}
