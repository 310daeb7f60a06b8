package kv

import (
	"context"
	"errors"
	"strconv"
	"strings"

	"github.com/hashicorp/vault/api"

	"github.com/blindpost/blindpost/vault"
)

// opError is the error of a call that reached, or tried to reach, Vault.
// It matches its kind (vault.ErrNotFound, ErrInvalid, ErrUnavailable or
// ErrCorrupt) and the underlying error, but its text is built only from this
// package's words and the HTTP status: never Vault's response, which can
// quote the request path, and never a record value.
type opError struct {
	op     string
	status int
	reason string
	kind   error
	err    error
}

func (e *opError) Error() string {
	var b strings.Builder
	b.WriteString("kv: ")
	b.WriteString(e.op)
	b.WriteString(": ")
	b.WriteString(e.kind.Error())
	if e.reason != "" {
		b.WriteString(": ")
		b.WriteString(e.reason)
	}
	if e.status != 0 {
		b.WriteString(" (HTTP ")
		b.WriteString(strconv.Itoa(e.status))
		b.WriteString(")")
	}
	return b.String()
}

func (e *opError) Unwrap() []error {
	if e.err == nil {
		return []error{e.kind}
	}
	return []error{e.kind, e.err}
}

func newErr(op string, kind error, reason string) error {
	return &opError{op: op, kind: kind, reason: reason}
}

// errConflict: a check-and-set write lost to another writer.
var errConflict = errors.New("check-and-set conflict")

// vaultErr classifies an error of the API client. A sealed, standby,
// overloaded or unreachable Vault, and a token Vault refuses, are retryable:
// the gateway must hold messages until an operator fixes it, not drop them.
func vaultErr(op string, err error) error {
	var re *api.ResponseError
	if !errors.As(err, &re) {
		reason := "cannot reach Vault"
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			reason = "cancelled or timed out"
		}
		return &opError{op: op, kind: vault.ErrUnavailable, reason: reason, err: err}
	}
	e := &opError{op: op, status: re.StatusCode, err: err}
	switch s := re.StatusCode; {
	case s == 503 && mentions(re, "sealed"):
		e.kind, e.reason = vault.ErrUnavailable, "Vault is sealed"
	case s >= 500 || s == 429 || s == 412:
		e.kind, e.reason = vault.ErrUnavailable, "Vault is unavailable"
	case s == 401 || s == 403:
		e.kind, e.reason = vault.ErrUnavailable, "permission denied (check the gateway's Vault token and policy)"
	case s == 404:
		// KV v2 answers a missing secret with an empty error list; a
		// message means the path has no engine at all.
		e.kind, e.reason = vault.ErrUnavailable, "no KV v2 engine at the mount"
	case s == 400 && mentions(re, "check-and-set"):
		e.kind, e.reason, e.err = vault.ErrUnavailable, "check-and-set conflict", errors.Join(errConflict, err)
	default:
		e.kind, e.reason = vault.ErrInvalid, "request rejected by Vault"
	}
	return e
}

func mentions(re *api.ResponseError, word string) bool {
	for _, m := range re.Errors {
		if strings.Contains(m, word) {
			return true
		}
	}
	return false
}
