// Package callback posts message status changes from the gateway to the
// core, signed as Standard Webhooks (https://www.standardwebhooks.com) with
// the asymmetric "v1a" scheme: an Ed25519 signature over
// "<webhook-id>.<webhook-timestamp>.<body>".
//
// It sits on the operator side of the trust boundary and sends across it:
// payloads carry ids, statuses, reason codes, decision ids and audit
// checkpoints, never PII. The core verifies with the gateway's public key
// (Verify), so a compromised core cannot forge callbacks for other tenants,
// and the gateway's HTTP client refuses to connect to loopback, private and
// link-local addresses, so a callback URL cannot steer the gateway into the
// operator's own network.
package callback

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Standard Webhooks header names.
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

// DefaultTolerance is how far a timestamp may be from the verifier's clock,
// as Standard Webhooks recommends: it bounds how long a captured callback can
// be replayed.
const DefaultTolerance = 5 * time.Minute

const version = "v1a" // asymmetric, Ed25519

var (
	ErrMalformed    = errors.New("callback: missing or malformed webhook headers")
	ErrStale        = errors.New("callback: timestamp outside tolerance")
	ErrBadSignature = errors.New("callback: no valid signature")
)

// signedContent is what a v1a signature covers.
func signedContent(id, ts string, body []byte) []byte {
	b := make([]byte, 0, len(id)+len(ts)+len(body)+2)
	b = append(b, id...)
	b = append(b, '.')
	b = append(b, ts...)
	b = append(b, '.')
	return append(b, body...)
}

// Sign returns the webhook-signature header value for a message:
// "v1a,<standard base64 of the Ed25519 signature>".
func Sign(key ed25519.PrivateKey, id string, ts time.Time, body []byte) string {
	sig := ed25519.Sign(key, signedContent(id, strconv.FormatInt(ts.Unix(), 10), body))
	return version + "," + base64.StdEncoding.EncodeToString(sig)
}

// Verify checks a received callback: its timestamp must be within tolerance
// of now (DefaultTolerance if tolerance <= 0), and one of the space-separated
// signatures must be a v1a signature by pub. Signatures of other versions are
// ignored, so a sender can rotate keys or schemes by sending several.
func Verify(pub ed25519.PublicKey, h http.Header, body []byte, now time.Time, tolerance time.Duration) error {
	if len(pub) != ed25519.PublicKeySize {
		return fmt.Errorf("callback: verify: public key of %d bytes", len(pub))
	}
	id, ts, sigs := h.Get(HeaderID), h.Get(HeaderTimestamp), h.Get(HeaderSignature)
	if id == "" || ts == "" || sigs == "" {
		return ErrMalformed
	}
	if strings.Trim(ts, "0123456789") != "" || len(ts) > 18 {
		return fmt.Errorf("%w: timestamp is not unix seconds", ErrMalformed)
	}
	secs, _ := strconv.ParseInt(ts, 10, 64)
	if tolerance <= 0 {
		tolerance = DefaultTolerance
	}
	if d := now.Sub(time.Unix(secs, 0)).Abs(); d > tolerance {
		return fmt.Errorf("%w: %v off", ErrStale, d.Truncate(time.Second))
	}
	msg := signedContent(id, ts, body)
	for _, s := range strings.Fields(sigs) {
		v, enc, ok := strings.Cut(s, ",")
		if !ok || v != version {
			continue
		}
		sig, err := base64.StdEncoding.DecodeString(enc)
		if err == nil && len(sig) == ed25519.SignatureSize && ed25519.Verify(pub, msg, sig) {
			return nil
		}
	}
	return ErrBadSignature
}

// eventID is the webhook-id of a status event: the same on every retry, so
// the receiver can de-duplicate, and unique per tenant and sequence number.
// The tenant is hashed so the id holds no '.' to blur the signed content.
func eventID(tenant string, seq int64) string {
	h := sha256.Sum256([]byte(tenant))
	return fmt.Sprintf("evt_%x_%d", h[:8], seq)
}
