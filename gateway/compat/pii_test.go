package compat_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/blindpost/blindpost/gateway/compat"
)

// Canary values: if any of them shows up in an answer or a log line, the
// handler leaked request content.
const (
	canaryUser  = "canary-user-4711"
	canaryEmail = "canary@example.com"
	canaryPhone = "+15550104711"
	canaryBody  = "canary-body-text"
	canaryUID   = "canary-uid-0042"
)

var canaries = []string{canaryUser, canaryEmail, canaryPhone, canaryBody, canaryUID, "canary"}

func canaryEmailBody(mutate func(m map[string]any)) []byte {
	return emailBody(func(m map[string]any) {
		m["ext_user_id"] = canaryUser
		m["from_email_address"] = "Canary <" + canaryEmail + ">"
		m["reply_to_email_address"] = canaryEmail
		m["subject"] = "Hello " + canaryUser
		m["body"] = "<p>" + canaryBody + " " + canaryEmail + "</p>"
		m["text_body"] = canaryBody + " " + canaryPhone
		m["email_uid"] = canaryUID
		m["callback_url"] = "https://cb.test/hooks/" + canaryUser
		if mutate != nil {
			mutate(m)
		}
	})
}

func canarySMSBody(mutate func(m map[string]any)) []byte {
	return smsBody(func(m map[string]any) {
		m["ext_user_id"] = canaryUser
		m["from_number"] = canaryPhone
		m["body"] = canaryBody + " " + canaryEmail
		m["im_uid"] = canaryUID
		m["callback_url"] = "https://cb.test/hooks/" + canaryUser
		if mutate != nil {
			mutate(m)
		}
	})
}

// TestNoPIIInAnswersOrLogs drives every answer code with canary values in
// every field, and with canaries in the Acceptor's error texts, and checks
// that neither the answers nor the captured log contain any of them.
func TestNoPIIInAnswersOrLogs(t *testing.T) {
	leak := " for " + canaryUser + " <" + canaryEmail + "> " + canaryPhone
	tests := []struct {
		name     string
		r        req
		accErr   error
		wantCode int
	}{
		{"accepted email", req{body: canaryEmailBody(nil)}, nil, 0},
		{"accepted sms", req{path: "/compat/sms", body: canarySMSBody(nil)}, nil, 0},
		{"accepted preview", req{body: canaryEmailBody(func(m map[string]any) {
			m["activity_type"], m["to_email_address"] = "preview", canaryEmail
		})}, nil, 0},
		{"wrong method", req{method: "GET", body: canaryEmailBody(nil)}, nil, compat.CodeInvalid},
		{"unknown path", req{path: "/compat/" + canaryUser, body: canaryEmailBody(nil)}, nil, compat.CodeInvalid},
		{"unauthorized with a canary as secret", req{auth: canaryEmail + canaryUser, body: canaryEmailBody(nil)}, nil, compat.CodeUnauthorized},
		{"IP not allowed, spoofed XFF", req{remote: otherIP, xff: []string{canaryEmail}, body: canaryEmailBody(nil)}, nil, compat.CodeIPNotAllowed},
		{"malformed XFF from proxy", req{remote: proxyIP, xff: []string{canaryUser}, body: canaryEmailBody(nil)}, nil, compat.CodeIPNotAllowed},
		{"channel disabled", req{path: "/compat/sms", auth: betaSecret, remote: betaIP, body: canarySMSBody(nil)}, nil, compat.CodeChannelDisabled},
		{"too large", req{body: canaryEmailBody(func(m map[string]any) {
			m["text_body"] = strings.Repeat(canaryEmail, compat.DefaultMaxBodyBytes/len(canaryEmail)+1)
		})}, nil, compat.CodeTooLarge},
		{"malformed JSON", req{body: []byte(`{"ext_user_id":"` + canaryUser + `", "x": ` + canaryEmail + `}`)}, nil, compat.CodeInvalid},
		{"repeated known key", req{body: []byte(`{"ext_user_id":"` + canaryUser + `","ext_user_id":"` + canaryEmail + `"}`)}, nil, compat.CodeInvalid},
		{"repeated unknown key named like PII", req{body: []byte(`{"` + canaryEmail + `":1,"` + canaryEmail + `":2}`)}, nil, compat.CodeInvalid},
		{"wrong type", req{body: []byte(`{"ext_user_id":{"` + canaryEmail + `":"` + canaryUser + `"}}`)}, nil, compat.CodeInvalid},
		{"trailing data", req{body: append(canaryEmailBody(nil), []byte(` "`+canaryEmail+`"`)...)}, nil, compat.CodeInvalid},
		{"CRLF in from", req{body: canaryEmailBody(func(m map[string]any) { m["from_email_address"] = canaryEmail + "\r\nBcc: " + canaryEmail })}, nil, compat.CodeInvalid},
		{"CRLF in subject", req{body: canaryEmailBody(func(m map[string]any) { m["subject"] = canaryUser + "\r\n" })}, nil, compat.CodeInvalid},
		{"from not an address", req{body: canaryEmailBody(func(m map[string]any) { m["from_email_address"] = canaryUser })}, nil, compat.CodeInvalid},
		{"to without activity", req{body: canaryEmailBody(func(m map[string]any) { m["to_email_address"] = canaryEmail })}, nil, compat.CodeInvalid},
		{"to with a canary activity", req{body: canaryEmailBody(func(m map[string]any) {
			m["activity_type"], m["to_email_address"] = canaryUser, canaryEmail
		})}, nil, compat.CodeInvalid},
		{"ext_user_id with space", req{body: canaryEmailBody(func(m map[string]any) { m["ext_user_id"] = canaryUser + " " + canaryEmail })}, nil, compat.CodeInvalid},
		{"ext_user_id too long", req{body: canaryEmailBody(func(m map[string]any) { m["ext_user_id"] = strings.Repeat(canaryUser, 10) })}, nil, compat.CodeInvalid},
		{"uid invalid", req{body: canaryEmailBody(func(m map[string]any) { m["email_uid"] = canaryUID + "\n" })}, nil, compat.CodeInvalid},
		{"from_number control char", req{path: "/compat/sms", body: canarySMSBody(func(m map[string]any) { m["from_number"] = canaryPhone + "\n" })}, nil, compat.CodeInvalid},
		{"callback not allowed", req{body: canaryEmailBody(func(m map[string]any) { m["callback_url"] = "https://" + canaryUser + ".example.com/" + canaryEmail })}, nil, compat.CodeCallbackNotAllowed},
		{"denied with PII in text and reasons", req{body: canaryEmailBody(nil)},
			fmt.Errorf("policy%s: %w", leak, compat.Denied("opted_out", canaryUser, canaryEmail, canaryPhone)), compat.CodeDenied},
		{"plain denied with PII in text", req{body: canaryEmailBody(nil)}, fmt.Errorf("%w: %s", compat.ErrDenied, leak), compat.CodeDenied},
		{"unavailable", req{body: canaryEmailBody(nil)}, fmt.Errorf("vault%s: %w", leak, compat.ErrUnavailable), compat.CodeUnavailable},
		{"invalid with PII in field and problem", req{body: canaryEmailBody(nil)},
			fmt.Errorf("x%s: %w", leak, &compat.FieldError{Field: canaryUser, Problem: canaryEmail}), compat.CodeInvalid},
		{"invalid, known field, PII problem", req{body: canaryEmailBody(nil)},
			&compat.FieldError{Field: "subject", Problem: "bad " + canaryEmail}, compat.CodeInvalid},
		{"conflict", req{path: "/compat/sms", body: canarySMSBody(nil)}, fmt.Errorf("queue%s: %w", leak, compat.ErrDuplicateConflict), compat.CodeDuplicateConflict},
		{"internal", req{body: canaryEmailBody(nil)}, fmt.Errorf("boom%s", leak), compat.CodeInternal},
	}
	f := newFixture(t, compat.Options{})
	seen := map[int]bool{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.acc.err = tt.accErr
			rec := f.serve(tt.r)
			if rec.Code != 200 {
				t.Fatalf("HTTP %d", rec.Code)
			}
			resp := decodeResponse(t, rec.Body.Bytes())
			if resp.ErrorCode != tt.wantCode {
				t.Fatalf("error_code %d (%s), want %d", resp.ErrorCode, resp.ErrorMessage, tt.wantCode)
			}
			seen[resp.ErrorCode] = true
			for _, c := range canaries {
				if strings.Contains(strings.ToLower(rec.Body.String()), strings.ToLower(c)) {
					t.Errorf("answer %s contains canary %q", rec.Body.String(), c)
				}
			}
		})
	}
	for code := compat.CodeOK; code <= compat.CodeInternal; code++ {
		if !seen[code] {
			t.Errorf("error code %d not exercised", code)
		}
	}
	logs := f.log.String()
	if n := strings.Count(logs, "\n"); n != len(tests) {
		t.Errorf("%d log lines for %d requests", n, len(tests))
	}
	for _, c := range canaries {
		if strings.Contains(strings.ToLower(logs), strings.ToLower(c)) {
			t.Errorf("log contains canary %q", c)
		}
	}
	// The log does name the uid, by its hash, and the codes.
	if !strings.Contains(logs, `"uid_sha256":"`+compat.UIDHash(canaryUID)+`"`) {
		t.Errorf("log does not name the uid by its hash")
	}
	for line := range strings.Lines(logs) {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		for k := range m {
			switch k {
			case "time", "level", "msg", "tenant", "channel", "uid_sha256", "code", "ext_message_id", "dur":
			default:
				t.Errorf("log line has unexpected attribute %q", k)
			}
		}
	}
}
