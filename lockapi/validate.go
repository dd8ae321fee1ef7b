package lockapi

import (
	"math"
	"strconv"
	"strings"
	"time"
)

// Limits on request arguments. Keys and owners are bounded so a request can
// never make a node grow without bound.
const (
	// MaxKeyLen is the longest lock key accepted, in bytes.
	MaxKeyLen = 1024
	// MaxOwnerLen is the longest owner identity accepted, in bytes.
	MaxOwnerLen = 1024
	// DefaultMaxTTL is the longest lease accepted unless configured otherwise.
	DefaultMaxTTL = 24 * time.Hour
	// DefaultMaxWait is the longest WAIT accepted unless configured otherwise.
	DefaultMaxWait = 5 * time.Minute
)

// ParseDuration parses a TTL or timeout argument: a bare integer is a number
// of milliseconds; anything else must be a Go duration with a unit ("500ms",
// "30s", "5m"). It rejects overflow but not zero or negative values; see
// [CheckTTL].
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, Invalidf("empty duration")
	}
	if ms, err := strconv.ParseInt(s, 10, 64); err == nil {
		if ms > math.MaxInt64/int64(time.Millisecond) || ms < math.MinInt64/int64(time.Millisecond) {
			return 0, Invalidf("duration %q overflows", s)
		}
		return time.Duration(ms) * time.Millisecond, nil
	} else if ne, ok := err.(*strconv.NumError); ok && ne.Err == strconv.ErrRange {
		return 0, Invalidf("duration %q overflows", s)
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, Invalidf("duration %q is neither milliseconds nor a duration like 30s", s)
	}
	return d, nil
}

// CheckTTL reports whether ttl is a usable lease: at least one millisecond and
// at most max.
func CheckTTL(ttl, max time.Duration) error {
	if ttl < time.Millisecond {
		return Invalidf("ttl must be at least 1ms, got %s", ttl)
	}
	if ttl > max {
		return Invalidf("ttl %s exceeds the maximum %s", ttl, max)
	}
	return nil
}

// CheckWait reports whether wait is a usable queueing timeout: zero (no
// waiting) up to max.
func CheckWait(wait, max time.Duration) error {
	if wait < 0 {
		return Invalidf("wait must not be negative, got %s", wait)
	}
	if wait > max {
		return Invalidf("wait %s exceeds the maximum %s", wait, max)
	}
	return nil
}

// CheckKey reports whether key is a usable lock key.
func CheckKey(key string) error {
	if key == "" {
		return Invalidf("key must not be empty")
	}
	if len(key) > MaxKeyLen {
		return Invalidf("key is %d bytes, the maximum is %d", len(key), MaxKeyLen)
	}
	return nil
}

// CheckOwner reports whether owner is a usable owner identity.
func CheckOwner(owner string) error {
	if owner == "" {
		return Invalidf("owner must not be empty")
	}
	if len(owner) > MaxOwnerLen {
		return Invalidf("owner is %d bytes, the maximum is %d", len(owner), MaxOwnerLen)
	}
	return nil
}

// ParseToken parses a fencing token argument: a positive decimal integer.
func ParseToken(s string) (uint64, error) {
	t, err := strconv.ParseUint(s, 10, 64)
	if err != nil || t == 0 {
		return 0, Invalidf("token %q is not a positive integer", s)
	}
	return t, nil
}

// ParseInt parses a decimal integer exactly as Redis's string2ll does: no
// sign but '-', no leading zeros, no spaces, within int64. Redis parses integer
// arguments (SELECT, HELLO, SET PX, ...) so; strconv accepts "+3" and "007".
func ParseInt(s string) (int64, bool) {
	if s == "0" {
		return 0, true
	}
	if len(s) == 0 || len(s) > 20 {
		return 0, false
	}
	neg := s[0] == '-'
	p := s
	if neg {
		p = s[1:]
	}
	if len(p) == 0 || p[0] < '1' || p[0] > '9' {
		return 0, false
	}
	var v uint64
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		if v > (math.MaxUint64-uint64(c-'0'))/10 {
			return 0, false
		}
		v = v*10 + uint64(c-'0')
	}
	if neg {
		if v > 1<<63 {
			return 0, false
		}
		return int64(-v), true
	}
	if v > math.MaxInt64 {
		return 0, false
	}
	return int64(v), true
}
