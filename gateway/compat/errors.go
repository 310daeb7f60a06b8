package compat

import (
	"context"
	"errors"
	"strings"
)

// Error codes of an answer's error_code. The HTTP status is always 200.
const (
	CodeOK                 = 0
	CodeInvalid            = 1  // malformed body, a field breaks its rule, wrong method or path
	CodeUnauthorized       = 2  // Authorization missing or matches no secret
	CodeIPNotAllowed       = 3  // client address not on the tenant's allow-list
	CodeChannelDisabled    = 4  // the tenant has not enabled this channel
	CodeDenied             = 5  // the policy refused the message
	CodeDuplicateConflict  = 6  // the uid was used before with other content
	CodeUnavailable        = 7  // retry later with the same uid
	CodeTooLarge           = 8  // body over the size limit
	CodeCallbackNotAllowed = 9  // callback_url not under the tenant's allowed prefixes
	CodeInternal           = 10 // unexpected failure; retry with the same uid is safe
)

// Response is the body of every answer.
type Response struct {
	ErrorCode    int    `json:"error_code"`
	ExtMessageID string `json:"ext_message_id,omitempty"`
	ErrorMessage string `json:"error_message,omitempty"`
}

// DeniedError is an ErrDenied that carries the policy's reason codes, which
// the answer lists ("denied by policy: opted_out,quiet_hours"). Reasons that
// are not plain codes ([a-z0-9_.:], at most 64 bytes) are left out.
type DeniedError struct {
	Reasons []string
}

// Denied returns a *DeniedError for the given reason codes.
func Denied(reasons ...string) error { return &DeniedError{Reasons: reasons} }

func (e *DeniedError) Error() string {
	return ErrDenied.Error() + ": " + strings.Join(e.Reasons, ",")
}

func (e *DeniedError) Is(target error) bool { return target == ErrDenied }

// Problems a FieldError may name; an answer shows only these.
const (
	ProblemRequired     = "is required"
	ProblemTooLong      = "is too long"
	ProblemNotString    = "must be a string or null"
	ProblemControlChars = "contains control characters"
	ProblemNotPrintable = "must be printable ASCII without spaces"
	ProblemNotAddress   = "is not an email address"
	ProblemNotAllowed   = "is not allowed here"
	ProblemRepeated     = "is repeated"
	ProblemInvalid      = "is invalid"
)

// FieldError is an ErrInvalid naming the request field at fault. The answer
// names Field only if it is one of the API's field names and Problem only if
// it is one of the Problem constants, so neither can carry a value.
type FieldError struct {
	Field   string // a JSON field name, e.g. "subject"
	Problem string // a Problem constant
}

func (e *FieldError) Error() string { return "compat: " + e.Field + " " + e.Problem }

func (e *FieldError) Is(target error) bool { return target == ErrInvalid }

// answerMessage is what a client may read about a FieldError.
func (e *FieldError) answerMessage(channel string) string {
	if !knownField(channel, e.Field) {
		return "invalid request"
	}
	switch e.Problem {
	case ProblemRequired, ProblemTooLong, ProblemNotString, ProblemControlChars, ProblemNotPrintable,
		ProblemNotAddress, ProblemNotAllowed, ProblemRepeated, ProblemInvalid:
		return e.Field + " " + e.Problem
	}
	return e.Field + " " + ProblemInvalid
}

func knownField(channel, f string) bool {
	var r Request
	if channel == ChannelSMS {
		p, _ := smsSlot(&r, f)
		return p != nil
	}
	p, _ := emailSlot(&r, f)
	return p != nil
}

// acceptorAnswer maps an Acceptor's error to an answer. Its messages are
// fixed or built from PII-free parts only; the error's own text is never
// shown.
func acceptorAnswer(channel string, err error) (int, string) {
	uidField := "email_uid"
	if channel == ChannelSMS {
		uidField = "im_uid"
	}
	switch {
	case errors.Is(err, ErrUnavailable), errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return CodeUnavailable, "temporarily unavailable, retry with the same " + uidField
	case errors.Is(err, ErrDuplicateConflict):
		return CodeDuplicateConflict, uidField + " was used before with different content; not sent"
	case errors.Is(err, ErrDenied):
		if de, ok := errors.AsType[*DeniedError](err); ok {
			if rs := reasonCodes(de.Reasons); rs != "" {
				return CodeDenied, "denied by policy: " + rs
			}
		}
		return CodeDenied, "denied by policy"
	case errors.Is(err, ErrInvalid):
		if fe, ok := errors.AsType[*FieldError](err); ok {
			return CodeInvalid, fe.answerMessage(channel)
		}
		return CodeInvalid, "invalid request"
	}
	return CodeInternal, "internal error, retry with the same " + uidField
}

// reasonCodes joins the reasons that are plain codes.
func reasonCodes(rs []string) string {
	var b strings.Builder
	n := 0
	for _, r := range rs {
		if !isCode(r, 64) || n == 16 {
			continue
		}
		if n > 0 {
			b.WriteByte(',')
		}
		b.WriteString(r)
		n++
	}
	return b.String()
}

// isCode reports whether s is a non-empty reason code: [a-z0-9_.:] only.
// No '@', '+', '-' or upper case, so neither addresses nor phone numbers
// nor most ids fit.
func isCode(s string, max int) bool {
	if s == "" || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == ':') {
			return false
		}
	}
	return true
}
