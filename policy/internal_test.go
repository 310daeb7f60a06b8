package policy

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
)

// The policy sees exactly the JSON of Input, which is what a decision log
// records, so a logged decision can be replayed.
func TestInputValueIsItsJSON(t *testing.T) {
	for name, in := range map[string]Input{
		"zero":                    {},
		"accept, no placeholders": {API: "native", Stage: "accept", Channel: "email", Category: "marketing", Placeholders: []string{}},
		"send, full subject": {
			API: "compat", Stage: "send", Tenant: "t", Brand: "b", Channel: "sms", Category: "transactional",
			Purpose: "password_reset", Placeholders: []string{"first_name", "locale"},
			Subject: &Subject{Pseudonym: "ps_1", Country: "MT", LocalHour: 23,
				OptOuts: map[string]bool{"core_is_sms_disabled": true}, Consents: map[string]bool{"marketing_sms": false},
				SelfExcluded: true, Addressable: true},
		},
		"send, empty subject": {Stage: "send", Subject: &Subject{}},
		"every optional field": {
			API: "compat", Stage: "accept", Tenant: "t", Brand: "b", Channel: "email", Category: "marketing",
			Purpose: "promotion", Placeholders: []string{},
			Now:        time.Date(2025, 10, 26, 1, 30, 0, 123456789, time.FixedZone("BST", 3600)),
			FromDomain: "example.com", ToOverrideDomain: "staff.example.com", ActivityType: "preview",
			Counters: map[string]int{"marketing/email": 2, "marketing/sms": 0}, TenantRatePerMinute: 601,
			Subject: &Subject{Pseudonym: "ps_2", Timezone: "Europe/London", Addressable: true,
				OptOutSince:  map[string]time.Time{"core_is_email_disabled": time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)},
				SnoozedUntil: map[string]time.Time{"email": time.Date(2025, 4, 1, 0, 0, 0, 0, time.UTC)}},
		},
	} {
		t.Run(name, func(t *testing.T) {
			raw, err := json.Marshal(in)
			if err != nil {
				t.Fatal(err)
			}
			want, err := ast.ValueFromReader(bytes.NewReader(raw))
			if err != nil {
				t.Fatal(err)
			}
			if got := in.value(); got.Compare(want) != 0 {
				t.Errorf("value() = %v\n   JSON = %v", got, want)
			}
		})
	}
}
