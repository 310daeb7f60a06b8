// Package adapters holds what every delivery adapter shares: how a failed
// delivery is classified, so that the gateway can decide between a retry and
// a final status without knowing each provider's error shapes.
//
// Adapters run inside the operator's gateway and handle personal data. An
// Error's text, and its Code, must never hold an address, a phone number, a
// chat id, a name or a provider's free-text reply (providers often echo the
// recipient). Codes are short and machine-made: "twilio_21610",
// "smpp_0x0000000b", "http_503", "telegram_403".
package adapters

import (
	"errors"
	"time"
)

var (
	// ErrTemporary marks a failure a later attempt may not repeat: a
	// network error, a time-out, a 5xx or 429 from an HTTP provider, a
	// throttled SMSC.
	ErrTemporary = errors.New("temporary delivery failure")
	// ErrPermanent marks a failure a retry would repeat: an invalid or
	// unreachable recipient, a message the provider refuses.
	ErrPermanent = errors.New("permanent delivery failure")
)

// Error is a classified delivery failure.
type Error struct {
	// Code is the provider's reason, PII-free, for the status callback's
	// reason field, e.g. "twilio_21610".
	Code string
	// Temporary says whether a later attempt may succeed.
	Temporary bool
	// RetryAfter, if positive, is the provider's own hint (HTTP
	// Retry-After, Telegram's retry_after) for when to try again.
	RetryAfter time.Duration
	// Err is the cause, if any; its text must be PII-free as well.
	Err error
}

func (e *Error) Error() string {
	kind := "permanent"
	if e.Temporary {
		kind = "temporary"
	}
	s := kind + " delivery failure"
	if e.Code != "" {
		s += " (" + e.Code + ")"
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap lets errors.Is match ErrTemporary or ErrPermanent, and the cause.
func (e *Error) Unwrap() []error {
	kind := ErrPermanent
	if e.Temporary {
		kind = ErrTemporary
	}
	if e.Err == nil {
		return []error{kind}
	}
	return []error{kind, e.Err}
}

// Temporary returns a retryable Error with the given code and cause.
func Temporary(code string, err error) *Error {
	return &Error{Code: code, Temporary: true, Err: err}
}

// Permanent returns a final Error with the given code and cause.
func Permanent(code string, err error) *Error {
	return &Error{Code: code, Err: err}
}

// Code returns the reason code of the first *Error in err's chain, or "".
func Code(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

// RetryAfter returns the provider's retry hint from err's chain, or 0.
func RetryAfter(err error) time.Duration {
	var e *Error
	if errors.As(err, &e) {
		return e.RetryAfter
	}
	return 0
}
