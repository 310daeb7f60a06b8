package firewall

import (
	"reflect"
	"testing"
)

func TestSplitWords(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"email", []string{"email"}},
		{"+contactEmail", []string{"contact", "email"}},
		{"CONTACT_EMAIL_2", []string{"contact", "email"}},
		{"e-mail", []string{"e", "mail"}},
		{"IPAddress", []string{"ip", "address"}},
		{"addressLine1", []string{"address", "line"}},
		{"date.of.birth", []string{"date", "of", "birth"}},
		{"email_sha256", []string{"email", "sha"}},
		{"!core_is_email_disabled", []string{"core", "is", "email", "disabled"}},
		{"123", nil},
		{"", nil},
	}
	for _, tt := range tests {
		ws, _ := splitWords(nil, nil, tt.in)
		var got []string
		for _, w := range ws {
			got = append(got, string(w))
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("splitWords(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestPIIName(t *testing.T) {
	r := newNameRule([]string{"telefono"}, []string{"Street"})
	tests := []struct {
		parent, name string
		want         bool
	}{
		// names that mean PII
		{"player", "email", true},
		{"player", "Email", true},
		{"player", "e_mail", true},
		{"player", "eMail", true},
		{"player", "mail", true},
		{"player", "contact_email", true},
		{"player", "emailAddress", true},
		{"player", "email_hash", true},
		{"player", "email_sha256", true},
		{"player", "+emails", true},
		{"player", "!email", true},
		{"player", "phone", true},
		{"player", "phone_number", true},
		{"player", "phoneNumber", true},
		{"player", "home_phone", true},
		{"player", "phone_mobile", true},
		{"player", "mobile", true},
		{"player", "MSISDN", true},
		{"player", "first_name", true},
		{"player", "firstName", true},
		{"player", "firstname", true},
		{"player", "last_name", true},
		{"player", "surname", true},
		{"player", "full_name", true},
		{"player", "username", true},
		{"player", "name", true}, // the player's name
		{"player", "address", true},
		{"player", "address_line_2", true},
		{"player", "street_address", true},
		{"player", "zip", true},
		{"player", "zip_code", true},
		{"player", "postcode", true},
		{"player", "birth_date", true},
		{"player", "dateOfBirth", true},
		{"player", "dob", true},
		{"player", "ssn", true},
		{"player", "passport_number", true},
		{"player", "iban", true},
		{"player", "card_number", true},
		{"player", "cardholder_name", true},
		{"player", "ip_address", true},
		{"player", "last_login_ip", true},
		{"player", "wallet_address", true},
		{"player", "telegram_chat_id", true},
		{"contact", "name", true},
		{"card", "number", true},
		{"player", "telefono", true}, // Options.PIIProperties
		// names about PII, or not about it at all
		{"player", "core_is_email_disabled", false},
		{"player", "core_is_email_disabled_by_platform", false},
		{"player", "core_is_sms_disabled", false},
		{"player", "core_is_sms_disabled_by_platform", false},
		{"player", "core_is_push_disabled_by_platform", false},
		{"player", "email_verified", false},
		{"player", "email_token", false},
		{"player", "phone_token", false},
		{"player", "email_id", false},
		{"player", "email_count", false},
		{"player", "last_email_sent_at", false},
		{"player", "is_email", false},
		{"player", "has_phone", false},
		{"player", "mobile_app", false},
		{"player", "is_mobile", false},
		{"player", "iban_country", false},
		{"player", "phone_country_code", false},
		{"player", "birthday_month", false},
		{"player", "game_name", false},
		{"player", "bonus_name", false},
		{"player", "nickname", false},
		{"player", "display_name", false},
		{"player", "country_code", false},
		{"player", "bonus_code", false},
		{"player", "contract_address", false},
		{"player", "ip_country", false},
		{"player", "number", false},
		{"player", "street", false}, // Options.AllowProperties
		{"player", "hotel", false},
		{"player", "vip_level", false},
		{"player", "japan", false},
		{"game", "name", false},
		{"bet", "number", false},
		{"player", "", false},
	}
	for _, tt := range tests {
		var sc scratch
		v := r.judge(tt.name, &sc)
		if got := v == pii || v == generic && r.inContext(tt.name, tt.parent, false, &sc); got != tt.want {
			t.Errorf("isPII(%s.%s) = %v, want %v", tt.parent, tt.name, got, tt.want)
		}
	}
}
