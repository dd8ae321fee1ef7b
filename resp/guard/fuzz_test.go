package guard

import (
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"

	"github.com/tidwall/redcon"
)

// FuzzGuard feeds arbitrary bytes, in arbitrary chunks, through the guard and
// then redcon's reader, with the default and with tight limits, and with the
// unauthenticated bounds (an AUTH command lifts them, a RESET restores
// them, as the server does). It checks
// that nothing panics (redcon included), that redcon never rejects what the
// guard passed, that both count the same commands, and, when the guard found
// nothing to reject, that redcon reading the raw bytes sees the same
// commands.
func FuzzGuard(f *testing.F) {
	for _, tc := range validInputs {
		f.Add([]byte(tc.in), uint8(3))
	}
	for _, tc := range violations {
		f.Add([]byte(tc.in), uint8(1))
	}
	auth := multibulk("AUTH", "pw")
	big := strings.Repeat("x", UnauthenticatedMaxBulkLen+1)
	f.Add([]byte(auth+multibulk(words("del", 11)...)), uint8(63))
	f.Add([]byte(multibulk(words("del", 11)...)), uint8(2))
	f.Add([]byte(auth+multibulk("RESET")+multibulk("SET", "k", big)), uint8(40))
	f.Add([]byte(multibulk("PING")+multibulk("SET", "k", big)), uint8(5))
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8) {
		for _, lim := range []Limits{{}, tight, {AuthRequired: true}} {
			size := int(chunk%64) + 1
			c, _ := newGuarded(data, size, lim)
			rd := redcon.NewReader(c)
			var got [][]string
			var err error
			for {
				var cmds []redcon.Command
				cmds, err = rd.ReadCommands()
				if err != nil {
					break
				}
				for _, cmd := range cmds {
					got = append(got, argStrings(cmd.Args))
					switch strings.ToLower(string(cmd.Args[0])) {
					case "auth":
						SetAuthenticated(c, true)
					case "reset":
						SetAuthenticated(c, false)
					}
				}
			}
			var pe *ProtocolError
			if err != io.EOF && !errors.As(err, &pe) {
				t.Fatalf("redcon rejected what the guard passed: %v", err)
			}
			if len(got) != c.p.cmds {
				t.Fatalf("redcon parsed %d commands, the guard counted %d", len(got), c.p.cmds)
			}
			if pe != nil || !parsesCleanly(data) {
				continue
			}
			// No violation and no dropped empty request: the raw bytes
			// are safe for redcon and must parse the same way.
			want := redconParse(t, data)
			if !reflect.DeepEqual(got, want) && len(got)+len(want) > 0 {
				t.Fatalf("guarded parse %q != raw parse %q", got, want)
			}
		}
	})
}

// parsesCleanly reports whether the guard, with default limits, finds no
// violation in data and drops no empty request from it.
func parsesCleanly(data []byte) bool {
	p := newParser(Limits{})
	_, _ = p.feed(nil, data)
	return p.err == nil && p.dropped == 0
}
