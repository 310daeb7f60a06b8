package gateway_test

import (
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/blindpost/blindpost/envelope"
	"github.com/blindpost/blindpost/gateway"
	"github.com/blindpost/blindpost/internal/devenv"
	"github.com/blindpost/blindpost/policy"
)

func marketing(id, user string) envelope.Message {
	m := message(id, user)
	m.Category, m.Purpose = "marketing", "promotion"
	m.Subject, m.HTML, m.Text = "Free spins for {{pii.first_name}}", "<p>Hi {{pii.first_name}}</p>", "Hi {{pii.first_name}}"
	return m
}

// settings merges operator settings for the dev brand over the defaults.
func settings(brand map[string]any) map[string]any {
	brand["sender_domains"] = []any{"example.com"}
	return map[string]any{"blindpost": map[string]any{"tenants": map[string]any{
		devenv.Tenant: map[string]any{"brands": map[string]any{devenv.Brand: map[string]any{"settings": brand}}},
	}}}
}

// Frequency caps are reserved when a message is accepted, in the same
// transaction as the enqueue: the fourth marketing email in a week to one
// player is refused, even when all four arrive in one batch.
func TestFrequencyCapIsReservedAtAcceptance(t *testing.T) {
	r := newRig(t, devenv.Options{GatewayOptions: gateway.Options{PolicyData: settings(map[string]any{
		"frequency_caps": map[string]any{"marketing/email": map[string]any{"limit": 3, "window_seconds": 604800}},
	})}})
	r.put("u-1", alex())
	var msgs []envelope.Message
	for i := range 4 {
		msgs = append(msgs, marketing(fmt.Sprintf("cap-%d", i), "u-1"))
	}
	resp := r.send(msgs...)
	var ok, capped int
	for _, res := range resp.Results {
		switch {
		case res.Status == gateway.StatusAccepted:
			ok++
		case res.Code == "frequency_cap" || (res.Code == "denied" && contains(res.Message, "frequency_cap")):
			capped++
		default:
			t.Errorf("%s: %+v", res.ID, res)
		}
	}
	if ok != 3 || capped != 1 {
		t.Fatalf("accepted %d, capped %d; want 3 and 1", ok, capped)
	}
	// A later request is checked against the same counter.
	if res := r.send(marketing("cap-late", "u-1")).Results[0]; res.Status != gateway.StatusRejected {
		t.Fatalf("fifth message: %+v, want rejected", res)
	}
}

// Quiet hours defer marketing to the end of the night in the player's own
// time zone; the message waits in the queue and is not sent.
func TestQuietHoursDeferMarketingInThePlayersTimeZone(t *testing.T) {
	// 23:30 in Malta (CET, UTC+1 in January).
	night := time.Date(2027, 1, 15, 22, 30, 0, 0, time.UTC)
	r := newRig(t, devenv.Options{GatewayOptions: gateway.Options{Now: func() time.Time { return night }}})
	r.put("u-1", alex())
	s := r.sealer()
	s.Now = func() time.Time { return night }
	resp, err := r.post(r.seal(s, marketing("m-night", "u-1"), message("m-reset", "u-1")))
	if err != nil {
		t.Fatal(err)
	}
	accepted(t, resp)
	r.drain()
	// (The callbacks are signed at the test's fake time, which the
	// receiver rightly refuses as stale; the gateway's log tells.)
	logs := r.logs.String()
	if !contains(logs, `"msg":"message deferred","tenant":"dev","id":"m-night"`) || !contains(logs, `"reason":"defer_until"`) {
		t.Fatalf("marketing at night was not deferred:\n%s", logs)
	}
	if !contains(logs, `"msg":"message sent","tenant":"dev","id":"m-reset"`) {
		t.Fatalf("transactional at night was not sent (quiet hours are for marketing):\n%s", logs)
	}
	if n := r.env.Capture.Count(); n != 1 {
		t.Fatalf("SMTP server received %d mails, want only the transactional one", n)
	}
}

// The volume guard holds a tenant's traffic above the configured rate: the
// messages are kept (accepted) but not sent.
func TestVolumeGuardHoldsTrafficAboveTheRate(t *testing.T) {
	data := settings(map[string]any{})
	data["blindpost"].(map[string]any)["tenants"].(map[string]any)[devenv.Tenant].(map[string]any)["settings"] =
		map[string]any{"volume_guard": map[string]any{"max_per_minute": 2}}
	r := newRig(t, devenv.Options{GatewayOptions: gateway.Options{PolicyData: data}})
	r.put("u-1", alex())
	var msgs []envelope.Message
	for i := range 5 {
		msgs = append(msgs, message(fmt.Sprintf("vg-%d", i), "u-1"))
	}
	accepted(t, r.send(msgs...))
	r.drain()
	if n := r.env.Capture.Count(); n != 2 {
		t.Fatalf("SMTP server received %d mails, want 2 (the rest held)", n)
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

// A broken new bundle is refused on reload: the running bundle stays in
// force, messages are still decided, and the failure is counted for alerts.
func TestBrokenPolicyReloadKeepsTheRunningBundle(t *testing.T) {
	dir := t.TempDir()
	err := fs.WalkDir(policy.BundleFS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(policy.BundleFS(), p)
		if err != nil {
			return err
		}
		os.MkdirAll(filepath.Join(dir, filepath.Dir(p)), 0o700)
		return os.WriteFile(filepath.Join(dir, p), b, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
	r := newRig(t, devenv.Options{Gateway: func(c *gateway.Config) {
		c.Policy.Bundle, c.Policy.ReloadInterval = dir, gateway.Duration(20*time.Millisecond)
	}})
	r.put("u-1", alex())
	accepted(t, r.send(message("m-before", "u-1")))

	if err := os.WriteFile(filepath.Join(dir, "broken.rego"), []byte("package blindpost.gateway\n\ndecision := {"), 0o600); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !contains(r.metrics(), "blindpost_gateway_policy_reload_failures_total 1") {
		if time.Now().After(deadline) {
			t.Fatal("the broken bundle was not noticed")
		}
		time.Sleep(20 * time.Millisecond)
	}
	accepted(t, r.send(message("m-after", "u-1")))
	r.drain()
	if n := r.env.Capture.Count(); n != 2 {
		t.Fatalf("delivered %d, want 2", n)
	}
}

func (r *rig) metrics() string {
	resp, err := http.Get(r.in.AdminURL + "/metrics")
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
