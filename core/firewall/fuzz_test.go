package firewall_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/blindpost/blindpost/core/event"
	"github.com/blindpost/blindpost/core/firewall"
)

// FuzzCheck decodes an event as the pipeline does and checks the
// firewall's promises on it: it never panics; reject mode changes nothing;
// strip mode reports what reject mode reports; and what strip mode keeps,
// checked again, holds no payload violation. The corpora seed it.
func FuzzCheck(f *testing.F) {
	for _, dir := range []string{"legit", "pii"} {
		files, _ := filepath.Glob(filepath.Join("testdata", dir, "*.json"))
		for _, name := range files {
			b, err := os.ReadFile(name)
			if err != nil {
				f.Fatal(err)
			}
			if dir == "pii" {
				var c struct{ Event json.RawMessage }
				if err := json.Unmarshal(b, &c); err != nil {
					f.Fatal(err)
				}
				b = c.Event
			}
			f.Add(b)
		}
	}
	fw := firewall.New(firewall.Options{})
	f.Fuzz(func(t *testing.T, raw []byte) {
		ev, err := event.Decode(raw)
		if err != nil {
			return
		}
		before, _ := json.Marshal(ev)
		rejected, reject := fw.Check(&ev, firewall.Reject)
		if after, _ := json.Marshal(ev); string(after) != string(before) {
			t.Fatal("reject mode changed the event")
		}
		if reject != (len(rejected) > 0) {
			t.Fatalf("reject mode: reject = %v with %d violations", reject, len(rejected))
		}

		stripped, _ := fw.Check(&ev, firewall.Strip)
		if len(stripped) != len(rejected) {
			t.Fatalf("strip mode found %d violations, reject mode %d", len(stripped), len(rejected))
		}
		for i := range stripped {
			if len(stripped) == firewall.MaxViolations {
				break // which ones are reported then depends on map order
			}
			if stripped[i] != rejected[i] {
				t.Fatalf("strip mode found %v, reject mode %v", stripped[i], rejected[i])
			}
		}
		again, _ := fw.Check(&ev, firewall.Reject)
		for _, v := range again {
			if strings.HasPrefix(v.Path, "payload") {
				t.Fatalf("strip mode left %v", v)
			}
		}
	})
}

// FuzzValue puts one string everywhere a payload can hold it — a value,
// an array element, a key, the value of a PII-named key, a nested generic
// key — and checks the same promises as FuzzCheck.
func FuzzValue(f *testing.F) {
	for _, s := range []string{"canary@example.com", "+1 (555) 010-0199", "020 7946 0958", "4111 1111 1111 1111",
		"GB82 WEST 1234 5698 7654 32", "1718000000006", "1500.00", "tok_email_v1_ydpp5ufegl5vjmakoadzk5b56cuiiuzb",
		"canary (at) example (dot) com", "Book of Ra", "10FREE_SPIN_IN_GOLDEN_SLOT", "", "é@é.éé", "+(1"} {
		f.Add(s)
	}
	fw := firewall.New(firewall.Options{})
	f.Fuzz(func(t *testing.T, s string) {
		mk := func() event.Event {
			return event.Event{EID: "e", EventDate: 1, Brand: "b", User: "u", Type: "t", Payload: map[string]any{
				"v": s, "list": []any{"x", s, json.Number("1")}, s: true, "email": s,
				"contact": map[string]any{"name": s, s: []any{s}},
			}}
		}
		ev := mk()
		rejected, reject := fw.Check(&ev, firewall.Reject)
		if reject != (len(rejected) > 0) {
			t.Fatalf("reject = %v with %d violations", reject, len(rejected))
		}
		// A string the detectors recognise is never written in a path,
		// even where it is a key. (Other keys are: they are names.)
		detected := slices.ContainsFunc(rejected, func(v firewall.Violation) bool {
			return v.Path == "payload.v" && v.Reason != firewall.ReasonPIIProperty
		})
		for _, v := range rejected {
			if detected && strings.Contains(v.Path, s) {
				t.Fatalf("path %q holds the value", v.Path)
			}
		}
		stripped, reject := fw.Check(&ev, firewall.Strip)
		if reject || len(stripped) != len(rejected) {
			t.Fatalf("strip mode: %v, reject %v; reject mode: %v", stripped, reject, rejected)
		}
		if again, _ := fw.Check(&ev, firewall.Reject); len(again) != 0 {
			t.Fatalf("strip mode left %v", again)
		}
	})
}
