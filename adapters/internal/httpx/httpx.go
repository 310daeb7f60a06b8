// Package httpx holds what the HTTP delivery adapters (Twilio, generic
// HTTP SMS, push) share: reading a provider's Retry-After, and classifying
// a request that got no answer without letting its URL into the error.
package httpx

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/blindpost/blindpost/adapters"
)

// MaxRetryAfter is the longest hint believed: a longer one is more likely
// a misconfigured proxy than a plan, and the gateway's own back-off applies.
const MaxRetryAfter = 24 * time.Hour

// RetryAfter reads an HTTP Retry-After value (RFC 9110 §10.2.3):
// delay-seconds or an HTTP-date. It returns 0 for anything else, for a
// time in the past, or for more than MaxRetryAfter.
func RetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseInt(v, 10, 64); err == nil {
		if s <= 0 || s > int64(MaxRetryAfter/time.Second) {
			return 0
		}
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 && d <= MaxRetryAfter {
			return d
		}
	}
	return 0
}

// TransportError classifies a request that got no answer as a temporary
// failure with the code name_timeout, name_canceled or name_network. The
// *url.Error net/http wraps it in is dropped: its text repeats the URL,
// which may hold a key or a token.
func TransportError(ctx context.Context, name string, err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	code := name + "_network"
	var ne net.Error
	switch {
	case errors.Is(err, context.Canceled) || errors.Is(ctx.Err(), context.Canceled):
		code = name + "_canceled"
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded),
		errors.As(err, &ne) && ne.Timeout():
		code = name + "_timeout"
	}
	return adapters.Temporary(code, fmt.Errorf("%s: send: %w", name, err))
}

// IsLoopback reports whether host (no port) is localhost or a loopback IP:
// the one place plain http is acceptable for a provider's URL.
func IsLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
