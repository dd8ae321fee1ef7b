// Package lockapi is the vocabulary shared by the lock server's front ends
// (RESP in package resp, HTTP in package server/httpapi) and its core
// (package server): the typed requests and replies of the lock service, the
// [Service] interface both front ends consume, the sentinel errors every layer
// matches with [errors.Is], and the parsing and validation rules for TTLs,
// keys and owners, so that RESP and HTTP reject the same inputs with the same
// words.
//
// The package does no I/O and imports nothing of the project's.
package lockapi
