package resp

import (
	"strconv"

	"github.com/tidwall/redcon"
)

// Reply writers. Handlers append their reply to c.out, which the server
// hands to redcon once the handler returns, so a panicking handler's partial
// reply can be discarded. redcon only speaks RESP2, so the RESP3 types
// (map, null, boolean) are framed here and fall back to their RESP2 forms on
// RESP2 connections, as Redis does.

// maxKeptOut is the largest reply buffer kept between commands.
const maxKeptOut = 64 << 10

// resetOut empties the reply buffer, dropping it if a large reply grew it.
func (c *client) resetOut() {
	if cap(c.out) > maxKeptOut {
		c.out = nil
		return
	}
	c.out = c.out[:0]
}

// writeOK writes +OK.
func (c *client) writeOK() { c.out = append(c.out, "+OK\r\n"...) }

// writeSimple writes a simple string (newlines become spaces).
func (c *client) writeSimple(s string) { c.out = redcon.AppendString(c.out, s) }

// writeErrorText writes an error reply; msg starts with its code ("ERR
// ...", "NOAUTH ..."). Newlines become spaces.
func (c *client) writeErrorText(msg string) { c.out = redcon.AppendError(c.out, msg) }

// writeInt writes an integer.
func (c *client) writeInt(n int64) { c.out = redcon.AppendInt(c.out, n) }

// writeUint writes an unsigned integer.
func (c *client) writeUint(n uint64) { c.out = redcon.AppendUint(c.out, n) }

// writeBulk writes a bulk string.
func (c *client) writeBulk(b []byte) { c.out = redcon.AppendBulk(c.out, b) }

// writeBulkString writes a bulk string.
func (c *client) writeBulkString(s string) { c.out = redcon.AppendBulkString(c.out, s) }

// writeArray writes an array header; n elements must follow.
func (c *client) writeArray(n int) { c.out = redcon.AppendArray(c.out, n) }

// writeMap writes a map header; n key-value pairs must follow. On RESP2 it
// is a flat array of 2n elements.
func (c *client) writeMap(n int) {
	if c.resp3 {
		c.out = append(c.out, '%')
		c.out = strconv.AppendInt(c.out, int64(n), 10)
		c.out = append(c.out, '\r', '\n')
		return
	}
	c.writeArray(2 * n)
}

// writeNull writes a null where a string or integer was expected: `_` on
// RESP3, a null bulk string on RESP2.
func (c *client) writeNull() {
	if c.resp3 {
		c.out = append(c.out, "_\r\n"...)
		return
	}
	c.out = append(c.out, "$-1\r\n"...)
}

// writeNullArray writes a null where an array or map was expected: `_` on
// RESP3, a null array on RESP2.
func (c *client) writeNullArray() {
	if c.resp3 {
		c.out = append(c.out, "_\r\n"...)
		return
	}
	c.out = append(c.out, "*-1\r\n"...)
}

// writeBool writes a boolean: `#t`/`#f` on RESP3, integer 1/0 on RESP2.
func (c *client) writeBool(v bool) {
	switch {
	case c.resp3 && v:
		c.out = append(c.out, "#t\r\n"...)
	case c.resp3:
		c.out = append(c.out, "#f\r\n"...)
	case v:
		c.out = append(c.out, ":1\r\n"...)
	default:
		c.out = append(c.out, ":0\r\n"...)
	}
}
