package policy

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
)

// Decisions with remembered rule values are the decisions the bundle makes
// without them, whatever the order of the inputs.
func TestMemoizedDecisionsEqualFreshOnes(t *testing.T) {
	now := time.Date(2025, 3, 29, 22, 30, 0, 0, time.UTC) // London's clocks change tonight
	e, err := New(context.Background(), BundleFS(), Options{Now: func() time.Time { return now }, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if len(e.cur.Load().memos) != len(memoRefs) {
		t.Fatalf("%d of %d rules remembered", len(e.cur.Load().memos), len(memoRefs))
	}
	fresh := *e.cur.Load()
	fresh.memos = nil
	plain := &Evaluator{now: e.now, timeout: e.timeout}
	plain.cur.Store(&fresh)

	var inputs []Input
	for _, tb := range [][2]string{{"example", "example-casino"}, {"example", "other"}, {"t1", "b1"}} {
		for _, stage := range []string{"accept", "send"} {
			for _, channel := range []string{"email", "sms"} {
				for _, category := range []string{"transactional", "marketing"} {
					for _, purpose := range []string{"password_reset", "promotion"} {
						for _, country := range []string{"MT", "US", "FR", ""} {
							for _, tz := range []string{"Europe/London", ""} {
								in := Input{API: "native", Stage: stage, Tenant: tb[0], Brand: tb[1], Channel: channel,
									Category: category, Purpose: purpose, Placeholders: []string{"first_name"}, FromDomain: "example.com"}
								if stage == "send" {
									in.Subject = &Subject{Pseudonym: "p", Country: country, Timezone: tz, Addressable: true,
										Consents: map[string]bool{"marketing_" + channel: country != "FR"}}
								}
								inputs = append(inputs, in)
							}
						}
					}
				}
			}
		}
	}
	for round := range 2 { // the second round finds every value remembered
		for i, in := range inputs {
			d1, err1 := e.Decide(context.Background(), in)
			d2, err2 := plain.Decide(context.Background(), in)
			if (err1 == nil) != (err2 == nil) || d1.Allow != d2.Allow || !slices.Equal(d1.Reasons, d2.Reasons) || !reflect.DeepEqual(d1.Obligations, d2.Obligations) {
				t.Fatalf("round %d input %d %+v:\nremembered %v %q %v %v\nfresh      %v %q %v %v", round, i, in,
					d1.Allow, d1.Reasons, d1.Obligations, err1, d2.Allow, d2.Reasons, d2.Obligations, err2)
			}
		}
	}
}

// A rule is remembered only if it provably reads nothing but the input
// parts its key holds.
func TestMemoOnlyForRulesWithKnownInputs(t *testing.T) {
	const head = "package blindpost.gateway\n\ndecision := {\"allow\": count(message_deny) == 0, \"reasons\": sort(message_deny), \"obligations\": {}}\n\n"
	tests := []struct {
		name  string
		rules string
		want  map[string][]string // rule -> input paths; absent: not remembered
	}{
		{"keyed by what it reads",
			"settings := data.blindpost.settings[input.tenant]\n\nmessage_deny contains \"x\" if { input.channel == \"fax\"; settings.y }\n",
			map[string][]string{"decision": {"channel", "tenant"}, "settings": {"tenant"}, "message_deny": {"channel", "tenant"}}},
		{"through a function",
			"settings := 1\n\nf(x) if input.subject.country == x\n\nmessage_deny contains \"x\" if f(\"MT\")\n",
			map[string][]string{"decision": {"subject.country"}, "settings": nil, "message_deny": {"subject.country"}}},
		{"input read with a key known only at evaluation time",
			"settings := 1\n\nmessage_deny contains \"x\" if { some k; input[k] == 1 }\n",
			map[string][]string{"settings": nil}},
		{"the whole input",
			"settings := 1\n\nmessage_deny contains \"x\" if count(input) > 20\n",
			map[string][]string{"settings": nil}},
		{"with",
			"settings := 1\n\nmessage_deny contains \"x\" if { other with input.channel as \"sms\" }\n\nother if input.channel == \"sms\"\n",
			map[string][]string{"settings": nil}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := compile(context.Background(), fstest.MapFS{"p.rego": &fstest.MapFile{Data: []byte(head + tt.rules)}}, nil)
			if err != nil {
				t.Fatal(err)
			}
			got := map[string][]string{}
			for _, m := range c.memos {
				var paths []string
				for _, p := range m.paths {
					paths = append(paths, dotted(p))
				}
				got[dotted(m.ref[len(m.ref)-1:])] = paths
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("remembered %v, want %v", got, tt.want)
			}
		})
	}
}

func TestMemoIsBounded(t *testing.T) {
	e, err := New(context.Background(), BundleFS(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range maxMemoEntries + 10 {
		e.Decide(context.Background(), Input{API: "native", Stage: "accept", Tenant: fmt.Sprint("t", i), Brand: "b", Channel: "email", Category: "transactional", Purpose: "password_reset"})
	}
	for _, m := range e.cur.Load().memos {
		if n := len(m.vals); n > maxMemoEntries {
			t.Errorf("%v holds %d values", m.ref, n)
		}
	}
}

// dotted writes a ground reference of string keys as a.b.c.
func dotted(ref ast.Ref) string {
	parts := make([]string, len(ref))
	for i, t := range ref {
		s, _ := t.Value.(ast.String)
		parts[i] = string(s)
	}
	return strings.Join(parts, ".")
}
