package compat_test

import (
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/blindpost/blindpost/gateway/compat"
)

func TestCallbackAllowed(t *testing.T) {
	tenant := &compat.Tenant{CallbackAllow: []string{
		"https://cb.test/hooks",
		"https://api.example.com:8443/v1/status/",
		"https://root.example.com",
		"http://127.0.0.1:8080/cb",
		"http://[::1]/local",
	}}
	tests := []struct {
		url  string
		want bool
	}{
		{"https://cb.test/hooks", true},
		{"https://cb.test/hooks/", true},
		{"https://cb.test/hooks/x", true},
		{"https://cb.test/hooks/x/y?token=abc", true},
		{"https://cb.test/hooks?x=1", true},
		{"https://CB.Test/hooks/x", true},
		{"HTTPS://cb.test/hooks/x", true},
		{"https://cb.test:443/hooks/x", true},
		{"https://cb.test/hooksevil", false},
		{"https://cb.test/hook", false},
		{"https://cb.test/", false},
		{"https://cb.test", false},
		{"https://cb.test/Hooks/x", false},
		{"http://cb.test/hooks/x", false},
		{"https://cb.test:8443/hooks/x", false},
		{"https://cb.test:0443/hooks/x", false},
		{"https://cb.test.evil.example/hooks", false},
		{"https://evil.example/cb.test/hooks", false},
		{"https://cb.test./hooks", false},
		{"https://user@cb.test/hooks/x", false},
		{"https://user:pw@cb.test/hooks/x", false},
		{"https://cb.test@evil.example/hooks/x", false},
		{"https://cb.test/hooks/x#frag", false},
		{"https://cb.test/hooks/x#", false},
		{"https://cb.test/hooks/../admin", false},
		{"https://cb.test/hooks/./x", false},
		{"https://cb.test/hooks/%2e%2e/admin", false},
		{"https://cb.test/hooks%2fevil", false},
		{"https://cb.test/hooks%2Fx", false},
		{"https://cb.test/hooks\\x", false},
		{"https://cb%2eexample.com/hooks/x", false},
		{"https://cb.test/hooks/a b", false},
		{"https://cb.test/hooks/\u00e9", false},
		{"//cb.test/hooks/x", false},
		{"/hooks/x", false},
		{"cb.test/hooks/x", false},
		{"https:cb.test/hooks/x", false},
		{"ftp://cb.test/hooks/x", false},
		{"https://api.example.com:8443/v1/status", true},
		{"https://api.example.com:8443/v1/status/42", true},
		{"https://api.example.com/v1/status/42", false},
		{"https://api.example.com:8443/v1/statuses", false},
		{"https://root.example.com", true},
		{"https://root.example.com/", true},
		{"https://root.example.com/any/path", true},
		{"http://root.example.com/any/path", false},
		{"http://127.0.0.1:8080/cb/x", true},
		{"http://127.0.0.1:8081/cb/x", false},
		{"https://127.0.0.1:8080/cb/x", false},
		{"http://localhost:8080/cb/x", false},
		{"http://[::1]/local/x", true},
		{"http://[::1]:80/local", true},
		{"", false},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			if got := compat.CallbackAllowed(tenant, tt.url); got != tt.want {
				t.Errorf("CallbackAllowed(%q) = %v, want %v", tt.url, got, tt.want)
			}
		})
	}
	if compat.CallbackAllowed(nil, "https://cb.test/hooks") {
		t.Error("nil tenant allowed a URL")
	}
	broken := &compat.Tenant{CallbackAllow: []string{"http://cb.test/hooks", "https://u@cb.test/"}}
	if compat.CallbackAllowed(broken, "http://cb.test/hooks/x") || compat.CallbackAllowed(broken, "https://cb.test/x") {
		t.Error("an invalid prefix matched")
	}
}

// The handler applies the same check as CallbackAllowed, and refuses
// rather than accepting without callbacks.
func TestCallbackURLThroughHandler(t *testing.T) {
	tenant := testTenants()[0]
	for _, u := range []string{
		"https://cb.test/hooks/x", "https://cb.test/hooksevil", "http://cb.test/hooks",
		"https://cb.test:8443/hooks", "https://u@cb.test/hooks", "http://127.0.0.1:8080/cb/1",
	} {
		t.Run(u, func(t *testing.T) {
			f := newFixture(t, compat.Options{})
			resp := f.do(t, req{body: emailBody(func(m map[string]any) { m["callback_url"] = u })})
			allowed := compat.CallbackAllowed(tenant, u)
			if allowed != (resp.ErrorCode == 0) || !allowed && resp.ErrorCode != compat.CodeCallbackNotAllowed {
				t.Fatalf("CallbackAllowed %v but answer %+v", allowed, resp)
			}
			if !allowed && len(f.acc.Calls()) != 0 {
				t.Fatal("refused callback_url reached the Acceptor")
			}
		})
	}
}

func TestCallbackBody(t *testing.T) {
	at := time.Date(2026, 11, 26, 6, 0, 0, 123_000_000, time.UTC)
	tests := []struct {
		name string
		s    compat.Status
		want string
	}{
		{"email sent", compat.Status{ExtMessageID: "bpm_abc", UID: "e-0001", Channel: "email", Status: "sent", Time: at},
			`{"ext_message_id":"bpm_abc","email_uid":"e-0001","status":"sent","reason":"","timestamp":1795672800123}`},
		{"email bounced", compat.Status{ExtMessageID: "bpm_abc", UID: "e-0001", Channel: "email", Status: "bounced", Reason: "smtp_550", Time: at},
			`{"ext_message_id":"bpm_abc","email_uid":"e-0001","status":"bounced","reason":"smtp_550","timestamp":1795672800123}`},
		{"sms denied with reasons", compat.Status{ExtMessageID: "bpm_def", UID: "s-0001", Channel: "sms", Status: "denied", Reason: "opted_out,quiet_hours", Time: at},
			`{"ext_message_id":"bpm_def","im_uid":"s-0001","status":"denied","reason":"opted_out,quiet_hours","timestamp":1795672800123}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := compat.CallbackBody(tt.s)
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tt.want {
				t.Errorf("body\n got %s\nwant %s", b, tt.want)
			}
		})
	}
	ok := compat.Status{ExtMessageID: "bpm_abc", UID: "e-0001", Channel: "email", Status: "sent", Time: at}
	bad := []struct {
		name   string
		mutate func(s *compat.Status)
	}{
		{"no ext id", func(s *compat.Status) { s.ExtMessageID = "" }},
		{"no uid", func(s *compat.Status) { s.UID = "" }},
		{"uid with an address", func(s *compat.Status) { s.UID = "canary@example.com\n" }},
		{"unknown channel", func(s *compat.Status) { s.Channel = "push" }},
		{"empty status", func(s *compat.Status) { s.Status = "" }},
		{"status with upper case", func(s *compat.Status) { s.Status = "Sent" }},
		{"reason with an address", func(s *compat.Status) { s.Reason = "rejected canary@example.com" }},
		{"reason with a phone number", func(s *compat.Status) { s.Reason = "+15550100001" }},
		{"zero time", func(s *compat.Status) { s.Time = time.Time{} }},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			s := ok
			tt.mutate(&s)
			b, err := compat.CallbackBody(s)
			if err == nil {
				t.Fatalf("body %s, want an error", b)
			}
			if strings.Contains(err.Error(), "canary") || strings.Contains(err.Error(), "+1555") {
				t.Fatalf("error %q echoes a value", err)
			}
		})
	}
}

// FuzzCallbackAllowed checks that whatever CallbackAllowed accepts, the
// standard library's URL parser (which the gateway's HTTP client uses)
// reads as a URL on an allowed host, port and path, without userinfo or
// fragment.
func FuzzCallbackAllowed(f *testing.F) {
	for _, s := range []string{
		"https://cb.test/hooks/x", "https://cb.test/hooksevil", "https://u@cb.test/hooks",
		"https://cb.test:443/hooks/%2e%2e/x", "https://cb.test/hooks/x?y=1#z", "http://127.0.0.1:8080/cb/a",
		"https://[::1]/hooks", "HTTPS://CB.EXAMPLE.COM/hooks/a/../b", "https://cb.test\\@evil.example/hooks",
	} {
		f.Add(s)
	}
	tenant := &compat.Tenant{CallbackAllow: []string{"https://cb.test/hooks", "http://127.0.0.1:8080/cb"}}
	f.Fuzz(func(t *testing.T, raw string) {
		if !compat.CallbackAllowed(tenant, raw) {
			return
		}
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatalf("allowed but does not parse: %v", err)
		}
		if u.User != nil || u.Fragment != "" || u.RawFragment != "" {
			t.Fatalf("allowed with userinfo or fragment: %q", raw)
		}
		host, port, path := strings.ToLower(u.Hostname()), u.Port(), u.Path
		switch {
		case u.Scheme == "https" && host == "cb.test" && (port == "" || port == "443"):
			if path != "/hooks" && !strings.HasPrefix(path, "/hooks/") {
				t.Fatalf("allowed path %q", path)
			}
		case u.Scheme == "http" && host == "127.0.0.1" && port == "8080":
			if path != "/cb" && !strings.HasPrefix(path, "/cb/") {
				t.Fatalf("allowed path %q", path)
			}
		default:
			t.Fatalf("allowed %q: scheme %q host %q port %q", raw, u.Scheme, host, port)
		}
		if strings.Contains(path, "/../") || strings.HasSuffix(path, "/..") {
			t.Fatalf("allowed dot segments: %q", raw)
		}
	})
}
