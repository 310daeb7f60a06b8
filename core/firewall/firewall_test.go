package firewall_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/blindpost/blindpost/core/event"
	"github.com/blindpost/blindpost/core/firewall"
)

// piiCase is one file of testdata/pii: an event, the violations the
// firewall must report (in either mode, sorted by path), what is left of
// the payload in strip mode, and whether strip mode must still refuse it.
type piiCase struct {
	Event           json.RawMessage      `json:"event"`
	Violations      []firewall.Violation `json:"violations"`
	StrippedPayload json.RawMessage      `json:"stripped_payload"`
	StripRejects    bool                 `json:"strip_rejects"`
}

// canaries are fragments of the fake PII values of testdata/pii. None
// appears elsewhere in those events, so none may survive strip mode.
var canaries = []string{"canary", "mctest", "@example", "5550100199", "555) 010", "7946 0958", "12 34 56 78",
	"0612345678", "4111", "5555", "3782", "gb82", "de89", "1990", "203.0.113", "testville", "c01x00t47",
	"9f86d081", "90210", "447700900123", "123456789", "51.5"}

func corpus(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", dir, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 40 {
		t.Fatalf("testdata/%s holds %d cases, want at least 40", dir, len(files))
	}
	out := make(map[string][]byte, len(files))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out[strings.TrimSuffix(filepath.Base(f), ".json")] = b
	}
	return out
}

func mustDecode(t *testing.T, raw []byte) event.Event {
	t.Helper()
	ev, err := event.Decode(raw)
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	return ev
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestLegitEventsPassUnchanged(t *testing.T) {
	fw := firewall.New(firewall.Options{})
	for name, raw := range corpus(t, "legit") {
		for _, mode := range []firewall.Mode{firewall.Reject, firewall.Strip} {
			t.Run(name+"/"+string(mode), func(t *testing.T) {
				ev := mustDecode(t, raw)
				before := mustJSON(t, ev)
				vs, reject := fw.Check(&ev, mode)
				if len(vs) != 0 || reject {
					t.Fatalf("Check = %v, reject %v; want no violations", vs, reject)
				}
				if after := mustJSON(t, ev); after != before {
					t.Fatalf("the event changed:\n%s\n%s", before, after)
				}
			})
		}
	}
}

func TestPIIEventsAreCaught(t *testing.T) {
	fw := firewall.New(firewall.Options{})
	for name, raw := range corpus(t, "pii") {
		var c piiCase
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&c); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(c.Violations) == 0 {
			t.Fatalf("%s: a PII case with no expected violation", name)
		}
		t.Run(name+"/reject", func(t *testing.T) {
			ev := mustDecode(t, c.Event)
			before := mustJSON(t, ev)
			vs, reject := fw.Check(&ev, firewall.Reject)
			if !reflect.DeepEqual(vs, c.Violations) {
				t.Errorf("violations = %v, want %v", vs, c.Violations)
			}
			if !reject {
				t.Error("reject mode kept the event")
			}
			if after := mustJSON(t, ev); after != before {
				t.Errorf("reject mode changed the event:\n%s\n%s", before, after)
			}
		})
		t.Run(name+"/strip", func(t *testing.T) {
			ev := mustDecode(t, c.Event)
			vs, reject := fw.Check(&ev, firewall.Strip)
			if !reflect.DeepEqual(vs, c.Violations) {
				t.Errorf("violations = %v, want %v", vs, c.Violations)
			}
			if reject != c.StripRejects {
				t.Errorf("strip mode: reject = %v, want %v", reject, c.StripRejects)
			}
			if c.StrippedPayload != nil {
				var want map[string]any
				d := json.NewDecoder(bytes.NewReader(c.StrippedPayload))
				d.UseNumber()
				if err := d.Decode(&want); err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(ev.Payload, want) {
					t.Errorf("stripped payload = %s, want %s", mustJSON(t, ev.Payload), mustJSON(t, want))
				}
			}
			// What strip mode kept is clean: checked again, only the
			// fields it cannot strip are left, and no canary survives.
			again, _ := fw.Check(&ev, firewall.Reject)
			for _, v := range again {
				if strings.HasPrefix(v.Path, "payload") {
					t.Errorf("after strip, still %v", v)
				}
			}
			payload := strings.ToLower(mustJSON(t, ev.Payload))
			for _, c := range canaries {
				if strings.Contains(payload, c) {
					t.Errorf("after strip, the payload still holds a canary %q", c)
				}
			}
		})
	}
}

// TestViolationsHoldNoValues checks, over the PII corpus, that what the
// firewall reports names fields and reasons only.
func TestViolationsHoldNoValues(t *testing.T) {
	fw := firewall.New(firewall.Options{})
	reasons := map[string]bool{firewall.ReasonEmail: true, firewall.ReasonPhone: true, firewall.ReasonCard: true,
		firewall.ReasonIBAN: true, firewall.ReasonPIIProperty: true}
	for name, raw := range corpus(t, "pii") {
		var c piiCase
		if err := json.Unmarshal(raw, &c); err != nil {
			t.Fatal(err)
		}
		ev := mustDecode(t, c.Event)
		vs, _ := fw.Check(&ev, firewall.Reject)
		for _, v := range vs {
			if !reasons[v.Reason] {
				t.Errorf("%s: reason %q is not one of the closed set", name, v.Reason)
			}
			p := strings.ToLower(v.Path)
			for _, c := range canaries {
				if strings.Contains(p, c) {
					t.Errorf("%s: path %q holds a canary", name, v.Path)
				}
			}
		}
	}
}

func TestParseMode(t *testing.T) {
	for in, want := range map[string]firewall.Mode{"reject": firewall.Reject, "strip": firewall.Strip} {
		if got, err := firewall.ParseMode(in); err != nil || got != want {
			t.Errorf("ParseMode(%q) = %q, %v", in, got, err)
		}
	}
	for _, in := range []string{"", "Reject", "STRIP", "allow", "off"} {
		if _, err := firewall.ParseMode(in); !errors.Is(err, firewall.ErrMode) {
			t.Errorf("ParseMode(%q): err = %v, want ErrMode", in, err)
		}
	}
}

func newEvent(payload map[string]any) event.Event {
	return event.Event{EID: "550e8400-e29b-41d4-a716-446655440000", EventDate: 1718000000000, Brand: "brand-1",
		User: "user-42", Type: event.TypeUpdateProfile, Payload: payload}
}

func TestUnknownModeFailsClosed(t *testing.T) {
	fw := firewall.New(firewall.Options{})
	for _, mode := range []firewall.Mode{"", "allow", "STRIP"} {
		ev := newEvent(map[string]any{"email": "canary@example.com"})
		vs, reject := fw.Check(&ev, mode)
		if !reject || len(vs) != 1 {
			t.Errorf("mode %q: %v, reject %v; want the event refused", mode, vs, reject)
		}
		if ev.Payload["email"] != "canary@example.com" {
			t.Errorf("mode %q stripped the event", mode)
		}
	}
}

func TestNilEventIsRejected(t *testing.T) {
	if _, reject := firewall.New(firewall.Options{}).Check(nil, firewall.Strip); !reject {
		t.Error("a nil event passed")
	}
}

func TestValueOfUnknownTypeIsRefused(t *testing.T) {
	fw := firewall.New(firewall.Options{})
	ev := newEvent(map[string]any{"ids": []string{"canary@example.com"}, "ok": float64(1718000000000), "card": float64(4111111111111111)})
	vs, reject := fw.Check(&ev, firewall.Strip)
	want := []firewall.Violation{{Path: "payload.card", Reason: firewall.ReasonCard}, {Path: "payload.ids", Reason: firewall.ReasonPIIProperty}}
	if !reflect.DeepEqual(vs, want) || reject {
		t.Fatalf("Check = %v, reject %v; want %v kept", vs, reject, want)
	}
	if _, ok := ev.Payload["ids"]; ok {
		t.Error("the unchecked value was kept")
	}
}

func TestOptions(t *testing.T) {
	fw := firewall.New(firewall.Options{PIIProperties: []string{"Telefono", "nachName"}, AllowProperties: []string{"street"}})
	ev := newEvent(map[string]any{
		"telefono":         "12345",         // added name
		"kunde_nachname":   "Canary",        // added name, as a suffix
		"street":           "Golden Slot 7", // allowed name
		"street_email_msg": "canary@example.com",
	})
	vs, _ := fw.Check(&ev, firewall.Reject)
	want := []firewall.Violation{
		{Path: "payload.kunde_nachname", Reason: firewall.ReasonPIIProperty},
		{Path: "payload.street_email_msg", Reason: firewall.ReasonEmail}, // values are still checked
		{Path: "payload.telefono", Reason: firewall.ReasonPIIProperty},
	}
	if !reflect.DeepEqual(vs, want) {
		t.Fatalf("Check = %v, want %v", vs, want)
	}
}

// TestConcurrentChecks shares one Firewall between goroutines: its pooled
// state must not leak from one Check into another (run with -race).
func TestConcurrentChecks(t *testing.T) {
	fw := firewall.New(firewall.Options{})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 200 {
				ev := newEvent(map[string]any{"email": "canary@example.com", "n": json.Number("1718000000000")})
				if g%2 == 0 {
					ev.Payload = map[string]any{"game_name": "Book of Ra"}
				}
				vs, reject := fw.Check(&ev, firewall.Reject)
				if g%2 == 0 && (len(vs) != 0 || reject) || g%2 == 1 && (len(vs) != 1 || vs[0].Path != "payload.email") {
					t.Errorf("goroutine %d: %v", g, vs)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// TestHostileEventIsBounded: a deep payload full of emails yields at most
// MaxViolations violations with paths of bounded depth, and strip mode
// still removes every email.
func TestHostileEventIsBounded(t *testing.T) {
	fw := firewall.New(firewall.Options{})
	mk := func() event.Event {
		list := make([]any, 1000)
		for i := range list {
			list[i] = "canary@example.com"
		}
		var v any = list
		for range 100 {
			v = map[string]any{"a": []any{v}}
		}
		return newEvent(map[string]any{"deep": v})
	}
	for _, mode := range []firewall.Mode{firewall.Reject, firewall.Strip} {
		ev := mk()
		vs, _ := fw.Check(&ev, mode)
		if len(vs) != firewall.MaxViolations {
			t.Errorf("%s: %d violations, want %d", mode, len(vs), firewall.MaxViolations)
		}
		for _, v := range vs {
			if !strings.HasSuffix(v.Path, "...") || strings.Count(v.Path, ".") > firewall.MaxPathDepth+4 {
				t.Fatalf("%s: path %q is not cut at depth %d", mode, v.Path, firewall.MaxPathDepth)
			}
		}
		if mode == firewall.Strip {
			if b := mustJSON(t, ev.Payload); strings.Contains(b, "canary") {
				t.Error("strip mode left emails beyond the reported ones")
			}
		}
	}
}
