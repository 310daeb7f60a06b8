package policy

import (
	"bytes"
	"encoding/json"
	"testing"

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
