package compat

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"time"
)

// outcome is what one request ends with, for the answer and the log.
type outcome struct {
	tenant  *tenant
	channel string
	uid     string
	code    int
	msg     string
	ext     string
}

// ServeHTTP answers every request with HTTP 200 and a Response, as the
// reference contract requires: clients read error_code, not the status.
// The checks run in this order, each answered by its own code:
// endpoint and method, secret, client address, channel, body size, JSON,
// fields, callback_url, then the Acceptor.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := h.now()
	o := h.serve(w, r)
	h.answer(r.Context(), w, start, o)
}

func (h *Handler) serve(w http.ResponseWriter, r *http.Request) outcome {
	var o outcome
	switch r.URL.Path {
	case "/compat/email":
		o.channel = ChannelEmail
	case "/compat/sms":
		o.channel = ChannelSMS
	default:
		return fail(o, CodeInvalid, "unknown endpoint: use POST /compat/email or /compat/sms")
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		return fail(o, CodeInvalid, "method not allowed: use POST")
	}
	o.tenant = h.authenticate(r.Header.Get("Authorization"))
	if o.tenant == nil {
		return fail(o, CodeUnauthorized, "unauthorized: the Authorization header matches no secret")
	}
	if ip, ok := h.clientIP(r); !ok || !containsAddr(o.tenant.allowIPs, ip) {
		return fail(o, CodeIPNotAllowed, "client address not allowed")
	}
	if o.channel == ChannelEmail && !o.tenant.pub.EmailEnabled || o.channel == ChannelSMS && !o.tenant.pub.SMSEnabled {
		return fail(o, CodeChannelDisabled, "channel "+o.channel+" is not enabled for this tenant")
	}
	body, e := h.readBody(w, r)
	if e != nil {
		return fail(o, e.code, e.msg)
	}
	req, e := decode(o.channel, body)
	if e == nil {
		e = validate(&req)
	}
	o.uid = req.UID
	if e != nil {
		return fail(o, e.code, e.msg)
	}
	if !callbackAllowed(o.tenant.callbacks, req.CallbackURL) {
		return fail(o, CodeCallbackNotAllowed, "callback_url is not under an allowed prefix for this tenant; nothing was accepted")
	}
	ext, err := h.acc.AcceptCompat(r.Context(), o.tenant.pub, req)
	if err != nil {
		o.code, o.msg = acceptorAnswer(o.channel, err)
		return o
	}
	if token("ext_message_id", ext, MaxUIDBytes) != nil {
		// The gateway broke its side of the contract; do not pass it on.
		return fail(o, CodeInternal, "internal error")
	}
	o.ext = ext
	return o
}

func fail(o outcome, code int, msg string) outcome {
	o.code, o.msg = code, msg
	return o
}

func (h *Handler) readBody(w http.ResponseWriter, r *http.Request) ([]byte, *reqError) {
	tooLarge := &reqError{CodeTooLarge, "body exceeds the size limit"}
	if r.ContentLength > h.maxBody {
		return nil, tooLarge
	}
	var buf bytes.Buffer
	if r.ContentLength > 0 {
		buf.Grow(int(r.ContentLength) + bytes.MinRead) // no regrowth while reading
	}
	_, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, h.maxBody))
	if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
		return nil, tooLarge
	}
	if err != nil {
		return nil, invalid("body could not be read")
	}
	return buf.Bytes(), nil
}

// answer writes the Response and logs the outcome: tenant, channel, a hash
// prefix of the uid, the code. Never a value from the request, never the
// Acceptor's error text, never the client address.
func (h *Handler) answer(ctx context.Context, w http.ResponseWriter, start time.Time, o outcome) {
	resp := Response{ErrorCode: o.code, ExtMessageID: o.ext, ErrorMessage: o.msg}
	b, _ := json.Marshal(resp) // cannot fail: ints and strings
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	w.Write(append(b, '\n'))

	d := h.now().Sub(start)
	tenantID := ""
	if o.tenant != nil {
		tenantID = o.tenant.pub.ID
	}
	if h.observe != nil {
		h.observe(tenantID, o.channel, o.code, d)
	}
	level := slog.LevelInfo
	switch o.code {
	case CodeUnauthorized, CodeIPNotAllowed, CodeUnavailable:
		level = slog.LevelWarn
	case CodeInternal:
		level = slog.LevelError
	}
	if !h.log.Enabled(ctx, level) {
		return
	}
	attrs := make([]slog.Attr, 0, 6)
	if tenantID != "" {
		attrs = append(attrs, slog.String("tenant", tenantID))
	}
	if o.channel != "" {
		attrs = append(attrs, slog.String("channel", o.channel))
	}
	if o.uid != "" {
		attrs = append(attrs, slog.String("uid_sha256", UIDHash(o.uid)))
	}
	attrs = append(attrs, slog.Int("code", o.code))
	if o.ext != "" {
		attrs = append(attrs, slog.String("ext_message_id", o.ext))
	}
	attrs = append(attrs, slog.Duration("dur", d))
	h.log.LogAttrs(ctx, level, "compat request", attrs...)
}

// UIDHash is how logs name a uid: the first 8 bytes of its SHA-256, in hex.
// The gateway can log the same value to correlate without logging the uid.
func UIDHash(uid string) string {
	s := sha256.Sum256([]byte(uid))
	return hex.EncodeToString(s[:8])
}

// authenticate finds the tenant whose secret equals the header value. Both
// sides are hashed so their lengths do not matter, and every configured
// secret is compared, with no branch on the result, so the time taken says
// neither whether nor whose secret matched.
func (h *Handler) authenticate(header string) *tenant {
	got := sha256.Sum256([]byte(header))
	found := 0
	for i := range h.keys {
		eq := subtle.ConstantTimeCompare(got[:], h.keys[i].sum[:])
		found = subtle.ConstantTimeSelect(eq, h.keys[i].owner+1, found)
	}
	if found == 0 {
		return nil
	}
	return h.tenants[found-1]
}

// clientIP is the address the allow-list is checked against: the peer, or,
// when the peer is a trusted proxy, the right-most X-Forwarded-For entry
// that is not a trusted proxy (the left-most one if all are). A malformed
// entry on the way fails closed.
func (h *Handler) clientIP(r *http.Request) (netip.Addr, bool) {
	peer, ok := parseAddr(r.RemoteAddr)
	if !ok {
		return netip.Addr{}, false
	}
	if !containsAddr(h.proxies, peer) {
		return peer, true
	}
	client := peer
	vals := r.Header.Values("X-Forwarded-For")
	for i := len(vals) - 1; i >= 0; i-- {
		v := strings.TrimSpace(vals[i])
		if v == "" {
			continue
		}
		entries := strings.Split(v, ",")
		for j := len(entries) - 1; j >= 0; j-- {
			a, ok := parseAddr(strings.TrimSpace(entries[j]))
			if !ok {
				return netip.Addr{}, false
			}
			if !containsAddr(h.proxies, a) {
				return a, true
			}
			client = a
		}
	}
	return client, true
}

// parseAddr reads "ip" or "ip:port" ("[v6]:port"), unmapping IPv4-in-IPv6.
func parseAddr(s string) (netip.Addr, bool) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap(), true
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

func containsAddr(ps []netip.Prefix, a netip.Addr) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
