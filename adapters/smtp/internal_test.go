package smtp

import (
	"errors"
	"net"
	"testing"
)

func TestRedactRemovesRecipientInAnyCase(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"<Ada@Example.COM>: Recipient address rejected", "<<recipient>>: Recipient address rejected"},
		{"ada@example.com ada@example.com", "<recipient> <recipient>"},
		{"ok: queued as 4F2A1", "ok: queued as 4F2A1"},
		{"Grüße ADA@EXAMPLE.COM", "Grüße <recipient>"},
	} {
		if got := redact(tc.in, "ada@example.com"); got != tc.want {
			t.Errorf("redact(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestAuthOnlyOverTLSOrLoopback: credentials never go out in plain text to
// a host that is not loopback.
func TestAuthOnlyOverTLSOrLoopback(t *testing.T) {
	for _, tc := range []struct {
		addr net.Addr
		want bool
	}{
		{&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}, true},
		{&net.TCPAddr{IP: net.IPv6loopback}, true},
		{&net.TCPAddr{IP: net.IPv4(192, 0, 2, 1)}, false},
		{&net.TCPAddr{IP: net.ParseIP("2001:db8::1")}, false},
		{&net.UnixAddr{Name: "/tmp/x"}, false},
	} {
		if got := isLoopback(tc.addr); got != tc.want {
			t.Errorf("isLoopback(%v) = %v", tc.addr, got)
		}
	}
	s := NewSender(Config{Addr: "192.0.2.1:25", Username: "u", Password: "p"})
	if err := s.auth(nil, false, &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1)}); !errors.Is(err, ErrInsecureAuth) {
		t.Fatalf("auth to a remote host without TLS: %v, want ErrInsecureAuth", err)
	}
}
