package compat

import (
	"encoding/json"
	"errors"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Status is one status change of a compat message, for its callback_url.
type Status struct {
	ExtMessageID string
	UID          string // the request's email_uid or im_uid
	Channel      string // ChannelEmail or ChannelSMS
	Status       string // e.g. queued, sent, delivered, deferred, bounced, failed, expired, denied, unknown_recipient, opted_out
	Reason       string // a reason code ([a-z0-9_.:,]), or ""
	Time         time.Time
}

type emailCallback struct {
	ExtMessageID string `json:"ext_message_id"`
	UID          string `json:"email_uid"`
	Status       string `json:"status"`
	Reason       string `json:"reason"`
	Timestamp    int64  `json:"timestamp"`
}

type imCallback struct {
	ExtMessageID string `json:"ext_message_id"`
	UID          string `json:"im_uid"`
	Status       string `json:"status"`
	Reason       string `json:"reason"`
	Timestamp    int64  `json:"timestamp"`
}

// CallbackBody is the JSON body posted to a compat message's callback_url:
//
//	{"ext_message_id":"bpm_…","email_uid":"u-1","status":"sent","reason":"","timestamp":1764136800000}
//
// with "im_uid" for SMS/IM and timestamp in epoch milliseconds. Every field
// is checked to be an id or a code, so a body can never carry PII; a Status
// that breaks this is an error, not a body.
func CallbackBody(s Status) ([]byte, error) {
	if token("ext_message_id", s.ExtMessageID, MaxUIDBytes) != nil {
		return nil, errors.New("compat: callback: ext_message_id must be printable ASCII, 1-128 bytes")
	}
	if token("uid", s.UID, MaxUIDBytes) != nil {
		return nil, errors.New("compat: callback: uid must be printable ASCII, 1-128 bytes")
	}
	if !isStatus(s.Status) {
		return nil, errors.New("compat: callback: status must match [a-z_]{1,32}")
	}
	if s.Reason != "" && !isCode(strings.ReplaceAll(s.Reason, ",", "_"), 512) {
		return nil, errors.New("compat: callback: reason must match [a-z0-9_.:,]{0,512}")
	}
	if s.Time.IsZero() {
		return nil, errors.New("compat: callback: time is zero")
	}
	ms := s.Time.UnixMilli()
	switch s.Channel {
	case ChannelEmail:
		return json.Marshal(emailCallback{s.ExtMessageID, s.UID, s.Status, s.Reason, ms})
	case ChannelSMS:
		return json.Marshal(imCallback{s.ExtMessageID, s.UID, s.Status, s.Reason, ms})
	}
	return nil, errors.New("compat: callback: channel must be email or sms")
}

func isStatus(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if (s[i] < 'a' || s[i] > 'z') && s[i] != '_' {
			return false
		}
	}
	return true
}

// CallbackAllowed reports whether rawURL may be called for t: it must lie
// under one of t.CallbackAllow (same scheme, host and port; path equal to
// the prefix's or below it on a segment boundary) and carry no userinfo,
// fragment, dot segments or escaped '/', '\' or '.'. The gateway's outbox
// calls it again before every post, so a tenant whose allow-list shrank
// stops receiving at once. Prefixes that do not parse match nothing.
func CallbackAllowed(t *Tenant, rawURL string) bool {
	if t == nil {
		return false
	}
	u, ok := parseCallbackURL(rawURL)
	if !ok {
		return false
	}
	for _, s := range t.CallbackAllow {
		if p, err := parsePrefix(s); err == nil && p.match(u) {
			return true
		}
	}
	return false
}

// callbackAllowed is CallbackAllowed with the tenant's prefixes parsed.
func callbackAllowed(ps []cbPrefix, rawURL string) bool {
	u, ok := parseCallbackURL(rawURL)
	if !ok {
		return false
	}
	for _, p := range ps {
		if p.match(u) {
			return true
		}
	}
	return false
}

// cbPrefix is a parsed CallbackAllow entry.
type cbPrefix struct {
	scheme, host, port string // lower case; port always explicit
	path               string // without a trailing '/', "" for the root
}

type cbURL struct {
	scheme, host, port, path string
}

func (p cbPrefix) match(u cbURL) bool {
	if u.scheme != p.scheme || u.host != p.host || u.port != p.port {
		return false
	}
	return u.path == p.path || strings.HasPrefix(u.path, p.path+"/")
}

// parseCallbackURL parses and normalises a callback URL, refusing anything
// whose meaning could differ between this check and the HTTP client.
func parseCallbackURL(raw string) (cbURL, bool) {
	if len(raw) > MaxCallbackURLBytes || strings.ContainsAny(raw, "#\\") {
		return cbURL{}, false
	}
	for i := 0; i < len(raw); i++ {
		if raw[i] <= 0x20 || raw[i] >= 0x7f {
			return cbURL{}, false
		}
	}
	u, err := url.Parse(raw)
	if err != nil || u.Opaque != "" || u.User != nil || u.Host == "" {
		return cbURL{}, false
	}
	// The authority must be written plainly: no escapes, nothing that the
	// parser rewrote.
	rest := raw[len(u.Scheme)+len("://"):]
	if !strings.EqualFold(raw[:len(u.Scheme)+3], u.Scheme+"://") || !strings.HasPrefix(rest, u.Host) ||
		strings.ContainsRune(u.Host, '%') {
		return cbURL{}, false
	}
	if after := rest[len(u.Host):]; after != "" && after[0] != '/' && after[0] != '?' {
		return cbURL{}, false
	}
	ep := strings.ToLower(u.EscapedPath())
	if strings.Contains(ep, "%2f") || strings.Contains(ep, "%5c") || strings.Contains(ep, "%2e") {
		return cbURL{}, false
	}
	path := u.Path
	for seg := range strings.SplitSeq(path, "/") {
		if seg == "." || seg == ".." {
			return cbURL{}, false
		}
	}
	if path != "" && path[0] != '/' {
		return cbURL{}, false
	}
	port, ok := normPort(u.Scheme, u.Port())
	if !ok {
		return cbURL{}, false
	}
	return cbURL{scheme: u.Scheme, host: strings.ToLower(u.Hostname()), port: port, path: path}, true
}

// parsePrefix parses a CallbackAllow entry: https (or http for a loopback
// host), a host, an optional port and path, nothing else.
func parsePrefix(s string) (cbPrefix, error) {
	if strings.ContainsAny(s, "?#%") {
		return cbPrefix{}, errors.New("callback prefix must not have a query, fragment or escapes")
	}
	u, ok := parseCallbackURL(s)
	if !ok {
		return cbPrefix{}, errors.New("callback prefix must be an absolute https URL without userinfo")
	}
	switch u.scheme {
	case "https":
	case "http":
		if !loopbackHost(u.host) {
			return cbPrefix{}, errors.New("callback prefix must be https (http only for a loopback host)")
		}
	default:
		return cbPrefix{}, errors.New("callback prefix must be https")
	}
	return cbPrefix{scheme: u.scheme, host: u.host, port: u.port, path: strings.TrimSuffix(u.path, "/")}, nil
}

func loopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(strings.Trim(h, "[]"))
	return err == nil && a.Unmap().IsLoopback()
}

// normPort makes the default port explicit and checks its range.
func normPort(scheme, port string) (string, bool) {
	if port == "" {
		switch scheme {
		case "https":
			return "443", true
		case "http":
			return "80", true
		}
		return "", false
	}
	// No leading zeros: "0443" would be a second spelling of 443.
	if len(port) > 5 || port[0] == '0' {
		return "", false
	}
	n := 0
	for i := 0; i < len(port); i++ {
		if port[i] < '0' || port[i] > '9' {
			return "", false
		}
		n = n*10 + int(port[i]-'0')
	}
	if n == 0 || n > 65535 {
		return "", false
	}
	return strconv.Itoa(n), true
}
