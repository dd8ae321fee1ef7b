package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/distlock/distlock/lockapi"
)

// maxBodyBytes bounds a request body; lock requests are a few hundred bytes.
const maxBodyBytes = 64 << 10

// expiresAtLayout is RFC 3339 with exactly three fractional digits; times are
// converted to UTC first, so the zone is always "Z".
const expiresAtLayout = "2006-01-02T15:04:05.000Z07:00"

// acquireBody is the body of POST /locks/acquire. Durations stay raw until
// parsed, so a bad one is reported with its field name.
type acquireBody struct {
	Key   string          `json:"key"`
	Owner string          `json:"owner"`
	TTL   json.RawMessage `json:"ttl"`
	Wait  json.RawMessage `json:"wait"`
}

// renewBody is the body of POST /locks/renew.
type renewBody struct {
	Key          string          `json:"key"`
	Owner        string          `json:"owner"`
	TTL          json.RawMessage `json:"ttl"`
	FencingToken json.RawMessage `json:"fencing_token"`
	Token        json.RawMessage `json:"token"`
}

// releaseBody is the body of POST /locks/release.
type releaseBody struct {
	Key          string          `json:"key"`
	Owner        string          `json:"owner"`
	FencingToken json.RawMessage `json:"fencing_token"`
	Token        json.RawMessage `json:"token"`
}

// lockJSON is a lock as the seed shows it, plus fencing_token.
type lockJSON struct {
	Key          string `json:"key"`
	Owner        string `json:"owner"`
	TTL          string `json:"ttl"`
	ExpiresAt    string `json:"expires_at"`
	Version      uint64 `json:"version"`
	FencingToken uint64 `json:"fencing_token"`
}

func toLockJSON(l lockapi.Lock) lockJSON {
	return lockJSON{
		Key:          l.Key,
		Owner:        l.Owner,
		TTL:          l.TTL.String(),
		ExpiresAt:    l.ExpiresAt.UTC().Format(expiresAtLayout),
		Version:      l.Version,
		FencingToken: l.Token,
	}
}

// lockReply answers acquire, renew and GET /locks/{key}.
type lockReply struct {
	Success bool     `json:"success"`
	Lock    lockJSON `json:"lock"`
}

// listReply answers GET /locks.
type listReply struct {
	Success bool       `json:"success"`
	Locks   []lockJSON `json:"locks"`
	Count   int        `json:"count"`
}

// okReply answers release.
type okReply struct {
	Success bool `json:"success"`
}

// failureBody is every failure's body.
type failureBody struct {
	Success bool   `json:"success"`
	Error   string `json:"error"`
}

// clusterJSON is GET /cluster/info, exactly the seed's shape.
type clusterJSON struct {
	LeaderID   string     `json:"leader_id"`
	Term       uint64     `json:"term"`
	Nodes      []nodeJSON `json:"nodes"`
	QuorumSize int        `json:"quorum_size"`
	HasQuorum  bool       `json:"has_quorum"`
}

// nodeJSON is one cluster member: the seed's id and state, then addresses
// when known.
type nodeJSON struct {
	ID          string `json:"id"`
	State       string `json:"state"`
	Address     string `json:"address,omitempty"`
	RESPAddress string `json:"resp_address,omitempty"`
	HTTPAddress string `json:"http_address,omitempty"`
}

func toClusterJSON(ci lockapi.ClusterInfo) clusterJSON {
	nodes := make([]nodeJSON, 0, len(ci.Nodes))
	for _, n := range ci.Nodes {
		nodes = append(nodes, nodeJSON{
			ID: n.ID, State: n.State,
			Address: n.Address, RESPAddress: n.RESPAddr, HTTPAddress: n.HTTPAddr,
		})
	}
	return clusterJSON{
		LeaderID:   ci.LeaderID,
		Term:       ci.Term,
		Nodes:      nodes,
		QuorumSize: ci.QuorumSize,
		HasQuorum:  ci.HasQuorum,
	}
}

// healthReply answers liveness, and readiness when ready.
type healthReply struct {
	Status    string `json:"status"`
	NodeID    string `json:"node_id"`
	LeaderID  string `json:"leader_id,omitempty"`
	HasQuorum *bool  `json:"has_quorum,omitempty"`
}

// notReadyReply answers readiness with 503: a failure body plus the reason's
// context.
type notReadyReply struct {
	Success   bool   `json:"success"`
	Error     string `json:"error"`
	Status    string `json:"status"`
	NodeID    string `json:"node_id"`
	LeaderID  string `json:"leader_id"`
	HasQuorum bool   `json:"has_quorum"`
}

// writeJSON writes v as the whole response with the given status.
func writeJSON(w http.ResponseWriter, code int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		// Only our own reply types are encoded; they always marshal.
		code = http.StatusInternalServerError
		buf.Reset()
		buf.WriteString(`{"success":false,"error":"internal error"}` + "\n")
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write(buf.Bytes())
}

// decodeBody reads r's body, at most maxBodyBytes of it, into dst: exactly
// one JSON object, no unknown fields, nothing after it but whitespace.
func decodeBody(w http.ResponseWriter, r *http.Request, dst any) error {
	if r.ContentLength > maxBodyBytes {
		return fmt.Errorf("%w: %d bytes, the maximum is %d", errBodyTooLarge, r.ContentLength, maxBodyBytes)
	}
	// The innermost writer lets MaxBytesReader close the connection after
	// an oversized body instead of draining it.
	body := http.MaxBytesReader(rootWriter(w), r.Body, maxBodyBytes)
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return bodyError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		if err != nil && tooLarge(err) {
			return bodyError(err)
		}
		return lockapi.Invalidf("unexpected data after the JSON object")
	}
	return nil
}

// bodyError turns a JSON decoding error into a request error.
func bodyError(err error) error {
	var (
		syntax *json.SyntaxError
		typ    *json.UnmarshalTypeError
	)
	switch {
	case tooLarge(err):
		return fmt.Errorf("%w: the maximum is %d bytes", errBodyTooLarge, maxBodyBytes)
	case errors.Is(err, io.EOF):
		return lockapi.Invalidf("request body is empty; expected a JSON object")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("%w: malformed JSON body: %w", lockapi.ErrInvalid, err)
	case errors.As(err, &syntax):
		return fmt.Errorf("%w: malformed JSON body at byte %d: %w", lockapi.ErrInvalid, syntax.Offset, err)
	case errors.As(err, &typ) && typ.Field == "":
		return fmt.Errorf("%w: request body must be a JSON object, got %s", lockapi.ErrInvalid, typ.Value)
	case errors.As(err, &typ):
		return fmt.Errorf("%w: field %q must be a JSON %s, got %s", lockapi.ErrInvalid, typ.Field, typ.Type, typ.Value)
	default:
		// Unknown fields (json: unknown field "x") and anything else the
		// decoder rejects.
		return fmt.Errorf("%w: %s", lockapi.ErrInvalid, strings.TrimPrefix(err.Error(), "json: "))
	}
}

// rootWriter unwraps w down to the server's own ResponseWriter.
func rootWriter(w http.ResponseWriter) http.ResponseWriter {
	for {
		u, ok := w.(interface{ Unwrap() http.ResponseWriter })
		if !ok {
			return w
		}
		w = u.Unwrap()
	}
}

func tooLarge(err error) bool {
	var mbe *http.MaxBytesError
	return errors.As(err, &mbe)
}

// present reports whether an optional raw field was given (absent and null
// are the same).
func present(raw json.RawMessage) bool {
	return len(raw) > 0 && !bytes.Equal(raw, []byte("null"))
}

// parseDuration parses a raw ttl or wait field: a JSON string as
// [lockapi.ParseDuration] reads it, or a JSON integer of milliseconds.
func parseDuration(field string, raw json.RawMessage) (time.Duration, error) {
	s, err := rawScalar(field, raw)
	if err != nil {
		return 0, err
	}
	d, err := lockapi.ParseDuration(s)
	if err != nil {
		msg := strings.TrimPrefix(err.Error(), lockapi.ErrInvalid.Error()+": ")
		return 0, fmt.Errorf("%w: %s: %s", lockapi.ErrInvalid, field, msg)
	}
	return d, nil
}

// parseToken parses the optional fencing_token and token fields; they must
// agree when both are given. Zero means none.
func parseToken(fencing, alias json.RawMessage) (uint64, error) {
	var tokens []uint64
	for _, f := range []struct {
		name string
		raw  json.RawMessage
	}{{"fencing_token", fencing}, {"token", alias}} {
		if !present(f.raw) {
			continue
		}
		s, err := rawScalar(f.name, f.raw)
		if err != nil {
			return 0, err
		}
		t, err := lockapi.ParseToken(s)
		if err != nil {
			return 0, err
		}
		tokens = append(tokens, t)
	}
	switch {
	case len(tokens) == 0:
		return 0, nil
	case len(tokens) == 2 && tokens[0] != tokens[1]:
		return 0, lockapi.Invalidf("fencing_token %d and token %d differ", tokens[0], tokens[1])
	default:
		return tokens[0], nil
	}
}

// rawScalar returns the text of a JSON string, or a JSON number's literal.
func rawScalar(field string, raw json.RawMessage) (string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) > 0 && raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", fmt.Errorf("%w: %s: %w", lockapi.ErrInvalid, field, err)
		}
		return s, nil
	}
	if len(raw) > 0 && (raw[0] == '-' || ('0' <= raw[0] && raw[0] <= '9')) {
		return string(raw), nil
	}
	return "", lockapi.Invalidf("%s must be a string or a number, got %.32s", field, raw)
}
