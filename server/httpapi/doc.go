// Package httpapi is the lock server's HTTP JSON sidecar: the seed's
// endpoints, exactly, over a [lockapi.Service], plus health, readiness and
// metrics routes.
//
// # Endpoints
//
//	POST /locks/acquire   {"key","owner","ttl"[,"wait"]}             -> {"success":true,"lock":{...}}
//	POST /locks/renew     {"key","owner","ttl"[,"fencing_token"]}    -> {"success":true,"lock":{...}}
//	POST /locks/release   {"key","owner"[,"fencing_token"]}          -> {"success":true}
//	GET  /locks/{key...}                                             -> {"success":true,"lock":{...}}
//	GET  /locks                                                      -> {"success":true,"locks":[...],"count":N}
//	GET  /cluster/info                                               -> {"leader_id","term","nodes","quorum_size","has_quorum"}
//	GET  /health, /healthz      liveness:  200 {"status":"ok","node_id":...}
//	GET  /health/ready, /readyz readiness: 200 when there is a leader and a quorum, else 503
//	GET  /metrics               the configured Prometheus handler (404 when none)
//
// A lock object is
//
//	{"key":"resource-1","owner":"client-abc","ttl":"30s",
//	 "expires_at":"2024-01-15T10:30:30.000Z","version":1,"fencing_token":42}
//
// where ttl is [time.Duration.String] of the lease last granted and
// expires_at is RFC 3339 in UTC with exactly three fractional digits
// (milliseconds), the answering node's wall-clock estimate of the expiry.
//
// # Requests
//
// ttl and wait are a JSON string holding a Go duration ("30s", "500ms") or a
// bare integer of milliseconds ("30000"), or a JSON integer of milliseconds
// (30000); see [lockapi.ParseDuration]. A fencing token ("fencing_token", or
// its alias "token") is a positive integer, as a JSON number or a string.
// Bodies are at most 64 KiB (413 beyond), must hold exactly one JSON object
// and no unknown fields.
//
// Keys in GET /locks/{key...} are the rest of the path, unescaped: a key
// with slashes may be sent raw (/locks/a/b) when it has no empty or dot
// segments; any key can be sent with [net/url.PathEscape] (/locks/a%2F%2Fb).
// ServeMux answers an unclean raw path (/locks/a//b) with a 307 redirect to
// its cleaned form (/locks/a/b, another key), which is not a JSON reply.
// GET /locks/acquire reads the lock named "acquire".
//
// # Failures
//
// Every failure is {"success":false,"error":"<message>"} with a status chosen
// in one place (see the table in errors.go): 400 bad input, 401 missing or
// wrong password, 404 no such lock or route, 405 wrong method, 409 held by
// another owner or not held by this owner, 413 body too large, 503 no
// leader, no quorum or shutting down, 504 timed out or outcome unknown, 500
// anything else.
//
// # Authentication
//
// When [Config.Password] is set every route except liveness (/health,
// /healthz) requires "Authorization: Bearer <password>"; unknown routes
// answer 404 without it.
package httpapi
