package compat_test

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/blindpost/blindpost/gateway/compat"
)

func TestNewRefuses(t *testing.T) {
	valid := func() *compat.Tenant { return testTenants()[0] }
	tests := []struct {
		name    string
		tenants func() []*compat.Tenant
		acc     compat.Acceptor
		opts    compat.Options
		wantErr string
	}{
		{"nil acceptor", func() []*compat.Tenant { return testTenants() }, nil, compat.Options{}, "nil Acceptor"},
		{"no tenants", func() []*compat.Tenant { return nil }, &fakeAcceptor{}, compat.Options{}, "no tenant enables"},
		{"only disabled tenants", func() []*compat.Tenant { return testTenants()[2:] }, &fakeAcceptor{}, compat.Options{}, "no tenant enables"},
		{"nil tenant", func() []*compat.Tenant { return []*compat.Tenant{nil} }, &fakeAcceptor{}, compat.Options{}, "nil"},
		{"tenant without id", func() []*compat.Tenant { t := valid(); t.ID = ""; return []*compat.Tenant{t} }, &fakeAcceptor{}, compat.Options{}, "no id"},
		{"tenant twice", func() []*compat.Tenant { return []*compat.Tenant{valid(), valid()} }, &fakeAcceptor{}, compat.Options{}, "configured twice"},
		{"no secrets", func() []*compat.Tenant { t := valid(); t.Secrets = nil; return []*compat.Tenant{t} }, &fakeAcceptor{}, compat.Options{}, "no secrets"},
		{"short secret", func() []*compat.Tenant {
			t := valid()
			t.Secrets = [][]byte{[]byte("short-secret-15")}
			return []*compat.Tenant{t}
		}, &fakeAcceptor{}, compat.Options{}, "shorter than 16"},
		{"secret shared by two tenants", func() []*compat.Tenant {
			ts := testTenants()
			ts[1].Secrets = append(ts[1].Secrets, []byte(acmeSecret2))
			return ts
		}, &fakeAcceptor{}, compat.Options{}, `"beta": secret 1 is also configured`},
		{"no allowed IPs", func() []*compat.Tenant { t := valid(); t.AllowIPs = nil; return []*compat.Tenant{t} }, &fakeAcceptor{}, compat.Options{}, "allow_ips is empty"},
		{"invalid allowed prefix", func() []*compat.Tenant {
			t := valid()
			t.AllowIPs = []netip.Prefix{{}}
			return []*compat.Tenant{t}
		}, &fakeAcceptor{}, compat.Options{}, "allow_ips 0"},
		{"no callback prefixes", func() []*compat.Tenant { t := valid(); t.CallbackAllow = nil; return []*compat.Tenant{t} }, &fakeAcceptor{}, compat.Options{}, "callback_allow is empty"},
		{"http callback prefix off loopback", func() []*compat.Tenant {
			t := valid()
			t.CallbackAllow = []string{"http://cb.test/hooks"}
			return []*compat.Tenant{t}
		}, &fakeAcceptor{}, compat.Options{}, "callback_allow 0"},
		{"callback prefix with userinfo", func() []*compat.Tenant {
			t := valid()
			t.CallbackAllow = []string{"https://cb.test/ok", "https://u@cb.test/"}
			return []*compat.Tenant{t}
		}, &fakeAcceptor{}, compat.Options{}, "callback_allow 1"},
		{"callback prefix with query", func() []*compat.Tenant {
			t := valid()
			t.CallbackAllow = []string{"https://cb.test/hooks?x=1"}
			return []*compat.Tenant{t}
		}, &fakeAcceptor{}, compat.Options{}, "callback_allow 0"},
		{"callback prefix not absolute", func() []*compat.Tenant {
			t := valid()
			t.CallbackAllow = []string{"/hooks"}
			return []*compat.Tenant{t}
		}, &fakeAcceptor{}, compat.Options{}, "callback_allow 0"},
		{"invalid trusted proxy", func() []*compat.Tenant { return testTenants() }, &fakeAcceptor{},
			compat.Options{TrustedProxies: []netip.Prefix{{}}}, "trusted proxy 0"},
		{"negative body limit", func() []*compat.Tenant { return testTenants() }, &fakeAcceptor{},
			compat.Options{MaxBodyBytes: -1}, "MaxBodyBytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := compat.New(tt.tenants(), tt.acc, tt.opts)
			if err == nil {
				t.Fatal("New succeeded")
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q does not contain %q", err, tt.wantErr)
			}
			for _, s := range []string{acmeSecret, acmeSecret2, betaSecret, "short-secret-15"} {
				if strings.Contains(err.Error(), s) {
					t.Errorf("error %q contains a secret", err)
				}
			}
		})
	}
}

func TestNewNormalisesMappedPrefixes(t *testing.T) {
	ts := testTenants()
	ts[0].AllowIPs = []netip.Prefix{netip.MustParsePrefix("::ffff:203.0.113.0/120")}
	acc := &fakeAcceptor{}
	h, err := compat.New(ts, acc, compat.Options{})
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{h: h, acc: acc}
	if resp := f.do(t, req{remote: acmeIP, body: emailBody(nil)}); resp.ErrorCode != 0 {
		t.Fatalf("IPv4 client against an IPv4-mapped prefix: %+v", resp)
	}
	if resp := f.do(t, req{remote: otherIP, body: emailBody(nil)}); resp.ErrorCode != compat.CodeIPNotAllowed {
		t.Fatalf("client outside the mapped prefix: %+v", resp)
	}
}
