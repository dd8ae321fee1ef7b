// Package guard is a bounded RESP framing validator that sits between the
// network and redcon's command reader, so that redcon never sees untrusted,
// unbounded bytes.
//
// redcon v1.6.4 trusts its input: a 26-byte request with an overflowing bulk
// length (`*1\r\n$9223372036854775807\r\n`) panics the connection goroutine,
// which has no recover, and kills the process; and it has no limit on bulk
// length, multibulk count, inline line length or connection count, so its
// buffer doubles until memory runs out. [Listener] wraps a net.Listener so
// that every accepted connection's Read streams the client's bytes through an
// incremental state machine that enforces [Limits] before a byte reaches
// redcon:
//
//   - multibulk requests (`*N\r\n` then N items `$L\r\n<L bytes>\r\n`): N
//     and L are parsed digit by digit with bounds before any arithmetic;
//     non-numeric, signed, zero-padded, oversized or unterminated lengths are
//     rejected, and so is a request larger than [Limits.MaxRequestLen];
//   - `*0\r\n` and `*-N\r\n` are empty requests that Redis ignores; the guard
//     drops them, because redcon would reject them;
//   - inline commands (any other first byte, ended by `\n` or `\r\n`) are
//     bounded by [Limits.MaxInlineLen] and [Limits.MaxArgs], split into
//     words with exactly redcon's quoting rules, and passed on as the
//     equivalent multibulk request once the line is complete, because
//     redcon's inline parser has quadratic costs (it rescans an incomplete
//     line on every read and copies the rest of the line for every word).
//
// On a violation the connection's Read first returns the complete requests
// that preceded the offending one (redcon runs them and flushes their replies
// before reading again), then writes a Redis-style `-ERR Protocol error: ...`
// reply directly to the client and returns a [*ProtocolError], which makes
// redcon close the connection. Besides a 4 KiB read buffer, the guard holds
// back at most a multibulk header or one inline line per connection.
//
// With [Limits.AuthRequired] (a password is set), a connection that has not
// authenticated may send at most 10 arguments of at most 16 KiB each, as in
// Redis ("Protocol error: unauthenticated multibulk length" / "bulk
// length"); the server lifts the bounds with [SetAuthenticated]. A request
// over them is decided only once the requests before it have run, so an
// AUTH pipelined before it counts.
//
// [Listener] also enforces a connection limit: a connection over the limit
// gets `-ERR max number of clients reached` and is closed without being
// handed to the server.
//
// To use the guard with TLS, wrap the TLS listener (guard.Listener(
// tls.NewListener(ln, cfg), ...)) so that the guard sees decrypted bytes.
// It then runs each connection's handshake before the first read, under a
// 10 s deadline, and bounds the close alert of its Close and the refusal
// of a connection over the limit.
package guard
