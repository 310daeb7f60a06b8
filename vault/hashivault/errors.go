package hashivault

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"

	"github.com/hashicorp/vault/api"

	"github.com/blindpost/blindpost/vault"
)

// Error is the error of every Provider call that reached, or tried to
// reach, Vault. It matches (errors.Is) one of vault.ErrUnavailable,
// vault.ErrCorrupt or vault.ErrInvalid, and the underlying error (an
// *api.ResponseError, a network error, a context error), but its text is
// built only from this package's own words, the operation, the key or path
// and the HTTP status: never Vault's response text, a ciphertext, a key,
// a token or a secret id.
type Error struct {
	Op     string // wrap, unwrap, token mac, rewrap, login, setup, ...
	Key    string // the Transit key or API path, if any
	Status int    // Vault's HTTP status, 0 if there was no response
	Reason string // why, in this package's words
	Kind   error  // vault.ErrUnavailable, vault.ErrCorrupt or vault.ErrInvalid
	Err    error  // the underlying error; not part of Error()
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("hashivault: ")
	b.WriteString(e.Op)
	if e.Key != "" {
		b.WriteString(" ")
		b.WriteString(e.Key)
	}
	b.WriteString(": ")
	b.WriteString(e.Kind.Error())
	if e.Reason != "" {
		b.WriteString(": ")
		b.WriteString(e.Reason)
	}
	if e.Status != 0 {
		b.WriteString(" (HTTP ")
		b.WriteString(strconv.Itoa(e.Status))
		b.WriteString(")")
	}
	return b.String()
}

func (e *Error) Unwrap() []error {
	if e.Err == nil {
		return []error{e.Kind}
	}
	return []error{e.Kind, e.Err}
}

// Reasons, shared by the classification below and the tests.
const (
	reasonSealed      = "Vault is sealed"
	reasonDown        = "Vault is unavailable (standby, maintenance or overload)"
	reasonServer      = "Vault server error"
	reasonRateLimited = "rate limited by Vault"
	reasonDenied      = "permission denied: the Vault token's policy does not allow this path, " +
		"or the token expired or was revoked (check the gateway's Vault policy and auth config)"
	reasonNoPath   = "no such path: is the Transit engine mounted there (config mount, namespace)?"
	reasonNoKey    = "Transit key not found: run setup for this tenant, or check key_prefix and mount"
	reasonVersion  = "the pinned key version is not available in Transit (check token_key_version)"
	reasonRetired  = "the key version that wrapped it is retired (min_decryption_version or trim)"
	reasonAuthFail = "Transit could not decrypt it: tampered, or bound to another subject or tenant"
	reasonRejected = "request rejected by Vault"
	reasonNetwork  = "cannot reach Vault"
	reasonTLS      = "cannot reach Vault: TLS certificate not trusted (check ca_file and tls_server_name)"
	reasonTimeout  = "cannot reach Vault: timed out"
	reasonRefused  = "cannot reach Vault: connection refused"
	reasonCanceled = "canceled"
	reasonMalform  = "not a Transit ciphertext"
	reasonBadReply = "unexpected response from Vault"
)

// classify turns the error of a Vault request into an *Error.
func classify(ctx context.Context, op, key string, err error) *Error {
	e := &Error{Op: op, Key: key, Kind: vault.ErrUnavailable, Err: err}
	var re *api.ResponseError
	switch {
	case errors.As(err, &re):
		e.Status = re.StatusCode
		e.Reason, e.Kind = classifyResponse(op, re.StatusCode, strings.Join(re.Errors, "; "))
	case ctx.Err() != nil:
		e.Reason, e.Err = reasonCanceled, errors.Join(ctx.Err(), err)
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			e.Reason = reasonTimeout
		}
	default:
		e.Reason = networkReason(err)
	}
	return e
}

// classifyResponse maps Vault's status, and for a 400 its message, to a
// kind and a reason. Vault's messages carry no error codes; the few
// phrases matched here have been stable across Vault and OpenBao releases,
// and anything unmatched falls to the safe side for the operation.
func classifyResponse(op string, status int, msg string) (reason string, kind error) {
	switch {
	case status == http.StatusServiceUnavailable:
		if strings.Contains(msg, "sealed") {
			return reasonSealed, vault.ErrUnavailable
		}
		return reasonDown, vault.ErrUnavailable
	case status == http.StatusForbidden:
		return reasonDenied, vault.ErrUnavailable
	case status == http.StatusNotFound:
		return reasonNoPath, vault.ErrUnavailable
	case status == http.StatusTooManyRequests:
		return reasonRateLimited, vault.ErrUnavailable
	case status >= 500 || status == http.StatusPreconditionFailed:
		return reasonServer, vault.ErrUnavailable
	case status == http.StatusBadRequest:
		return classifyItem(op, msg)
	}
	return reasonServer, vault.ErrUnavailable
}

// classifyItem classifies a 400 or a batch item's error text.
func classifyItem(op, msg string) (reason string, kind error) {
	switch {
	case strings.Contains(msg, "key not found"):
		// A missing key is a configuration problem (a wrong prefix or
		// mount, a tenant not set up), not a bad record: wait for the
		// operator instead of failing messages.
		return reasonNoKey, vault.ErrUnavailable
	case op == opTokenMAC && strings.Contains(msg, "version"):
		return reasonVersion, vault.ErrUnavailable
	case op == opUnwrap || op == opRewrap:
		if strings.Contains(msg, "too old") || strings.Contains(msg, "disallowed") || strings.Contains(msg, "version") {
			return reasonRetired, vault.ErrCorrupt
		}
		return reasonAuthFail, vault.ErrCorrupt
	case op == opLogin:
		return "login refused: check the role and its credentials", vault.ErrUnavailable
	}
	return reasonRejected, vault.ErrInvalid
}

func networkReason(err error) string {
	var (
		unknownCA *x509.UnknownAuthorityError
		hostname  x509.HostnameError
		verify    *tls.CertificateVerificationError
		netErr    net.Error
	)
	switch {
	case errors.As(err, &unknownCA), errors.As(err, &hostname), errors.As(err, &verify):
		return reasonTLS
	case errors.Is(err, syscall.ECONNREFUSED):
		return reasonRefused
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &netErr) && netErr.Timeout():
		return reasonTimeout
	}
	return reasonNetwork
}

func corrupt(op, key, reason string) *Error {
	return &Error{Op: op, Key: key, Kind: vault.ErrCorrupt, Reason: reason}
}

func badReply(op, key string, err error) *Error {
	return &Error{Op: op, Key: key, Kind: vault.ErrUnavailable, Reason: reasonBadReply, Err: err}
}
