package envelope_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/blindpost/blindpost/envelope"
)

func validMessage() map[string]any {
	return map[string]any{
		"id": "msg-1", "tenant": "tenant-a", "brand": "brand-1", "channel": "email",
		"category": "transactional", "purpose": "password_reset",
		"to":   map[string]any{"subject": "user-42"},
		"from": "Casino <noreply@example.com>", "reply_to": "support@example.com",
		"subject": "Reset", "html": "<p>Hi {{pii.first_name}}</p>", "text": "Hi\r\n\tthere",
		"campaign": "c-1", "not_before": "2026-01-01T00:00:00Z", "expires_at": "2026-01-02T00:00:00+02:00",
	}
}

func TestParseMessageAcceptsValidMessage(t *testing.T) {
	raw, _ := json.Marshal(validMessage())
	m, err := envelope.ParseMessage(raw)
	if err != nil {
		t.Fatal(err)
	}
	want := time.Date(2026, 1, 1, 22, 0, 0, 0, time.UTC)
	if m.To.Subject != "user-42" || m.ExpiresAt == nil || !m.ExpiresAt.Equal(want) || m.Text != "Hi\r\n\tthere" {
		t.Fatalf("parsed %+v", m)
	}
	// A Message marshals back to what ParseMessage accepts.
	again, _ := json.Marshal(m)
	if _, err := envelope.ParseMessage(again); err != nil {
		t.Fatalf("re-marshalled message: %v", err)
	}
}

// TestInvalidMessageNamesField: each invalid message is rejected with an
// ErrInvalidMessage that names the offending field.
func TestInvalidMessageNamesField(t *testing.T) {
	tests := []struct {
		name  string
		edit  func(m map[string]any)
		field string
	}{
		{"missing id", func(m map[string]any) { delete(m, "id") }, "id"},
		{"id too long", func(m map[string]any) { m["id"] = strings.Repeat("x", 129) }, "id"},
		{"id with a control character", func(m map[string]any) { m["id"] = "a\x00b" }, "id"},
		{"missing tenant", func(m map[string]any) { delete(m, "tenant") }, "tenant"},
		{"missing brand", func(m map[string]any) { delete(m, "brand") }, "brand"},
		{"unknown channel", func(m map[string]any) { m["channel"] = "fax" }, "channel"},
		{"unknown category", func(m map[string]any) { m["category"] = "promo" }, "category"},
		{"purpose with capitals", func(m map[string]any) { m["purpose"] = "Password" }, "purpose"},
		{"no recipient", func(m map[string]any) { m["to"] = map[string]any{} }, "to"},
		{"both subject and token", func(m map[string]any) {
			m["to"] = map[string]any{"subject": "u", "token": "tok_email_v1_x"}
		}, "to"},
		{"token without tok_ prefix", func(m map[string]any) { m["to"] = map[string]any{"token": "email_v1_x"} }, "to.token"},
		{"unknown recipient field", func(m map[string]any) { m["to"] = map[string]any{"subject": "u", "email": "a"} }, "to"},
		{"recipient subject not a string", func(m map[string]any) { m["to"] = map[string]any{"subject": 42} }, "to.subject"},
		{"header injection in subject", func(m map[string]any) { m["subject"] = "Hi\r\nBcc: x@example.com" }, "subject"},
		{"header injection in from", func(m map[string]any) { m["from"] = "a@example.com\nBcc: b@example.com" }, "from"},
		{"subject too long", func(m map[string]any) { m["subject"] = strings.Repeat("s", 999) }, "subject"},
		{"email without subject", func(m map[string]any) { delete(m, "subject") }, "subject"},
		{"email without body", func(m map[string]any) { delete(m, "html"); delete(m, "text") }, "text"},
		{"sms with html", func(m map[string]any) { m["channel"] = "sms"; delete(m, "subject") }, "html"},
		{"push without text", func(m map[string]any) { m["channel"] = "push"; delete(m, "text") }, "text"},
		{"body with a control character", func(m map[string]any) { m["text"] = "a\x1bb" }, "text"},
		{"body too long", func(m map[string]any) { m["html"] = strings.Repeat("h", envelope.MaxBodyLen+1) }, "html"},
		{"bad time", func(m map[string]any) { m["not_before"] = "tomorrow" }, "not_before"},
		{"expiry before start", func(m map[string]any) { m["expires_at"] = "2025-12-31T00:00:00Z" }, "expires_at"},
		{"number for a string", func(m map[string]any) { m["brand"] = 7 }, "brand"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := validMessage()
			tt.edit(m)
			raw, _ := json.Marshal(m)
			_, err := envelope.ParseMessage(raw)
			var fe *envelope.FieldError
			if !errors.Is(err, envelope.ErrInvalidMessage) || !errors.As(err, &fe) {
				t.Fatalf("ParseMessage: %v, want a FieldError", err)
			}
			if fe.Field != tt.field {
				t.Fatalf("error %q names field %q, want %q", err, fe.Field, tt.field)
			}
		})
	}
}

func TestParseMessageIsStrict(t *testing.T) {
	raw, _ := json.Marshal(validMessage())
	good := string(raw)
	for name, in := range map[string]string{
		"unknown field":           strings.Replace(good, `{`, `{"priority":1,`, 1),
		"duplicate field":         strings.Replace(good, `{`, `{"id":"other",`, 1),
		"field in another case":   strings.Replace(good, `"brand"`, `"Brand"`, 1),
		"trailing data":           good + `{}`,
		"not an object":           `[` + good + `]`,
		"invalid UTF-8":           strings.Replace(good, `Reset`, "Re\xffset", 1),
		"oversize message":        strings.Replace(good, `{`, `{"x":"`+strings.Repeat("x", envelope.DefaultMaxMessageBytes)+`",`, 1),
		"null recipient":          strings.Replace(good, `"to":{"subject":"user-42"}`, `"to":null`, 1),
		"recipient not an object": strings.Replace(good, `"to":{"subject":"user-42"}`, `"to":"user-42"`, 1),
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := envelope.ParseMessage(json.RawMessage(in)); !errors.Is(err, envelope.ErrInvalidMessage) {
				t.Fatalf("ParseMessage: %v, want ErrInvalidMessage", err)
			}
		})
	}
}
