package twilio

import (
	"cmp"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"

	"github.com/blindpost/blindpost/adapters/sms"
)

// statuses maps Twilio's MessageStatus to the gateway's vocabulary. The
// statuses of inbound messages (receiving, received) and partially_delivered
// are not delivery outcomes of an SMS the gateway sent; they are
// acknowledged and dropped.
var statuses = map[string]string{
	"queued":      sms.StatusAccepted,
	"sending":     sms.StatusAccepted,
	"sent":        sms.StatusAccepted,
	"accepted":    sms.StatusAccepted,
	"scheduled":   sms.StatusAccepted,
	"delivered":   sms.StatusDelivered,
	"read":        sms.StatusDelivered, // reading implies delivery
	"undelivered": sms.StatusUndelivered,
	"failed":      sms.StatusUndelivered,
	"canceled":    sms.StatusUndelivered, // a scheduled message that will never go
}

// ReceiptHandler returns the http.Handler for Twilio's status callbacks; the
// gateway mounts it where StatusCallbackURL reaches it.
//
// It answers 403 and does nothing else when X-Twilio-Signature does not
// match. A receipt is handed to sink, and Twilio gets a 2xx only once sink
// returned nil; otherwise it gets a 500 so that the callback can be
// retried. Callbacks about statuses the gateway does not track are
// acknowledged and dropped. Answers never echo the request.
func (c *Client) ReceiptHandler(sink sms.ReceiptSink) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c.callbackBase == "" {
			http.Error(w, "receipts are not configured", http.StatusNotFound)
			return
		}
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxCallbackBytes)
		if err := r.ParseForm(); err != nil {
			if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
				http.Error(w, "request body too large", http.StatusRequestEntityTooLarge)
				return
			}
			http.Error(w, "malformed form", http.StatusBadRequest)
			return
		}
		// The URL Twilio signed is the one it was given: StatusCallbackURL
		// with the query Send added, which arrives unchanged in the
		// request line. The Host header plays no part.
		signed := c.callbackBase
		if r.URL.RawQuery != "" {
			signed += "?" + r.URL.RawQuery
		}
		if !validSignature(c.cfg.AuthToken, r.Header.Get("X-Twilio-Signature"), signed, r.PostForm) {
			http.Error(w, "invalid signature", http.StatusForbidden)
			return
		}

		sid := cmp.Or(r.PostForm.Get("MessageSid"), r.PostForm.Get("SmsSid"))
		word := cmp.Or(r.PostForm.Get("MessageStatus"), r.PostForm.Get("SmsStatus"))
		if sid == "" || word == "" {
			http.Error(w, "MessageSid and MessageStatus are required", http.StatusBadRequest)
			return
		}
		status, ok := statuses[word]
		if !ok {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		rc := sms.Receipt{
			Adapter:    "twilio",
			ProviderID: sid,
			Ref:        r.URL.Query().Get("ref"),
			Status:     status,
			Time:       c.cfg.Now(),
		}
		if ec := r.PostForm.Get("ErrorCode"); isCode(ec) {
			rc.Code = "twilio_" + ec
		}
		if err := sink(r.Context(), rc); err != nil {
			http.Error(w, "receipt not stored", http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
}

// validSignature checks sig, an X-Twilio-Signature value, against the
// signature Twilio documents for a form POST to fullURL.
func validSignature(authToken, sig, fullURL string, form url.Values) bool {
	got, err := base64.StdEncoding.DecodeString(sig)
	if err != nil || len(got) != sha1.Size {
		return false
	}
	return hmac.Equal(got, signature(authToken, fullURL, form))
}

// signature is Twilio's request signature: HMAC-SHA1 keyed with the
// AuthToken over the full URL followed by every POST parameter, sorted by
// name, each name immediately followed by its value. A repeated name
// contributes one name-value pair per value, values sorted, as Twilio's
// own libraries do.
func signature(authToken, fullURL string, form url.Values) []byte {
	mac := hmac.New(sha1.New, []byte(authToken))
	io.WriteString(mac, fullURL)
	for _, k := range slices.Sorted(maps.Keys(form)) {
		vs := form[k]
		if len(vs) > 1 {
			vs = slices.Sorted(slices.Values(vs))
		}
		for _, v := range vs {
			io.WriteString(mac, k)
			io.WriteString(mac, v)
		}
	}
	return mac.Sum(nil)
}

// isCode reports whether s looks like a Twilio error code: a few digits,
// nothing a sender could smuggle text through.
func isCode(s string) bool {
	if s == "" || s == "0" || len(s) > 6 {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}
