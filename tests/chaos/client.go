//go:build unix

package chaos

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Result is what one request returned, classified.
type Result struct {
	Outcome Outcome
	Token   uint64
	Holder  string // info: owner of the lock, "" when free
	Err     string
}

// lockClient speaks one protocol to one node. A lockClient is used by one
// goroutine at a time.
type lockClient interface {
	acquire(key, owner string, ttl, wait time.Duration) Result
	renew(key, owner string, ttl time.Duration, token uint64) Result
	release(key, owner string, token uint64) Result
	info(key string) Result
	close()
}

// ms formats a duration as whole milliseconds, the unit both APIs accept.
func ms(d time.Duration) string { return strconv.FormatInt(d.Milliseconds(), 10) }

// failure classifies a transport error: nothing was sent (a refused dial)
// is a definite Error; anything later leaves a write's outcome unknown.
// Reads never change state, so a failed read is always an Error.
func failure(err error, sent, write bool) Result {
	if !sent || !write {
		return Result{Outcome: Error, Err: err.Error()}
	}
	return Result{Outcome: Unknown, Err: err.Error()}
}

// ---- RESP ----

// respClient is a minimal RESP2 client over one connection, reopened after
// any error (a late reply must never be read as the next one's).
type respClient struct {
	addr    string
	timeout time.Duration
	conn    net.Conn
	br      *bufio.Reader
}

// respReply is a parsed RESP2 reply.
type respReply struct {
	kind byte // '+', '-', ':', '$', '*'
	str  string
	num  int64
	null bool
	arr  []respReply
}

func (c *respClient) close() {
	if c.conn != nil {
		c.conn.Close()
		c.conn = nil
	}
}

// do sends one command and reads its reply. sent reports whether any byte
// may have reached the server.
func (c *respClient) do(extra time.Duration, args ...string) (r respReply, sent bool, err error) {
	if c.conn == nil {
		conn, err := net.DialTimeout("tcp", c.addr, c.timeout)
		if err != nil {
			return r, false, err
		}
		c.conn, c.br = conn, bufio.NewReader(conn)
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	c.conn.SetDeadline(time.Now().Add(c.timeout + extra))
	if _, err := c.conn.Write(b.Bytes()); err != nil {
		c.close()
		return r, true, err
	}
	r, err = readReply(c.br, 0)
	if err != nil {
		c.close()
		return r, true, err
	}
	return r, true, nil
}

func readReply(br *bufio.Reader, depth int) (respReply, error) {
	var r respReply
	if depth > 4 {
		return r, errors.New("resp: reply nested too deep")
	}
	line, err := br.ReadString('\n')
	if err != nil {
		return r, err
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return r, errors.New("resp: empty reply line")
	}
	r.kind, line = line[0], line[1:]
	switch r.kind {
	case '+', '-':
		r.str = line
	case ':':
		r.num, err = strconv.ParseInt(line, 10, 64)
	case '_':
		r.null = true
	case '$':
		n, perr := strconv.Atoi(line)
		if perr != nil || n > 1<<20 {
			return r, fmt.Errorf("resp: bad bulk length %q", line)
		}
		if n < 0 {
			r.null = true
			return r, nil
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(br, buf); err != nil {
			return r, err
		}
		r.str = string(buf[:n])
	case '*':
		n, perr := strconv.Atoi(line)
		if perr != nil || n > 1024 {
			return r, fmt.Errorf("resp: bad array length %q", line)
		}
		if n < 0 {
			r.null = true
			return r, nil
		}
		for i := 0; i < n; i++ {
			e, err := readReply(br, depth+1)
			if err != nil {
				return r, err
			}
			r.arr = append(r.arr, e)
		}
	default:
		return r, fmt.Errorf("resp: unexpected reply type %q", r.kind)
	}
	return r, err
}

// respError classifies an error reply by its code word.
func respError(msg string, write bool) Result {
	code, _, _ := strings.Cut(msg, " ")
	switch code {
	case "UNKNOWN", "TIMEOUT":
		if write {
			return Result{Outcome: Unknown, Err: msg}
		}
	}
	return Result{Outcome: Error, Err: msg}
}

func (c *respClient) write(extra time.Duration, args ...string) (respReply, Result, bool) {
	r, sent, err := c.do(extra, args...)
	if err != nil {
		return r, failure(err, sent, true), false
	}
	if r.kind == '-' {
		if code, _, _ := strings.Cut(r.str, " "); code == "NOTHELD" {
			return r, Result{Outcome: Fail, Err: r.str}, false
		}
		return r, respError(r.str, true), false
	}
	return r, Result{}, true
}

func (c *respClient) tokenReply(r respReply) Result {
	switch {
	case r.kind == ':' && r.num > 0:
		return Result{Outcome: OK, Token: uint64(r.num)}
	case r.null:
		return Result{Outcome: Fail}
	}
	return Result{Outcome: Unknown, Err: fmt.Sprintf("unexpected reply %+v", r)}
}

func (c *respClient) acquire(key, owner string, ttl, wait time.Duration) Result {
	args := []string{"LOCK.ACQUIRE", key, owner, ms(ttl)}
	if wait > 0 {
		args = append(args, "WAIT", ms(wait))
	}
	r, res, ok := c.write(wait, args...)
	if !ok {
		return res
	}
	return c.tokenReply(r)
}

func (c *respClient) renew(key, owner string, ttl time.Duration, token uint64) Result {
	r, res, ok := c.write(0, "LOCK.RENEW", key, owner, ms(ttl), "TOKEN", strconv.FormatUint(token, 10))
	if !ok {
		return res
	}
	return c.tokenReply(r)
}

func (c *respClient) release(key, owner string, token uint64) Result {
	r, res, ok := c.write(0, "LOCK.RELEASE", key, owner, "TOKEN", strconv.FormatUint(token, 10))
	if !ok {
		return res
	}
	switch {
	case r.kind == ':' && r.num == 1:
		return Result{Outcome: OK}
	case r.kind == ':' && r.num == 0:
		return Result{Outcome: Fail}
	}
	return Result{Outcome: Unknown, Err: fmt.Sprintf("unexpected reply %+v", r)}
}

func (c *respClient) info(key string) Result {
	r, _, err := c.do(0, "LOCK.INFO", key)
	switch {
	case err != nil:
		return failure(err, true, false)
	case r.kind == '-':
		return respError(r.str, false)
	case r.null:
		return Result{Outcome: OK}
	case r.kind != '*' || len(r.arr)%2 != 0:
		return Result{Outcome: Error, Err: fmt.Sprintf("unexpected LOCK.INFO reply %+v", r)}
	}
	var res Result
	for i := 0; i+1 < len(r.arr); i += 2 {
		switch r.arr[i].str {
		case "owner":
			res.Holder = r.arr[i+1].str
		case "fencing_token":
			res.Token = uint64(r.arr[i+1].num)
		}
	}
	if res.Holder == "" || res.Token == 0 {
		return Result{Outcome: Error, Err: fmt.Sprintf("LOCK.INFO reply without owner or token: %+v", r)}
	}
	res.Outcome = OK
	return res
}

// ---- HTTP ----

// httpClient calls one node's HTTP API.
type httpClient struct {
	base    string // http://127.0.0.1:port
	timeout time.Duration
	hc      *http.Client
}

func newHTTPClient(addr string, timeout time.Duration) *httpClient {
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: timeout}).DialContext,
		MaxIdleConnsPerHost: 2,
		IdleConnTimeout:     30 * time.Second,
		DisableCompression:  true,
	}
	return &httpClient{base: "http://" + addr, timeout: timeout, hc: &http.Client{Transport: tr}}
}

func (c *httpClient) close() { c.hc.CloseIdleConnections() }

// lockDoc is the part of a lock object the harness reads.
type lockDoc struct {
	Owner string `json:"owner"`
	Token uint64 `json:"fencing_token"`
}

// httpAnswer is one HTTP exchange: status 0 when no answer arrived (sent
// then says whether the request may have reached the node).
type httpAnswer struct {
	code int
	lock *lockDoc
	err  error
	sent bool
}

// call sends one request and decodes the lock in a 200 answer.
func (c *httpClient) call(method, path string, body any, extra time.Duration) httpAnswer {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout+extra)
	defer cancel()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return httpAnswer{err: err}
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		var op *net.OpError
		return httpAnswer{err: err, sent: !(errors.As(err, &op) && op.Op == "dial")}
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return httpAnswer{err: err, sent: true}
	}
	var doc struct {
		Lock  *lockDoc `json:"lock"`
		Error string   `json:"error"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		return httpAnswer{code: resp.StatusCode, err: fmt.Errorf("status %d, body %q: %v", resp.StatusCode, raw, err), sent: true}
	}
	if resp.StatusCode != http.StatusOK {
		return httpAnswer{code: resp.StatusCode, err: fmt.Errorf("status %d: %s", resp.StatusCode, doc.Error), sent: true}
	}
	return httpAnswer{code: resp.StatusCode, lock: doc.Lock, sent: true}
}

// httpWrite classifies the answer to a write.
func (c *httpClient) httpWrite(path string, body any, extra time.Duration) Result {
	a := c.call(http.MethodPost, path, body, extra)
	switch {
	case a.code == 0:
		return failure(a.err, a.sent, true)
	case a.code == http.StatusOK && a.lock != nil:
		return Result{Outcome: OK, Token: a.lock.Token}
	case a.code == http.StatusOK:
		return Result{Outcome: OK}
	case a.code == http.StatusConflict, a.code == http.StatusNotFound:
		return Result{Outcome: Fail, Err: a.err.Error()}
	case a.code == http.StatusServiceUnavailable, a.code == http.StatusBadRequest:
		return Result{Outcome: Error, Err: a.err.Error()}
	}
	return Result{Outcome: Unknown, Err: a.err.Error()}
}

func (c *httpClient) acquire(key, owner string, ttl, wait time.Duration) Result {
	body := map[string]any{"key": key, "owner": owner, "ttl": ttl.String()}
	if wait > 0 {
		body["wait"] = wait.String()
	}
	r := c.httpWrite("/locks/acquire", body, wait)
	if r.Outcome == OK && r.Token == 0 {
		return Result{Outcome: Unknown, Err: "acquire answered 200 without a fencing token"}
	}
	return r
}

func (c *httpClient) renew(key, owner string, ttl time.Duration, token uint64) Result {
	return c.httpWrite("/locks/renew", map[string]any{"key": key, "owner": owner, "ttl": ttl.String(), "fencing_token": token}, 0)
}

func (c *httpClient) release(key, owner string, token uint64) Result {
	return c.httpWrite("/locks/release", map[string]any{"key": key, "owner": owner, "fencing_token": token}, 0)
}

func (c *httpClient) info(key string) Result {
	a := c.call(http.MethodGet, "/locks/"+key, nil, 0)
	switch {
	case a.code == http.StatusNotFound:
		return Result{Outcome: OK}
	case a.code == http.StatusOK && a.lock != nil && a.lock.Owner != "" && a.lock.Token != 0:
		return Result{Outcome: OK, Holder: a.lock.Owner, Token: a.lock.Token}
	case a.err == nil:
		a.err = fmt.Errorf("status %d without a lock", a.code)
	}
	return Result{Outcome: Error, Err: a.err.Error()}
}
