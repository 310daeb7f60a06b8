package vault_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/blindpost/blindpost/vault"
)

func TestRecordValidateNamesTheFieldNeverTheValue(t *testing.T) {
	for _, c := range []struct {
		field, value string
		rec          vault.Record
	}{
		{"email", "alice.example.com", vault.Record{Email: "alice.example.com"}},
		{"email", "alice@example.com\r\nBcc: eve@example.com", vault.Record{Email: "alice@example.com\r\nBcc: eve@example.com"}},
		{"phone", "555-0100", vault.Record{Phone: "555-0100"}},
		{"telegram_chat_id", "chat-alice", vault.Record{TelegramChatID: "chat-alice"}},
		{"first_name", "Alice\nBcc", vault.Record{FirstName: "Alice\nBcc"}},
		{"last_name", strings.Repeat("Smith", 60), vault.Record{LastName: strings.Repeat("Smith", 60)}},
		{"locale", "english please", vault.Record{Locale: "english please"}},
		{"country", "Malta", vault.Record{Country: "Malta"}},
		{"timezone", "Mars/Olympus_Mons", vault.Record{Timezone: "Mars/Olympus_Mons"}},
		{"timezone", "Local", vault.Record{Timezone: "Local"}},
		{"timezone", "../../etc/passwd", vault.Record{Timezone: "../../etc/passwd"}},
		{"consents", "alice@example.com", vault.Record{Consents: map[string]bool{"alice@example.com": true}}},
		{"opt_outs", "unsubscribe_alice", vault.Record{OptOuts: map[string]bool{"unsubscribe_alice": true}}},
		{"pseudonym", "ALICE", vault.Record{Pseudonym: "ALICE"}},
		{"push_tokens", "device alice", vault.Record{PushTokens: []vault.PushToken{{Token: "device alice", DeviceType: "ios"}}}},
		{"push_tokens", "Alice-Phone", vault.Record{PushTokens: []vault.PushToken{{Token: "tok-1", DeviceType: "Alice-Phone"}}}},
		{"push_tokens", "no value", vault.Record{PushTokens: make([]vault.PushToken, 17)}},
	} {
		err := c.rec.Validate()
		if !errors.Is(err, vault.ErrInvalid) {
			t.Errorf("%s: Validate() = %v, want ErrInvalid", c.field, err)
			continue
		}
		msg := err.Error()
		if !strings.HasPrefix(msg, `record: field "`+c.field+`": `) {
			t.Errorf("%s: error %q does not name the field", c.field, msg)
		}
		if strings.Contains(msg, c.value) {
			t.Errorf("%s: error %q contains the value", c.field, msg)
		}
		var fe *vault.FieldError
		if !errors.As(err, &fe) || fe.Field != c.field {
			t.Errorf("%s: error is not a *FieldError for the field: %#v", c.field, err)
		}
	}
}

func TestRecordValidateAcceptsAFullRecord(t *testing.T) {
	rec := vault.Record{
		Email: "Alice@Example.com", Phone: "+1 555 010 0001", TelegramChatID: "123456",
		FirstName: "Ålice", LastName: "O'Brien-Smith", Locale: "en-GB", Country: "mt",
		Timezone: "Europe/Malta",
		Consents: map[string]bool{"marketing_email": true, "marketing_sms": false, "marketing_im": true, "marketing_push": true},
		OptOuts: map[string]bool{
			"core_is_email_disabled_by_platform": false, "core_is_sms_disabled_by_platform": true,
			"core_is_push_disabled_by_platform": false, "core_is_email_disabled": true, "core_is_sms_disabled": false,
		},
		SelfExcluded: true,
	}
	if err := rec.Validate(); err != nil {
		t.Fatal(err)
	}
	n, err := rec.Normalize()
	if err != nil {
		t.Fatal(err)
	}
	if n.Email != "alice@example.com" || n.Phone != "+15550100001" || n.Country != "MT" {
		t.Fatalf("Normalize = %+v", n)
	}
	if err := (vault.Record{}).Validate(); err != nil {
		t.Fatalf("empty record: %v", err)
	}
}

func TestRecordFieldServesOnlyPlaceholderFields(t *testing.T) {
	rec := vault.Record{
		Email: "alice@example.com", Phone: "+15550100001", TelegramChatID: "42",
		FirstName: "Alice", LastName: "Smith", Locale: "en", Country: "MT", Timezone: "UTC",
		Pseudonym: "aaaaaaaaaaaaaaaaaaaaaaaaaa",
	}
	for name, want := range map[string]string{
		"email": "alice@example.com", "phone": "+15550100001", "first_name": "Alice",
		"last_name": "Smith", "locale": "en", "country": "MT",
	} {
		if got, ok := rec.Field(name); !ok || got != want {
			t.Errorf("Field(%q) = %q, %v", name, got, ok)
		}
	}
	for _, name := range []string{"telegram_chat_id", "timezone", "pseudonym", "Email", "consents", ""} {
		if got, ok := rec.Field(name); ok {
			t.Errorf("Field(%q) = %q, want not ok", name, got)
		}
	}
	if _, ok := (vault.Record{}).Field("first_name"); ok {
		t.Error("empty first_name reported as ok")
	}
}

func TestRefValidate(t *testing.T) {
	good := vault.Ref{Tenant: "acme", Brand: "brand-1", User: "user 42/ü"}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, ref := range map[string]vault.Ref{
		"empty tenant":  {Brand: "b", User: "u"},
		"empty user":    {Tenant: "t", Brand: "b"},
		"control char":  {Tenant: "t", Brand: "b\x00", User: "u"},
		"newline":       {Tenant: "t", Brand: "b", User: "u\n"},
		"too long":      {Tenant: "t", Brand: "b", User: strings.Repeat("u", vault.MaxIDLen+1)},
		"invalid UTF-8": {Tenant: "t", Brand: "\xff", User: "u"},
	} {
		if err := ref.Validate(); !errors.Is(err, vault.ErrInvalid) {
			t.Errorf("%s: Validate() = %v", name, err)
		}
	}
}

func TestAssociatedDataBindsEveryPart(t *testing.T) {
	base := vault.AssociatedData(vault.Ref{Tenant: "t", Brand: "ab", User: "c"}, 1)
	for name, other := range map[string][]byte{
		"boundary shift": vault.AssociatedData(vault.Ref{Tenant: "t", Brand: "a", User: "bc"}, 1),
		"other tenant":   vault.AssociatedData(vault.Ref{Tenant: "u", Brand: "ab", User: "c"}, 1),
		"other version":  vault.AssociatedData(vault.Ref{Tenant: "t", Brand: "ab", User: "c"}, 2),
	} {
		if bytes.Equal(base, other) {
			t.Errorf("%s: same associated data", name)
		}
	}
}

// TestRecordNormalizeStoresTheTokenisedForm proves that a record keeps its
// addresses in exactly the form that is tokenised: every case of
// normalize.json, put in the record field of its kind, normalises to the
// table's value or is rejected naming that field.
func TestRecordNormalizeStoresTheTokenisedForm(t *testing.T) {
	var cases []normCase
	loadJSON(t, "normalize.json", &cases)
	for _, c := range cases {
		if c.In == "" {
			continue // an empty field is an absent one
		}
		var rec vault.Record
		var field *string
		var name string
		switch c.Kind {
		case vault.KindEmail:
			field, name = &rec.Email, "email"
		case vault.KindPhone:
			field, name = &rec.Phone, "phone"
		case vault.KindTelegram:
			field, name = &rec.TelegramChatID, "telegram_chat_id"
		default:
			t.Fatalf("normalize.json: unknown kind %q", c.Kind)
		}
		*field = c.In
		n, err := rec.Normalize()
		if c.Want == "" {
			var fe *vault.FieldError
			if !errors.As(err, &fe) || fe.Field != name {
				t.Errorf("%s %q (%s): Normalize error %v, want a FieldError for %q", c.Kind, c.In, c.Note, err, name)
			}
			continue
		}
		rec = n
		if err != nil || *field != c.Want {
			t.Errorf("%s %q (%s): record holds %q, %v; want %q", c.Kind, c.In, c.Note, *field, err, c.Want)
		}
	}
}
