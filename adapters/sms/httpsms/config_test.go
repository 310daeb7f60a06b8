package httpsms_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/blindpost/blindpost/adapters/sms"
	"github.com/blindpost/blindpost/adapters/sms/httpsms"
)

func validReceipts() httpsms.ReceiptConfig {
	return httpsms.ReceiptConfig{
		IDPointer:     "/messageId",
		RefPointer:    "/client-ref",
		StatusPointer: "/status",
		CodePointer:   "/err-code",
		Statuses:      map[string]string{"delivered": sms.StatusDelivered, "failed": sms.StatusUndelivered, "accepted": sms.StatusAccepted},
		SecretHeader:  "X-Receipt-Secret",
		Secret:        "${SMS_RECEIPT_SECRET}",
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	tests := []struct {
		name    string
		edit    func(*httpsms.Config)
		mention string // the error names the field
	}{
		{"no url", func(c *httpsms.Config) { c.URL = "" }, "url"},
		{"relative url", func(c *httpsms.Config) { c.URL = "/sms" }, "url"},
		{"ftp url", func(c *httpsms.Config) { c.URL = "ftp://sms.example/x" }, "url"},
		{"credentials in url", func(c *httpsms.Config) { c.URL = "https://user:pw@sms.example/x" }, "credentials"},
		{"unset variable in url", func(c *httpsms.Config) { c.URL = "https://sms.example/x?key=${NOPE}" }, "NOPE"},
		{"GET", func(c *httpsms.Config) { c.Method = "GET" }, "method"},
		{"xml content type", func(c *httpsms.Config) { c.ContentType = "application/xml" }, "content_type"},
		{"malformed content type", func(c *httpsms.Config) { c.ContentType = "application/json; =" }, "content_type"},
		{"empty template", func(c *httpsms.Config) { c.BodyTemplate = "" }, "body_template"},
		{"invalid JSON template", func(c *httpsms.Config) { c.BodyTemplate = `{"to": "{{to}}",}` }, "valid JSON"},
		{"unknown placeholder", func(c *httpsms.Config) { c.BodyTemplate = `{"to":"{{to}}","x":"{{name}}"}` }, "{{name}}"},
		{"unterminated placeholder", func(c *httpsms.Config) { c.BodyTemplate = `{"to":"{{to"}` }, "unterminated"},
		{"placeholder outside a string", func(c *httpsms.Config) { c.BodyTemplate = `{"to":{{to}}}` }, "inside a JSON string"},
		{"placeholder as a key's neighbour", func(c *httpsms.Config) { c.BodyTemplate = `{"to":"x",{{body}}}` }, "inside a JSON string"},
		{"placeholder after a backslash", func(c *httpsms.Config) { c.BodyTemplate = `{"to":"\{{to}}"}` }, "backslash"},
		{"variable outside a string", func(c *httpsms.Config) { c.BodyTemplate = `{"to":"{{to}}","n":${SMS_API_KEY}}` }, "inside a JSON string"},
		{"unset variable in template", func(c *httpsms.Config) { c.BodyTemplate = `{"to":"{{to}}","k":"${NOPE}"}` }, "NOPE"},
		{"invalid form template", func(c *httpsms.Config) {
			c.ContentType = "application/x-www-form-urlencoded"
			c.BodyTemplate = "to={{to}}&bad=%zz"
		}, "form"},
		{"header with a bad name", func(c *httpsms.Config) { c.Headers = map[string]string{"Bad Header": "x"} }, "header name"},
		{"header set by the adapter", func(c *httpsms.Config) { c.Headers = map[string]string{"content-type": "text/plain"} }, "Content-Type"},
		{"header with a line break", func(c *httpsms.Config) { c.Headers = map[string]string{"X-A": "a\r\nX-B: b"} }, "line break"},
		{"header variable unset", func(c *httpsms.Config) { c.Headers = map[string]string{"Authorization": "Bearer ${MISSING_KEY}"} }, "MISSING_KEY"},
		{"header variable unterminated", func(c *httpsms.Config) { c.Headers = map[string]string{"Authorization": "Bearer ${SMS_API_KEY"} }, "unterminated"},
		{"header variable bad name", func(c *httpsms.Config) { c.Headers = map[string]string{"Authorization": "Bearer ${1X}"} }, "variable name"},
		{"non-2xx success status", func(c *httpsms.Config) { c.SuccessStatuses = []int{200, 302} }, "302"},
		{"bad id pointer", func(c *httpsms.Config) { c.IDPointer = "messages/0" }, "id_pointer"},
		{"bad pointer escape", func(c *httpsms.Config) { c.IDPointer = "/a~2" }, "id_pointer"},
		{"negative timeout", func(c *httpsms.Config) { c.Timeout = -time.Second }, "timeout"},
		{"receipts without status pointer", func(c *httpsms.Config) { c.Receipts = validReceipts(); c.Receipts.StatusPointer = "" }, "status_pointer"},
		{"receipts without id or ref", func(c *httpsms.Config) {
			c.Receipts = validReceipts()
			c.Receipts.IDPointer, c.Receipts.RefPointer = "", ""
		}, "id_pointer or ref_pointer"},
		{"receipts with a bad pointer", func(c *httpsms.Config) { c.Receipts = validReceipts(); c.Receipts.CodePointer = "x" }, "code_pointer"},
		{"receipts without statuses", func(c *httpsms.Config) { c.Receipts = validReceipts(); c.Receipts.Statuses = nil }, "statuses"},
		{"receipts with an unknown status", func(c *httpsms.Config) {
			c.Receipts = validReceipts()
			c.Receipts.Statuses = map[string]string{"ok": "read"}
		}, "statuses"},
		{"receipts with a status mapped twice", func(c *httpsms.Config) {
			c.Receipts = validReceipts()
			c.Receipts.Statuses = map[string]string{"OK": sms.StatusDelivered, "ok": sms.StatusUndelivered}
		}, "twice"},
		{"receipts without authentication", func(c *httpsms.Config) {
			c.Receipts = validReceipts()
			c.Receipts.SecretHeader, c.Receipts.Secret = "", ""
		}, "required"},
		{"receipts with both authentications", func(c *httpsms.Config) {
			c.Receipts = validReceipts()
			c.Receipts.SignatureHeader, c.Receipts.SignatureSecret = "X-Sig", "k"
		}, "not both"},
		{"receipts secret unset", func(c *httpsms.Config) { c.Receipts = validReceipts(); c.Receipts.Secret = "${NOPE}" }, "NOPE"},
		{"receipts secret header without secret", func(c *httpsms.Config) { c.Receipts = validReceipts(); c.Receipts.Secret = "" }, "secret"},
		{"receipts signature encoding", func(c *httpsms.Config) {
			c.Receipts = validReceipts()
			c.Receipts.SecretHeader, c.Receipts.Secret = "", ""
			c.Receipts.SignatureHeader, c.Receipts.SignatureSecret, c.Receipts.SignatureEncoding = "X-Sig", "k", "base32"
		}, "signature_encoding"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := jsonConfig(t, "https://sms.example")
			tt.edit(&cfg)
			c, err := httpsms.New(cfg, nil, env)
			if !errors.Is(err, httpsms.ErrConfig) {
				t.Fatalf("New = %v, %v; want ErrConfig", c, err)
			}
			if !strings.Contains(err.Error(), tt.mention) {
				t.Errorf("error %q does not mention %q", err, tt.mention)
			}
			for _, secret := range []string{testKey, "receipt-secret-0123456789", "+15550100001"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error %q leaks %q", err, secret)
				}
			}
		})
	}
}

func TestNewAcceptsValidConfig(t *testing.T) {
	tests := []struct {
		name string
		edit func(*httpsms.Config)
	}{
		{"json with charset", func(c *httpsms.Config) { c.ContentType = "application/json; charset=utf-8" }},
		{"vendor json", func(c *httpsms.Config) { c.ContentType = "application/vnd.provider+json" }},
		{"placeholders with spaces and repeats", func(c *httpsms.Config) { c.BodyTemplate = `{"to":"{{ to }}","copy":"{{to}}-{{ref}}"}` }},
		{"placeholder in an array", func(c *httpsms.Config) { c.BodyTemplate = `{"to":["{{to}}"],"text":"{{body}}"}` }},
		{"literal dollar and braces", func(c *httpsms.Config) { c.BodyTemplate = `{"to":"{{to}}","price":"$5 }} {x}"}` }},
		{"escaped quote before a placeholder", func(c *httpsms.Config) { c.BodyTemplate = `{"text":"\"{{body}}\""}` }},
		{"double backslash before a placeholder", func(c *httpsms.Config) { c.BodyTemplate = `{"text":"\\{{body}}"}` }},
		{"form", func(c *httpsms.Config) {
			c.ContentType = "application/x-www-form-urlencoded"
			c.BodyTemplate = "to={{to}}&text={{body}}"
		}},
		{"receipts with a signature", func(c *httpsms.Config) {
			c.Receipts = validReceipts()
			c.Receipts.SecretHeader, c.Receipts.Secret = "", ""
			c.Receipts.SignatureHeader, c.Receipts.SignatureSecret = "X-Signature", "${SMS_RECEIPT_KEY}"
		}},
		{"no lookup needed without variables", func(c *httpsms.Config) { c.Headers = nil }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := jsonConfig(t, "https://sms.example")
			tt.edit(&cfg)
			lookup := env
			if cfg.Headers == nil {
				lookup = nil
			}
			if _, err := httpsms.New(cfg, nil, lookup); err != nil {
				t.Errorf("New: %v", err)
			}
		})
	}
}
