package httpsms

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"

	"github.com/blindpost/blindpost/adapters/sms"
)

// receiptAuth is a checked ReceiptConfig.
type receiptAuth struct {
	id, ref, status, code pointer // id, ref, code nil when not configured
	statuses              map[string]string
	codePrefix            string

	secretHeader string
	secretSum    [sha256.Size]byte // SHA-256 of Secret, compared in constant time

	sigHeader, sigPrefix string
	sigKey               []byte
	sigBase64            bool
}

func newReceiptAuth(rc ReceiptConfig, lookup func(string) (string, bool)) (*receiptAuth, error) {
	a := &receiptAuth{codePrefix: rc.CodePrefix, statuses: map[string]string{}}
	if a.codePrefix == "" {
		a.codePrefix = "provider_"
	}
	var err error
	if rc.StatusPointer == "" {
		return nil, configErr("receipts: status_pointer is required")
	}
	if a.status, err = parsePointer(rc.StatusPointer); err != nil {
		return nil, configErr("receipts: status_pointer: %v", err)
	}
	if rc.IDPointer == "" && rc.RefPointer == "" {
		return nil, configErr("receipts: id_pointer or ref_pointer is required")
	}
	for _, p := range []struct {
		name, src string
		dst       *pointer
	}{{"id_pointer", rc.IDPointer, &a.id}, {"ref_pointer", rc.RefPointer, &a.ref}, {"code_pointer", rc.CodePointer, &a.code}} {
		if p.src == "" {
			continue
		}
		if *p.dst, err = parsePointer(p.src); err != nil {
			return nil, configErr("receipts: %s: %v", p.name, err)
		}
	}
	if len(rc.Statuses) == 0 {
		return nil, configErr("receipts: statuses is required")
	}
	for word, st := range rc.Statuses {
		switch st {
		case sms.StatusDelivered, sms.StatusUndelivered, sms.StatusAccepted:
		default:
			return nil, configErr("receipts: statuses: %q maps to %q; use delivered, undelivered or accepted", word, st)
		}
		k := strings.ToLower(word)
		if k == "" {
			return nil, configErr("receipts: statuses: empty provider status")
		}
		if prev, dup := a.statuses[k]; dup && prev != st {
			return nil, configErr("receipts: statuses: %q is mapped twice, ignoring case", word)
		}
		a.statuses[k] = st
	}

	secretMode := rc.SecretHeader != "" || rc.Secret != ""
	sigMode := rc.SignatureHeader != "" || rc.SignatureSecret != "" || rc.SignatureEncoding != "" || rc.SignaturePrefix != ""
	switch {
	case secretMode && sigMode:
		return nil, configErr("receipts: use either secret_header or signature_header, not both")
	case secretMode:
		if rc.SecretHeader == "" || rc.Secret == "" || !validHeaderName(rc.SecretHeader) {
			return nil, configErr("receipts: secret_header needs a valid header name and a secret")
		}
		secret, err := expand(rc.Secret, lookup)
		if err != nil {
			return nil, configErr("receipts: secret: %v", err)
		}
		if secret == "" {
			return nil, configErr("receipts: secret is empty")
		}
		a.secretHeader = rc.SecretHeader
		a.secretSum = sha256.Sum256([]byte(secret))
	case sigMode:
		if rc.SignatureHeader == "" || rc.SignatureSecret == "" || !validHeaderName(rc.SignatureHeader) {
			return nil, configErr("receipts: signature_header needs a valid header name and a signature_secret")
		}
		key, err := expand(rc.SignatureSecret, lookup)
		if err != nil {
			return nil, configErr("receipts: signature_secret: %v", err)
		}
		if key == "" {
			return nil, configErr("receipts: signature_secret is empty")
		}
		switch strings.ToLower(rc.SignatureEncoding) {
		case "", "hex":
		case "base64":
			a.sigBase64 = true
		default:
			return nil, configErr("receipts: signature_encoding must be hex or base64")
		}
		a.sigHeader, a.sigPrefix, a.sigKey = rc.SignatureHeader, rc.SignaturePrefix, []byte(key)
	default:
		// Receipts change what the gateway reports about a message; they
		// are never taken unauthenticated.
		return nil, configErr("receipts: secret_header or signature_header is required")
	}
	return a, nil
}

// authentic reports whether the request carries the shared secret or a
// valid signature of body.
func (a *receiptAuth) authentic(h http.Header, body []byte) bool {
	if a.secretHeader != "" {
		vs := h.Values(a.secretHeader)
		if len(vs) != 1 {
			return false
		}
		// Hashing first gives equal lengths, so the comparison's time
		// says nothing about the secret, its length included.
		got := sha256.Sum256([]byte(vs[0]))
		return subtle.ConstantTimeCompare(got[:], a.secretSum[:]) == 1
	}
	vs := h.Values(a.sigHeader)
	if len(vs) != 1 {
		return false
	}
	v, ok := strings.CutPrefix(strings.TrimSpace(vs[0]), a.sigPrefix)
	if !ok {
		return false
	}
	var got []byte
	var err error
	if a.sigBase64 {
		got, err = base64.StdEncoding.DecodeString(v)
	} else {
		got, err = hex.DecodeString(v)
	}
	if err != nil || len(got) != sha256.Size {
		return false
	}
	mac := hmac.New(sha256.New, a.sigKey)
	mac.Write(body)
	return hmac.Equal(got, mac.Sum(nil))
}

// ReceiptHandler returns the http.Handler for the provider's receipts: one
// JSON object per POST.
//
// A request without the configured secret or a valid signature gets 403
// and changes nothing. A receipt is handed to sink, and the provider gets
// a 2xx only once sink returned nil; otherwise a 500, so that it retries.
// A receipt whose status is not in Statuses is acknowledged and dropped.
// Answers never echo the request. Without receipts configured, the
// handler answers 404.
func (c *Client) ReceiptHandler(sink sms.ReceiptSink) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a := c.receipts
		if a == nil {
			http.Error(w, "receipts are not configured", http.StatusNotFound)
			return
		}
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxReceiptBytes))
		if err != nil {
			if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
				http.Error(w, "request body too large", http.StatusRequestEntityTooLarge)
				return
			}
			http.Error(w, "cannot read body", http.StatusBadRequest)
			return
		}
		if !a.authentic(r.Header, body) {
			http.Error(w, "not authenticated", http.StatusForbidden)
			return
		}

		dec := json.NewDecoder(bytes.NewReader(body))
		dec.UseNumber()
		var doc any
		if err := dec.Decode(&doc); err != nil || dec.More() {
			http.Error(w, "malformed JSON", http.StatusBadRequest)
			return
		}
		word, ok := a.status.scalar(doc)
		if !ok {
			http.Error(w, "no status in receipt", http.StatusBadRequest)
			return
		}
		rc := sms.Receipt{Adapter: "http", Time: c.now()}
		if a.id != nil {
			rc.ProviderID, _ = a.id.scalar(doc)
		}
		if a.ref != nil {
			rc.Ref, _ = a.ref.scalar(doc)
		}
		if rc.ProviderID == "" && rc.Ref == "" {
			http.Error(w, "no message id or ref in receipt", http.StatusBadRequest)
			return
		}
		if rc.Status, ok = a.statuses[strings.ToLower(word)]; !ok {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		if a.code != nil {
			if code, ok := a.code.scalar(doc); ok && isCodeToken(code) {
				rc.Code = a.codePrefix + code
			}
		}
		if err := sink(r.Context(), rc); err != nil {
			http.Error(w, "receipt not stored", http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
}

// isCodeToken reports whether s is a short machine-made code, not text
// that could carry a number or a name. A run of more than 8 digits is
// refused too: it could be a phone number a misdirected CodePointer found.
func isCodeToken(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	digits := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
			if digits++; digits > 8 {
				return false
			}
			continue
		case (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '.' || c == '_' || c == '-':
		default:
			return false
		}
		digits = 0
	}
	return true
}
