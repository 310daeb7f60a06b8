package compat_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/blindpost/blindpost/gateway/compat"
)

func TestFieldsMapped(t *testing.T) {
	tests := []struct {
		name, path, file string
		want             compat.Request
	}{
		{"email with every field and unknown extras", "/compat/email", "email_full.json", compat.Request{
			Channel: "email", UID: "e-0001", ExtUserID: "u-1001",
			From: "Brand <noreply@example.com>", ReplyTo: "support@example.com",
			Subject: "Your weekly bonus", HTML: "<p>Hello {{pii.first_name}}</p>", Text: "Hello {{pii.first_name}}",
			CallbackURL: "https://cb.test/hooks/email?label=77",
		}},
		{"email minimal with null reply_to", "/compat/email", "email_minimal.json", compat.Request{
			Channel: "email", UID: "e-0002", ExtUserID: "u-1002", From: "noreply@example.com",
			Subject: "Receipt", Text: "Thanks", CallbackURL: "https://cb.test/hooks",
		}},
		{"email preview to another address", "/compat/email", "email_preview.json", compat.Request{
			Channel: "email", UID: "e-0003", ExtUserID: "u-1003", From: "noreply@example.com",
			Subject: "Preview: spring promo", HTML: "<p>Spring</p>", Text: "Spring",
			CallbackURL: "https://cb.test/hooks/preview", ActivityType: "preview", ToEmailAddress: "designer@example.com",
		}},
		{"email customer support", "/compat/email", "email_support.json", compat.Request{
			Channel: "email", UID: "e-0004", ExtUserID: "u-1004", From: "support@example.com", ReplyTo: "support@example.com",
			Subject: "Re: your ticket", HTML: "<p>Answer</p>", Text: "Answer", CallbackURL: "https://cb.test/hooks",
			ActivityType: "EmailCustomerSupport", ToEmailAddress: "agent@example.com",
		}},
		{"sms with every field, email fields ignored", "/compat/sms", "sms_full.json", compat.Request{
			Channel: "sms", UID: "s-0001", ExtUserID: "u-1001", From: "+15550100001",
			Text: "Your code is 1234\nSee you", CallbackURL: "https://cb.test/hooks/sms",
		}},
		{"sms minimal with null from_number", "/compat/sms", "sms_minimal.json", compat.Request{
			Channel: "sms", UID: "s-0002", ExtUserID: "u-1005", Text: "Hi", CallbackURL: "https://cb.test/hooks",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, compat.Options{})
			f.acc.ext = "bpm_" + tt.want.UID
			resp := f.do(t, req{path: tt.path, body: mustRead(t, tt.file)})
			if resp.ErrorCode != 0 || resp.ExtMessageID != "bpm_"+tt.want.UID {
				t.Fatalf("answer %+v, want error_code 0 and the Acceptor's ext_message_id", resp)
			}
			calls := f.acc.Calls()
			if len(calls) != 1 {
				t.Fatalf("%d Acceptor calls, want 1", len(calls))
			}
			if calls[0].req != tt.want {
				t.Errorf("request\n got %+v\nwant %+v", calls[0].req, tt.want)
			}
			if calls[0].tenant != "acme" || calls[0].brand != "acme-casino" {
				t.Errorf("tenant %s/%s, want acme/acme-casino", calls[0].tenant, calls[0].brand)
			}
			if calls[0].secrets != 0 {
				t.Errorf("the Acceptor was handed %d secrets", calls[0].secrets)
			}
		})
	}
}

func TestAuthentication(t *testing.T) {
	tests := []struct {
		name       string
		auth       string
		remote     string
		wantCode   int
		wantTenant string
	}{
		{"acme's first secret", acmeSecret, acmeIP, 0, "acme"},
		{"acme's rotated second secret", acmeSecret2, acmeIP, 0, "acme"},
		{"secret of another tenant maps to that tenant", betaSecret, betaIP, 0, "beta"},
		{"missing header", "-", acmeIP, compat.CodeUnauthorized, ""},
		{"empty header", " ", acmeIP, compat.CodeUnauthorized, ""},
		{"wrong secret", "not-the-secret-at-all", acmeIP, compat.CodeUnauthorized, ""},
		{"same length, last byte differs", acmeSecret[:len(acmeSecret)-1] + "2", acmeIP, compat.CodeUnauthorized, ""},
		{"a prefix of the secret", acmeSecret[:10], acmeIP, compat.CodeUnauthorized, ""},
		{"the secret with a suffix", acmeSecret + "x", acmeIP, compat.CodeUnauthorized, ""},
		{"Bearer scheme is not stripped", "Bearer " + acmeSecret, acmeIP, compat.CodeUnauthorized, ""},
		{"different case", strings.ToUpper(acmeSecret), acmeIP, compat.CodeUnauthorized, ""},
		{"secret of a tenant without the API", gammaSecret, acmeIP, compat.CodeUnauthorized, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, compat.Options{})
			resp := f.do(t, req{auth: tt.auth, remote: tt.remote, body: emailBody(func(m map[string]any) {
				if tt.wantTenant == "beta" {
					m["callback_url"] = "https://beta.example.com/cb"
				}
			})})
			if resp.ErrorCode != tt.wantCode {
				t.Fatalf("error_code %d (%s), want %d", resp.ErrorCode, resp.ErrorMessage, tt.wantCode)
			}
			calls := f.acc.Calls()
			if tt.wantTenant == "" {
				if len(calls) != 0 {
					t.Fatalf("unauthenticated request reached the Acceptor")
				}
				return
			}
			if len(calls) != 1 || calls[0].tenant != tt.wantTenant {
				t.Fatalf("calls %+v, want one for %s", calls, tt.wantTenant)
			}
		})
	}
}

func TestClientAddress(t *testing.T) {
	tests := []struct {
		name   string
		auth   string
		remote string
		xff    []string
		want   int
	}{
		{"allowed peer", "", acmeIP, nil, 0},
		{"allowed IPv6 peer", "", "2001:db8:1::5", nil, 0},
		{"IPv4-mapped peer is unmapped", "", "::ffff:" + acmeIP, nil, 0},
		{"peer not on the list", "", otherIP, nil, compat.CodeIPNotAllowed},
		{"another tenant's address", "", betaIP, nil, compat.CodeIPNotAllowed},
		{"beta from its address", betaSecret, betaIP, nil, 0},
		{"beta from acme's address", betaSecret, acmeIP, nil, compat.CodeIPNotAllowed},
		{"spoofed XFF from an untrusted peer is ignored", "", otherIP, []string{acmeIP}, compat.CodeIPNotAllowed},
		{"XFF from an untrusted but allowed peer is ignored", "", acmeIP, []string{otherIP}, 0},
		{"trusted proxy forwards an allowed client", "", proxyIP, []string{acmeIP}, 0},
		{"trusted proxy forwards a refused client", "", proxyIP, []string{otherIP}, compat.CodeIPNotAllowed},
		{"right-most untrusted entry counts, left spoof ignored", "", proxyIP, []string{acmeIP + ", " + otherIP}, compat.CodeIPNotAllowed},
		{"client spoofs an allowed address on the left", "", proxyIP, []string{acmeIP + "," + otherIP + ",10.0.0.3"}, compat.CodeIPNotAllowed},
		{"chain of trusted proxies is skipped", "", proxyIP, []string{otherIP + ", " + acmeIP + ", 10.0.0.3"}, 0},
		{"several XFF header lines read right to left", "", proxyIP, []string{otherIP, acmeIP + ", 10.0.0.3"}, 0},
		{"port in XFF entry", "", proxyIP, []string{acmeIP + ":5555"}, 0},
		{"malformed entry fails closed", "", proxyIP, []string{acmeIP + ", not-an-ip"}, compat.CodeIPNotAllowed},
		{"empty entry fails closed", "", proxyIP, []string{acmeIP + ",,"}, compat.CodeIPNotAllowed},
		{"trusted proxy without XFF is the client", "", proxyIP, nil, compat.CodeIPNotAllowed},
		{"only trusted entries: the left-most is the client", "", proxyIP, []string{"10.0.0.4, 10.0.0.3"}, compat.CodeIPNotAllowed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, compat.Options{})
			body := emailBody(nil)
			if tt.auth == betaSecret {
				body = emailBody(func(m map[string]any) { m["callback_url"] = "https://beta.example.com/x" })
			}
			resp := f.do(t, req{auth: tt.auth, remote: tt.remote, xff: tt.xff, body: body})
			if resp.ErrorCode != tt.want {
				t.Fatalf("error_code %d (%s), want %d", resp.ErrorCode, resp.ErrorMessage, tt.want)
			}
			if n := len(f.acc.Calls()); (tt.want == 0) != (n == 1) {
				t.Fatalf("%d Acceptor calls for error_code %d", n, tt.want)
			}
		})
	}
}

func TestErrorCodes(t *testing.T) {
	long := func(n int) string { return strings.Repeat("a", n) }
	tests := []struct {
		name     string
		r        req
		wantCode int
		wantMsg  string // a substring of error_message
	}{
		{"GET", req{method: http.MethodGet}, compat.CodeInvalid, "method not allowed"},
		{"PUT", req{method: http.MethodPut, body: emailBody(nil)}, compat.CodeInvalid, "method not allowed"},
		{"unknown path", req{path: "/compat/push", body: emailBody(nil)}, compat.CodeInvalid, "unknown endpoint"},
		{"trailing slash", req{path: "/compat/email/", body: emailBody(nil)}, compat.CodeInvalid, "unknown endpoint"},
		{"unauthorized", req{auth: "wrong-secret-0000000", body: emailBody(nil)}, compat.CodeUnauthorized, "unauthorized"},
		{"IP not allowed", req{remote: otherIP, body: emailBody(nil)}, compat.CodeIPNotAllowed, "not allowed"},
		{"sms disabled for beta", req{path: "/compat/sms", auth: betaSecret, remote: betaIP, body: smsBody(nil)}, compat.CodeChannelDisabled, "channel sms"},
		{"body too large", req{body: emailBody(func(m map[string]any) { m["text_body"] = long(compat.DefaultMaxBodyBytes) })}, compat.CodeTooLarge, "size limit"},
		{"empty body", req{body: mustRead(t, "empty.json")}, compat.CodeInvalid, "not a valid JSON object"},
		{"truncated JSON", req{body: mustRead(t, "truncated.json")}, compat.CodeInvalid, "not a valid JSON object"},
		{"array instead of object", req{body: mustRead(t, "not_object.json")}, compat.CodeInvalid, "not a valid JSON object"},
		{"data after the object", req{body: mustRead(t, "trailing_data.json")}, compat.CodeInvalid, "not a valid JSON object"},
		{"invalid UTF-8", req{body: mustRead(t, "invalid_utf8.json")}, compat.CodeInvalid, "UTF-8"},
		{"repeated key", req{body: mustRead(t, "repeated_key.json")}, compat.CodeInvalid, "ext_user_id is repeated"},
		{"repeated unknown key", req{body: mustRead(t, "repeated_unknown_key.json")}, compat.CodeInvalid, "a field is repeated"},
		{"number for a string", req{body: mustRead(t, "wrong_type_number.json")}, compat.CodeInvalid, "ext_user_id must be a string"},
		{"object for a string", req{body: mustRead(t, "wrong_type_object.json")}, compat.CodeInvalid, "subject must be a string"},
		{"array for a string", req{body: mustRead(t, "wrong_type_array.json")}, compat.CodeInvalid, "from_email_address must be a string"},
		{"bool for a string", req{body: mustRead(t, "wrong_type_bool.json")}, compat.CodeInvalid, "email_uid must be a string"},
		{"CRLF in subject", req{body: mustRead(t, "subject_crlf.json")}, compat.CodeInvalid, "subject contains control characters"},
		{"LF in from", req{body: mustRead(t, "from_lf.json")}, compat.CodeInvalid, "from_email_address contains control characters"},
		{"U+2028 in subject", req{body: mustRead(t, "subject_line_separator.json")}, compat.CodeInvalid, "subject contains control characters"},
		{"CR in reply_to", req{body: emailBody(func(m map[string]any) { m["reply_to_email_address"] = "a@example.com\rX: y" })}, compat.CodeInvalid, "reply_to_email_address contains control"},
		{"LF in to_email_address", req{body: emailBody(func(m map[string]any) {
			m["activity_type"], m["to_email_address"] = "preview", "a@example.com\nX: y"
		})}, compat.CodeInvalid, "to_email_address contains control"},
		{"tab in activity_type", req{body: emailBody(func(m map[string]any) { m["activity_type"] = "pre\tview" })}, compat.CodeInvalid, "activity_type contains control"},
		{"NUL in body", req{body: emailBody(func(m map[string]any) { m["body"] = "<p>\x00</p>" })}, compat.CodeInvalid, "body contains control"},
		{"LF in from_number", req{path: "/compat/sms", body: smsBody(func(m map[string]any) { m["from_number"] = "+1555\n0100001" })}, compat.CodeInvalid, "from_number contains control"},
		{"C1 control in callback_url", req{body: emailBody(func(m map[string]any) { m["callback_url"] = "https://cb.test/hooks/\u0085" })}, compat.CodeInvalid, "callback_url contains control"},
		{"missing ext_user_id", req{body: emailBody(func(m map[string]any) { delete(m, "ext_user_id") })}, compat.CodeInvalid, "ext_user_id is required"},
		{"null ext_user_id", req{body: emailBody(func(m map[string]any) { m["ext_user_id"] = nil })}, compat.CodeInvalid, "ext_user_id is required"},
		{"ext_user_id too long", req{body: emailBody(func(m map[string]any) { m["ext_user_id"] = long(129) })}, compat.CodeInvalid, "ext_user_id is too long (max 128 bytes)"},
		{"ext_user_id with space", req{body: emailBody(func(m map[string]any) { m["ext_user_id"] = "u 1" })}, compat.CodeInvalid, "ext_user_id must be printable"},
		{"missing email_uid", req{body: emailBody(func(m map[string]any) { delete(m, "email_uid") })}, compat.CodeInvalid, "email_uid is required"},
		{"email_uid too long", req{body: emailBody(func(m map[string]any) { m["email_uid"] = long(129) })}, compat.CodeInvalid, "email_uid is too long"},
		{"email_uid non-ASCII", req{body: emailBody(func(m map[string]any) { m["email_uid"] = "e-é" })}, compat.CodeInvalid, "email_uid must be printable"},
		{"missing im_uid", req{path: "/compat/sms", body: smsBody(func(m map[string]any) { delete(m, "im_uid") })}, compat.CodeInvalid, "im_uid is required"},
		{"missing callback_url", req{body: emailBody(func(m map[string]any) { delete(m, "callback_url") })}, compat.CodeInvalid, "callback_url is required"},
		{"callback_url too long", req{body: emailBody(func(m map[string]any) { m["callback_url"] = "https://cb.test/hooks/" + long(2048) })}, compat.CodeInvalid, "callback_url is too long"},
		{"missing from", req{body: emailBody(func(m map[string]any) { delete(m, "from_email_address") })}, compat.CodeInvalid, "from_email_address is required"},
		{"from not an address", req{body: emailBody(func(m map[string]any) { m["from_email_address"] = "noreply" })}, compat.CodeInvalid, "from_email_address is not an email address"},
		{"reply_to not an address", req{body: emailBody(func(m map[string]any) { m["reply_to_email_address"] = "a@b@c" })}, compat.CodeInvalid, "reply_to_email_address is not an email address"},
		{"missing subject", req{body: emailBody(func(m map[string]any) { delete(m, "subject") })}, compat.CodeInvalid, "subject is required"},
		{"subject too long", req{body: emailBody(func(m map[string]any) { m["subject"] = long(999) })}, compat.CodeInvalid, "subject is too long (max 998 bytes)"},
		{"no body at all", req{body: emailBody(func(m map[string]any) { delete(m, "body"); m["text_body"] = "" })}, compat.CodeInvalid, "body or text_body is required"},
		{"html body too long", req{body: emailBody(func(m map[string]any) { m["body"] = long(256<<10 + 1) })}, compat.CodeInvalid, "body is too long"},
		{"text body too long", req{body: emailBody(func(m map[string]any) { m["text_body"] = long(256<<10 + 1) })}, compat.CodeInvalid, "text_body is too long"},
		{"to_email_address without activity_type", req{body: emailBody(func(m map[string]any) { m["to_email_address"] = "x@example.com" })}, compat.CodeInvalid, "to_email_address is allowed only"},
		{"to_email_address with another activity_type", req{body: emailBody(func(m map[string]any) {
			m["activity_type"], m["to_email_address"] = "Campaign", "x@example.com"
		})}, compat.CodeInvalid, "to_email_address is allowed only"},
		{"preview without to_email_address", req{body: emailBody(func(m map[string]any) { m["activity_type"] = "preview" })}, compat.CodeInvalid, "to_email_address is required"},
		{"to_email_address not an address", req{body: emailBody(func(m map[string]any) {
			m["activity_type"], m["to_email_address"] = "preview", "nobody"
		})}, compat.CodeInvalid, "to_email_address is not an email address"},
		{"activity_type too long", req{body: emailBody(func(m map[string]any) { m["activity_type"] = long(65) })}, compat.CodeInvalid, "activity_type is too long"},
		{"missing sms body", req{path: "/compat/sms", body: smsBody(func(m map[string]any) { delete(m, "body") })}, compat.CodeInvalid, "body is required"},
		{"sms body too long", req{path: "/compat/sms", body: smsBody(func(m map[string]any) { m["body"] = long(256<<10 + 1) })}, compat.CodeInvalid, "body is too long"},
		{"from_number too long", req{path: "/compat/sms", body: smsBody(func(m map[string]any) { m["from_number"] = long(33) })}, compat.CodeInvalid, "from_number is too long"},
		{"from_number non-ASCII", req{path: "/compat/sms", body: smsBody(func(m map[string]any) { m["from_number"] = "Bränd" })}, compat.CodeInvalid, "from_number must be printable"},
		{"callback_url not allowed", req{body: emailBody(func(m map[string]any) { m["callback_url"] = "https://cb.test/hooksevil" })}, compat.CodeCallbackNotAllowed, "callback_url is not under an allowed prefix"},
		{"another tenant's callback prefix", req{body: emailBody(func(m map[string]any) { m["callback_url"] = "https://beta.example.com/x" })}, compat.CodeCallbackNotAllowed, "nothing was accepted"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, compat.Options{})
			resp := f.do(t, tt.r)
			if resp.ErrorCode != tt.wantCode {
				t.Fatalf("error_code %d (%s), want %d", resp.ErrorCode, resp.ErrorMessage, tt.wantCode)
			}
			if !strings.Contains(resp.ErrorMessage, tt.wantMsg) {
				t.Errorf("error_message %q does not contain %q", resp.ErrorMessage, tt.wantMsg)
			}
			if n := len(f.acc.Calls()); n != 0 {
				t.Errorf("refused request reached the Acceptor %d times", n)
			}
		})
	}
}

func TestMethodNotAllowedSetsAllow(t *testing.T) {
	f := newFixture(t, compat.Options{})
	rec := f.serve(req{method: http.MethodGet})
	if rec.Code != http.StatusOK || rec.Header().Get("Allow") != http.MethodPost {
		t.Fatalf("status %d, Allow %q; want 200 and POST", rec.Code, rec.Header().Get("Allow"))
	}
}

func TestBodyLimit(t *testing.T) {
	f := newFixture(t, compat.Options{MaxBodyBytes: 600})
	ok := emailBody(nil)
	if len(ok) > 600 {
		t.Fatalf("base body is %d bytes", len(ok))
	}
	if resp := f.do(t, req{body: ok}); resp.ErrorCode != 0 {
		t.Fatalf("body under the limit: %+v", resp)
	}
	big := emailBody(func(m map[string]any) { m["text_body"] = strings.Repeat("x", 600) })
	if resp := f.do(t, req{body: big}); resp.ErrorCode != compat.CodeTooLarge {
		t.Fatalf("body over the limit (with Content-Length): %+v", resp)
	}
	// Without a Content-Length the limit is enforced while reading.
	hr, _ := http.NewRequest(http.MethodPost, "/compat/email", struct{ *bytes.Reader }{bytes.NewReader(big)})
	hr.RemoteAddr = acmeIP + ":1"
	hr.Header.Set("Authorization", acmeSecret)
	if hr.ContentLength != 0 {
		t.Fatalf("ContentLength %d, want unknown", hr.ContentLength)
	}
	rec := newRecorder()
	f.h.ServeHTTP(rec, hr)
	if resp := decodeResponse(t, rec.Body.Bytes()); rec.Code != 200 || resp.ErrorCode != compat.CodeTooLarge {
		t.Fatalf("streamed body over the limit: %d %+v", rec.Code, resp)
	}
}

func TestAcceptorErrors(t *testing.T) {
	tests := []struct {
		name     string
		path     string
		err      error
		wantCode int
		wantMsg  string // the exact error_message
	}{
		{"denied with reasons", "", fmt.Errorf("policy: %w", compat.Denied("opted_out", "quiet_hours")), compat.CodeDenied, "denied by policy: opted_out,quiet_hours"},
		{"denied, non-code reasons dropped", "", compat.Denied("opted_out", "Has Space", "x@example.com"), compat.CodeDenied, "denied by policy: opted_out"},
		{"denied as a plain wrapped sentinel", "", fmt.Errorf("%w: opted_out", compat.ErrDenied), compat.CodeDenied, "denied by policy"},
		{"unavailable", "", fmt.Errorf("vault sealed: %w", compat.ErrUnavailable), compat.CodeUnavailable, "temporarily unavailable, retry with the same email_uid"},
		{"context cancelled", "", fmt.Errorf("queue: %w", context.Canceled), compat.CodeUnavailable, "temporarily unavailable, retry with the same email_uid"},
		{"invalid with a field", "", fmt.Errorf("check: %w", &compat.FieldError{Field: "subject", Problem: compat.ProblemRequired}), compat.CodeInvalid, "subject is required"},
		{"invalid with an unknown problem", "", &compat.FieldError{Field: "from_email_address", Problem: "domain not configured"}, compat.CodeInvalid, "from_email_address is invalid"},
		{"invalid with an unknown field", "", &compat.FieldError{Field: "tenant_brand", Problem: compat.ProblemRequired}, compat.CodeInvalid, "invalid request"},
		{"invalid, email field on sms", "/compat/sms", &compat.FieldError{Field: "subject", Problem: compat.ProblemRequired}, compat.CodeInvalid, "invalid request"},
		{"invalid as a plain sentinel", "", compat.ErrInvalid, compat.CodeInvalid, "invalid request"},
		{"duplicate conflict email", "", fmt.Errorf("queue: %w", compat.ErrDuplicateConflict), compat.CodeDuplicateConflict, "email_uid was used before with different content; not sent"},
		{"duplicate conflict sms", "/compat/sms", compat.ErrDuplicateConflict, compat.CodeDuplicateConflict, "im_uid was used before with different content; not sent"},
		{"unknown error", "", fmt.Errorf("disk on fire"), compat.CodeInternal, "internal error, retry with the same email_uid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, compat.Options{})
			f.acc.err = tt.err
			body := emailBody(nil)
			if tt.path == "/compat/sms" {
				body = smsBody(nil)
			}
			resp := f.do(t, req{path: tt.path, body: body})
			if resp.ErrorCode != tt.wantCode || resp.ErrorMessage != tt.wantMsg {
				t.Fatalf("answer %d %q, want %d %q", resp.ErrorCode, resp.ErrorMessage, tt.wantCode, tt.wantMsg)
			}
			if len(f.acc.Calls()) != 1 {
				t.Fatalf("Acceptor not called once")
			}
		})
	}
	t.Run("bad ext_message_id from the Acceptor", func(t *testing.T) {
		f := newFixture(t, compat.Options{})
		f.acc.ext = "bpm bad\nid"
		if resp := f.do(t, req{body: emailBody(nil)}); resp.ErrorCode != compat.CodeInternal {
			t.Fatalf("answer %+v, want internal error", resp)
		}
	})
}

func TestDuplicateUIDIsIdempotent(t *testing.T) {
	// The Acceptor owns de-duplication; the handler must pass the same
	// answer through unchanged for a repeated uid.
	f := newFixture(t, compat.Options{})
	f.acc.ext = "bpm_first"
	for i := range 2 {
		resp := f.do(t, req{body: mustRead(t, "email_full.json")})
		if resp.ErrorCode != 0 || resp.ExtMessageID != "bpm_first" {
			t.Fatalf("attempt %d: %+v", i, resp)
		}
	}
	calls := f.acc.Calls()
	if len(calls) != 2 || calls[0].req != calls[1].req {
		t.Fatalf("repeated request not passed on identically: %+v", calls)
	}
}

func TestTenantIsCopied(t *testing.T) {
	ts := testTenants()
	acc := &fakeAcceptor{}
	h, err := compat.New(ts, acc, compat.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ts[0].Secrets[0][0] ^= 1
	ts[0].AllowIPs = nil
	ts[0].CallbackAllow[0] = "https://evil.example.com/"
	ts[0].ID = "mallory"
	f := &fixture{h: h, acc: acc}
	if resp := f.do(t, req{body: emailBody(nil)}); resp.ErrorCode != 0 {
		t.Fatalf("changing the caller's Tenant after New changed the handler: %+v", resp)
	}
	if c := acc.Calls(); len(c) != 1 || c[0].tenant != "acme" {
		t.Fatalf("calls %+v", c)
	}
}

func TestObserve(t *testing.T) {
	type obs struct {
		tenant, channel string
		code            int
	}
	var got []obs
	now := time.Unix(1_800_000_000, 0)
	f := newFixture(t, compat.Options{
		Now: func() time.Time { now = now.Add(time.Millisecond); return now },
		Observe: func(tenant, channel string, code int, d time.Duration) {
			if d != time.Millisecond {
				t.Errorf("duration %v, want 1ms from the injected clock", d)
			}
			got = append(got, obs{tenant, channel, code})
		},
	})
	f.do(t, req{body: emailBody(nil)})
	f.do(t, req{path: "/compat/sms", auth: "nope-nope-nope-nope", body: smsBody(nil)})
	f.do(t, req{path: "/other"})
	want := []obs{{"acme", "email", 0}, {"", "sms", compat.CodeUnauthorized}, {"", "", compat.CodeInvalid}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("observed %v, want %v", got, want)
	}
}
