package policy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/blindpost/blindpost/policy"
)

// A player as the operator's PAM knows them. These values must never reach
// a decision log; the gateway derives the policy input from them.
var canaryPlayer = struct {
	Email, Phone, FirstName, LastName, Pseudonym string
}{
	Email: "dana.canary@example.com", Phone: "+15550100777",
	FirstName: "Danacanary", LastName: "Canaryson", Pseudonym: "ps_7fkq2m",
}

// realisticInput is what the gateway passes for a message to canaryPlayer:
// derived attributes, the player named by pseudonym.
func realisticInput() policy.Input {
	return policy.Input{
		API: "compat", Stage: "send", Tenant: "example", Brand: "example-casino",
		Channel: "email", Category: "marketing", Purpose: "promotion",
		Placeholders: []string{"first_name"},
		FromDomain:   "example.com", ToOverrideDomain: "staff.example.com", ActivityType: "preview",
		Counters: map[string]int{"marketing/email": 1}, TenantRatePerMinute: 30,
		Subject: &policy.Subject{
			Pseudonym: canaryPlayer.Pseudonym, Country: "MT", LocalHour: 13, Timezone: "Europe/Malta",
			OptOuts:      map[string]bool{"core_is_sms_disabled": true},
			Consents:     map[string]bool{"marketing_email": true},
			Addressable:  true,
			OptOutSince:  map[string]time.Time{"core_is_sms_disabled": testTime.Add(-48 * time.Hour)},
			SnoozedUntil: map[string]time.Time{"sms": testTime.Add(72 * time.Hour)},
		},
	}
}

func TestDecisionLogIsOPAShaped(t *testing.T) {
	e := mustNew(t, policy.BundleFS(), policy.Options{})
	in := realisticInput()
	d, err := e.Decide(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := json.Marshal(d.Log(in))
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	keys := slices.Sorted(func(yield func(string) bool) {
		for k := range got {
			if !yield(k) {
				return
			}
		}
	})
	if want := []string{"bundles", "decision_id", "input", "labels", "path", "result", "timestamp"}; !slices.Equal(keys, want) {
		t.Errorf("keys %v, want %v", keys, want)
	}
	if got["decision_id"] != d.ID || got["path"] != "blindpost/gateway/decision" {
		t.Errorf("decision_id %v path %v", got["decision_id"], got["path"])
	}
	if rev := got["bundles"].(map[string]any)["blindpost"].(map[string]any)["revision"]; rev != e.Revision() {
		t.Errorf("bundles.blindpost.revision = %v, want %s", rev, e.Revision())
	}
	if got["timestamp"] != "2025-03-01T12:00:00Z" {
		t.Errorf("timestamp = %v", got["timestamp"])
	}
	result := got["result"].(map[string]any)
	if result["allow"] != d.Allow || len(result["reasons"].([]any)) != len(d.Reasons) || result["obligations"] == nil {
		t.Errorf("result = %v, decision %v %q", result, d.Allow, d.Reasons)
	}
	// The input logged is the input decided on, clock included.
	if got["input"].(map[string]any)["now"] != "2025-03-01T12:00:00Z" {
		t.Errorf("input.now = %v", got["input"].(map[string]any)["now"])
	}
	labels := got["labels"].(map[string]any)
	if labels["app"] != "blindpost" || labels["stage"] != "send" || labels["opa_version"] == "" {
		t.Errorf("labels = %v", labels)
	}
}

// Replaying a logged input against the same bundle gives the logged result:
// an auditor can check any decision.
func TestDecisionLogReplays(t *testing.T) {
	e := mustNew(t, policy.BundleFS(), policy.Options{})
	for _, in := range []policy.Input{realisticInput(), benchInput(), accept("sms", "transactional", "phone")} {
		d, err := e.Decide(context.Background(), in)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := json.Marshal(d.Log(in))
		if err != nil {
			t.Fatal(err)
		}
		var logged policy.DecisionLog
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&logged); err != nil {
			t.Fatal(err)
		}
		again, err := mustNew(t, policy.BundleFS(), policy.Options{Now: func() time.Time { return time.Unix(0, 0) }}).Decide(context.Background(), logged.Input)
		if err != nil {
			t.Fatal(err)
		}
		if again.Allow != logged.Result.Allow || !slices.Equal(again.Reasons, logged.Result.Reasons) ||
			!reflect.DeepEqual(again.Obligations, logged.Result.Obligations) {
			t.Errorf("replay %v %q %v, logged %v %q %v", again.Allow, again.Reasons, again.Obligations,
				logged.Result.Allow, logged.Result.Reasons, logged.Result.Obligations)
		}
	}
}

// Invariant 2 (DESIGN.md §9): no PII in the audit log. The decision log of
// a realistic message names the player by pseudonym only.
func TestDecisionLogHoldsNoPII(t *testing.T) {
	e := mustNew(t, policy.BundleFS(), policy.Options{})
	in := realisticInput()
	d, _ := e.Decide(context.Background(), in)
	raw, err := json.Marshal(d.Log(in))
	if err != nil {
		t.Fatal(err)
	}
	log := strings.ToLower(string(raw))
	for _, pii := range []string{canaryPlayer.Email, canaryPlayer.Phone, canaryPlayer.FirstName, canaryPlayer.LastName, "canary", "15550100777"} {
		if strings.Contains(log, strings.ToLower(pii)) {
			t.Errorf("decision log contains %q:\n%s", pii, raw)
		}
	}
	if !strings.Contains(string(raw), canaryPlayer.Pseudonym) {
		t.Errorf("decision log does not name the player by pseudonym:\n%s", raw)
	}
}

// The input types have no place for an address, a number or a name: the
// policy cannot be handed one by mistake.
func TestInputHasNoFieldForPII(t *testing.T) {
	forbidden := []string{"email", "phone", "name", "address", "number", "telegram", "chat"}
	for _, typ := range []reflect.Type{reflect.TypeFor[policy.Input](), reflect.TypeFor[policy.Subject]()} {
		for f := range typ.Fields() {
			if f.Type.Kind() == reflect.Bool {
				continue // "addressable" says whether there is an address, not which
			}
			name := strings.ToLower(f.Name + " " + f.Tag.Get("json"))
			for _, word := range forbidden {
				if strings.Contains(name, word) && !strings.Contains(name, "pseudonym") && !strings.Contains(name, "domain") {
					t.Errorf("%s.%s (%s) looks like it could hold PII", typ.Name(), f.Name, f.Tag.Get("json"))
				}
			}
		}
	}
}
