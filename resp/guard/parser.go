package guard

import (
	"strconv"
	"sync/atomic"
)

// Defaults for [Limits]. Lock commands are tiny (a key, an owner, a TTL); the
// largest legitimate argument is an EVAL script body, a few kilobytes for
// every known lock library. Redis itself allows 512 MB bulks and INT_MAX
// arguments; we bound far lower so one connection costs at most a few
// megabytes.
const (
	// DefaultMaxArgs bounds the arguments of one command, the name included.
	DefaultMaxArgs = 1024
	// DefaultMaxBulkLen bounds one argument of a multibulk request, in bytes.
	DefaultMaxBulkLen = 512 << 10
	// DefaultMaxInlineLen bounds an inline command line, in bytes; it is
	// Redis's own PROTO_INLINE_MAX_SIZE.
	DefaultMaxInlineLen = 64 << 10
	// DefaultMaxRequestLen bounds a whole multibulk request, framing
	// included, in bytes.
	DefaultMaxRequestLen = 1 << 20
)

// Limits bounds what a client may send in one command. The zero value of a
// field (or a negative one) means its default.
type Limits struct {
	// MaxArgs is the most arguments one command may have, the command name
	// included (the N of `*N`, or the words of an inline command).
	// Default: [DefaultMaxArgs].
	MaxArgs int
	// MaxBulkLen is the longest single argument of a multibulk request (the
	// L of `$L`), in bytes. Default: [DefaultMaxBulkLen].
	MaxBulkLen int
	// MaxInlineLen is the longest inline command line, in bytes, excluding
	// its line ending. Default: [DefaultMaxInlineLen].
	MaxInlineLen int
	// MaxRequestLen is the largest multibulk request, framing included, in
	// bytes. Default: [DefaultMaxRequestLen].
	MaxRequestLen int
	// AuthRequired makes every connection start unauthenticated: until
	// [SetAuthenticated] marks it, a multibulk request may have at most
	// [UnauthenticatedMaxArgs] arguments of at most
	// [UnauthenticatedMaxBulkLen] bytes each, as Redis bounds clients that
	// have not authenticated (CVE-2021-32675), so that one without the
	// password holds about 160 KiB of a server's memory at most.
	AuthRequired bool
}

// Redis's bounds on a multibulk request from a connection that has not
// authenticated (networking.c); see [Limits.AuthRequired]. Inline requests
// are not bounded further, as in Redis (their line is [Limits.MaxInlineLen]
// at most anyway).
const (
	UnauthenticatedMaxArgs    = 10
	UnauthenticatedMaxBulkLen = 16384
)

// WithDefaults returns l with every zero or negative field replaced by its
// default.
func (l Limits) WithDefaults() Limits {
	if l.MaxArgs <= 0 {
		l.MaxArgs = DefaultMaxArgs
	}
	if l.MaxBulkLen <= 0 {
		l.MaxBulkLen = DefaultMaxBulkLen
	}
	if l.MaxInlineLen <= 0 {
		l.MaxInlineLen = DefaultMaxInlineLen
	}
	if l.MaxRequestLen <= 0 {
		l.MaxRequestLen = DefaultMaxRequestLen
	}
	return l
}

// ProtocolError is a violation of the RESP framing rules or of [Limits]. Its
// Error text is what Redis replies after "ERR ", e.g. "Protocol error:
// invalid bulk length".
type ProtocolError struct {
	// Msg is the reason, e.g. "invalid bulk length".
	Msg string
}

// Error returns "Protocol error: " followed by Msg.
func (e *ProtocolError) Error() string { return "Protocol error: " + e.Msg }

// Reasons, in Redis's words where Redis has them (networking.c).
var (
	errMultibulkLen = &ProtocolError{"invalid multibulk length"}
	errBulkLen      = &ProtocolError{"invalid bulk length"}
	errInlineLen    = &ProtocolError{"too big inline request"}
	errQuotes       = &ProtocolError{"unbalanced quotes in request"}
	errInlineArgs   = &ProtocolError{"too many arguments in inline request"}
	errRequestLen   = &ProtocolError{"too big multibulk request"}

	errUnauthMultibulkLen = &ProtocolError{"unauthenticated multibulk length"}
	errUnauthBulkLen      = &ProtocolError{"unauthenticated bulk length"}
)

func errExpectedDollar(c byte) *ProtocolError {
	got := string(rune(c))
	if c < 0x20 || c > 0x7e {
		got = `\x` + strconv.FormatUint(uint64(c)|0x100, 16)[1:]
	}
	return &ProtocolError{"expected '$', got '" + got + "'"}
}

// state is where the parser is in the byte stream.
type state uint8

const (
	stStart      state = iota // at a command boundary
	stMbCount                 // after '*', reading the argument count
	stMbCountLF               // after the count's '\r'
	stBulkDollar              // expecting '$' of the next argument
	stBulkLen                 // after '$', reading the length
	stBulkLenLF               // after the length's '\r'
	stBulkData                // inside an argument's bytes
	stBulkCR                  // expecting the '\r' after an argument
	stBulkLF                  // expecting the '\n' after an argument
	stInline                  // inside an inline command line
)

// tok is the inline tokenizer's state; it mirrors redcon's quote handling
// (Reader.readCommands) so that both reject the same lines.
type tok uint8

const (
	tokSep        tok = iota // between words
	tokWord                  // inside an unquoted word
	tokQuote                 // inside a quoted word
	tokQuoteEsc              // after a backslash inside a quoted word
	tokAfterQuote            // right after a closing quote
)

// maxDigits bounds the digits of a length so that parsing never overflows.
const maxDigits = 18

// holdMax bounds a held-back multibulk header: '*', '-', maxDigits digits,
// "\r\n".
const holdMax = 32

// parser is the incremental framing validator. feed passes valid bytes
// through and stops at the first violation, which is sticky.
//
// A request over the unauthenticated bounds, from a connection that has not
// authenticated, pauses the parser instead (held): the bytes before it are
// passed on, and whoever feeds it decides once those have been run, since an
// AUTH among them lifts the bounds (resume).
type parser struct {
	lim    Limits
	authed *atomic.Bool // nil: no unauthenticated bounds
	st     state
	err    *ProtocolError
	held   *ProtocolError // paused on a request over the unauthenticated bounds

	// Number being parsed (multibulk count or bulk length).
	neg  bool
	num  int64
	ndig int

	// The multibulk header is held back until it is complete, because
	// `*0\r\n` and `*-1\r\n` must be dropped rather than passed to redcon.
	hold  [holdMax]byte
	nhold int

	args     int64 // arguments left in the current multibulk request
	dataLeft int64 // bytes left in the current argument
	reqLen   int64 // bytes of the current multibulk request so far

	// An inline line is held back and decoded until its end, then passed
	// on as the equivalent multibulk request: redcon's inline parser
	// rescans an incomplete line on every read and allocates a copy of the
	// rest of the line per word, quadratic costs a client could exploit.
	lineLen int
	words   []byte // the decoded words, concatenated
	starts  []int  // where each word starts in words
	tok     tok
	quote   byte
	cr      bool // a '\r' is pending: it ends the line if '\n' follows

	cmds    int // complete non-empty commands passed through (for tests)
	dropped int // empty requests dropped (for tests)
}

func newParser(lim Limits) *parser {
	return &parser{lim: lim.WithDefaults()}
}

// feed validates src and appends the bytes to pass through to dst, which
// must not overlap src; it returns them and how many bytes of src it
// consumed, all of them unless it paused (p.held): the rest must be fed
// again after resume. After a violation, p.err is set, the count is 0 and
// the output ends
// where the offending command started (or at the start of this chunk if it
// started earlier: redcon then holds an incomplete command it will never
// complete).
func (p *parser) feed(dst, src []byte) ([]byte, int) {
	if p.err != nil || p.held != nil {
		return dst, 0
	}
	cmdOut := len(dst) // output length where the current command began
	emit := 0          // src[emit:i] is pending verbatim output
	i := 0
	for i < len(src) {
		c := src[i]
		switch p.st {
		case stStart:
			cmdOut = len(dst)
			if c == '*' {
				p.st = stMbCount
				p.hold[0] = '*'
				p.nhold = 1
				p.neg, p.num, p.ndig = false, 0, 0
			} else {
				p.st = stInline
				p.lineLen, p.tok, p.cr = 0, tokSep, false
				p.words, p.starts = p.words[:0], p.starts[:0]
				if err := p.inline(c); err != nil {
					return p.fail(dst, cmdOut, err)
				}
			}
			i++
			emit = i

		case stMbCount:
			switch {
			case c == '-' && p.ndig == 0 && !p.neg:
				p.neg = true
			case c >= '0' && c <= '9':
				if p.ndig > 0 && p.num == 0 { // leading zero
					return p.fail(dst, cmdOut, errMultibulkLen)
				}
				if p.neg && p.ndig == 0 && c == '0' { // "-0"
					return p.fail(dst, cmdOut, errMultibulkLen)
				}
				p.num = p.num*10 + int64(c-'0')
				p.ndig++
				if p.ndig > maxDigits || (!p.neg && p.num > int64(p.lim.MaxArgs)) {
					return p.fail(dst, cmdOut, errMultibulkLen)
				}
			case c == '\r' && p.ndig > 0:
				p.st = stMbCountLF
			default:
				return p.fail(dst, cmdOut, errMultibulkLen)
			}
			p.hold[p.nhold] = c
			p.nhold++
			i++
			emit = i

		case stMbCountLF:
			if c != '\n' {
				return p.fail(dst, cmdOut, errMultibulkLen)
			}
			if !p.neg && p.num > UnauthenticatedMaxArgs && p.unauthenticated() {
				p.held = errUnauthMultibulkLen // the header stays held
				return dst, i
			}
			p.hold[p.nhold] = c
			p.nhold++
			i++
			emit = i
			if p.neg || p.num == 0 {
				// An empty request: Redis ignores it, redcon would
				// reject it. Drop it.
				p.nhold = 0
				p.st = stStart
				p.dropped++
				continue
			}
			dst = append(dst, p.hold[:p.nhold]...)
			p.args = p.num
			p.reqLen = int64(p.nhold)
			p.nhold = 0
			p.st = stBulkDollar

		case stBulkDollar:
			if c != '$' {
				return p.fail(dst, cmdOut, errExpectedDollar(c))
			}
			p.neg, p.num, p.ndig = false, 0, 0
			p.st = stBulkLen
			i++

		case stBulkLen:
			switch {
			case c >= '0' && c <= '9':
				if p.ndig > 0 && p.num == 0 { // leading zero
					return p.fail(dst, cmdOut, errBulkLen)
				}
				p.num = p.num*10 + int64(c-'0')
				p.ndig++
				if p.ndig > maxDigits || p.num > int64(p.lim.MaxBulkLen) {
					return p.fail(dst, cmdOut, errBulkLen)
				}
			case c == '\r' && p.ndig > 0:
				p.st = stBulkLenLF
			default: // '-' (a null or negative bulk), '\n' without '\r', junk
				return p.fail(dst, cmdOut, errBulkLen)
			}
			i++

		case stBulkLenLF:
			if c != '\n' {
				return p.fail(dst, cmdOut, errBulkLen)
			}
			if p.num > UnauthenticatedMaxBulkLen && p.unauthenticated() {
				p.held = errUnauthBulkLen
				return append(dst, src[emit:i]...), i
			}
			// "$" + digits + "\r\n" + data + "\r\n"
			p.reqLen += int64(p.ndig) + 3 + p.num + 2
			if p.reqLen > int64(p.lim.MaxRequestLen) {
				return p.fail(dst, cmdOut, errRequestLen)
			}
			p.dataLeft = p.num
			p.st = stBulkData
			if p.dataLeft == 0 {
				p.st = stBulkCR
			}
			i++

		case stBulkData:
			n := int64(len(src) - i)
			if n > p.dataLeft {
				n = p.dataLeft
			}
			i += int(n)
			p.dataLeft -= n
			if p.dataLeft == 0 {
				p.st = stBulkCR
			}

		case stBulkCR:
			if c != '\r' {
				return p.fail(dst, cmdOut, errBulkLen)
			}
			p.st = stBulkLF
			i++

		case stBulkLF:
			if c != '\n' {
				return p.fail(dst, cmdOut, errBulkLen)
			}
			i++
			p.args--
			if p.args > 0 {
				p.st = stBulkDollar
				continue
			}
			p.cmds++
			p.st = stStart
			dst = append(dst, src[emit:i]...)
			emit = i

		case stInline:
			if err := p.inline(c); err != nil {
				return p.fail(dst, cmdOut, err)
			}
			i++
			emit = i
			if p.st == stStart && len(p.starts) > 0 {
				dst = p.appendInline(dst)
				p.cmds++
			}
		}
	}
	return append(dst, src[emit:]...), len(src)
}

// unauthenticated reports whether the unauthenticated bounds apply now.
func (p *parser) unauthenticated() bool {
	return p.authed != nil && !p.authed.Load()
}

// resume decides a pause (p.held) once everything passed before it has run:
// if the connection has authenticated since, parsing goes on where it
// stopped; otherwise the held violation becomes the parser's error. It
// reports whether parsing goes on.
func (p *parser) resume() bool {
	held := p.held
	p.held = nil
	if p.unauthenticated() {
		p.fail(nil, 0, held)
		return false
	}
	return true
}

// inline advances over one byte of an inline line, following redcon's
// rules (Reader.readCommands): a line ends at '\n', and a '\r' right before
// it is part of the ending; words are separated by spaces; a quote may only
// open a word and must be followed by a space or the end of the line; inside
// quotes a backslash escapes the next byte, and \n, \r and \t stand for
// newline, carriage return and tab.
func (p *parser) inline(c byte) *ProtocolError {
	if c == '\n' {
		switch p.tok {
		case tokQuote, tokQuoteEsc:
			return errQuotes
		}
		p.st = stStart
		return nil
	}
	p.lineLen++
	if p.lineLen > p.lim.MaxInlineLen {
		return errInlineLen
	}
	if p.cr {
		// The pending '\r' is not a line ending but a byte of the line.
		p.cr = false
		if err := p.inlineByte('\r'); err != nil {
			return err
		}
	}
	if c == '\r' {
		p.cr = true
		return nil
	}
	return p.inlineByte(c)
}

// inlineByte advances the tokenizer over one byte that is not part of the
// line ending.
func (p *parser) inlineByte(c byte) *ProtocolError {
	switch p.tok {
	case tokSep:
		switch c {
		case ' ':
			return nil
		case '"', '\'':
			p.tok, p.quote = tokQuote, c
		default:
			p.tok = tokWord
		}
		if len(p.starts) == p.lim.MaxArgs {
			return errInlineArgs
		}
		p.starts = append(p.starts, len(p.words))
		if p.tok == tokWord {
			p.words = append(p.words, c)
		}
	case tokWord:
		switch c {
		case ' ':
			p.tok = tokSep
		case '"', '\'':
			return errQuotes
		default:
			p.words = append(p.words, c)
		}
	case tokQuote:
		switch c {
		case '\\':
			p.tok = tokQuoteEsc
		case p.quote:
			p.tok = tokAfterQuote
		default:
			p.words = append(p.words, c)
		}
	case tokQuoteEsc:
		switch c {
		case 'n':
			c = '\n'
		case 'r':
			c = '\r'
		case 't':
			c = '\t'
		}
		p.words = append(p.words, c)
		p.tok = tokQuote
	case tokAfterQuote:
		if c != ' ' {
			return errQuotes
		}
		p.tok = tokSep
	}
	return nil
}

// appendInline appends the completed inline command as a multibulk request.
func (p *parser) appendInline(dst []byte) []byte {
	dst = append(dst, '*')
	dst = strconv.AppendInt(dst, int64(len(p.starts)), 10)
	dst = append(dst, '\r', '\n')
	for j, start := range p.starts {
		end := len(p.words)
		if j+1 < len(p.starts) {
			end = p.starts[j+1]
		}
		dst = append(dst, '$')
		dst = strconv.AppendInt(dst, int64(end-start), 10)
		dst = append(dst, '\r', '\n')
		dst = append(dst, p.words[start:end]...)
		dst = append(dst, '\r', '\n')
	}
	if cap(p.words) > 4<<10 {
		p.words = nil // do not keep a large line's buffer
	}
	return dst
}

// fail records a violation and truncates the output where the offending
// command began.
func (p *parser) fail(dst []byte, cmdOut int, err *ProtocolError) ([]byte, int) {
	p.err = err
	p.nhold = 0
	p.words, p.starts = nil, nil
	return dst[:cmdOut], 0
}
