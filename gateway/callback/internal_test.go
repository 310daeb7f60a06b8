package callback

import (
	"net/netip"
	"testing"
)

func TestPublicAddrRefusesInternalRanges(t *testing.T) {
	tests := []struct {
		addr string
		want bool
	}{
		{"93.184.215.14", true},
		{"2606:4700:4700::1111", true},
		{"64:ff9b::5db8:d70e", true}, // NAT64 of a public address
		{"127.0.0.1", false},
		{"127.1.2.3", false},
		{"::1", false},
		{"10.1.2.3", false},
		{"172.16.0.1", false},
		{"172.31.255.255", false},
		{"192.168.1.1", false},
		{"fd00::1", false}, // ULA
		{"169.254.169.254", false},
		{"fe80::1", false},
		{"0.0.0.0", false},
		{"0.1.2.3", false},
		{"::", false},
		{"224.0.0.1", false},
		{"ff02::1", false},
		{"255.255.255.255", false},
		{"100.64.0.1", false}, // CGNAT
		{"100.127.255.254", false},
		{"::ffff:10.0.0.1", false}, // IPv4-mapped private
		{"64:ff9b::a00:1", false},  // NAT64 of 10.0.0.1
		{"64:ff9b::7f00:1", false}, // NAT64 of 127.0.0.1
		{"2002:7f00:1::1", false},  // 6to4 of 127.0.0.1
		{"fec0::1", false},         // site-local
		{"198.18.0.1", false},      // benchmarking
		{"192.0.0.170", false},     // IETF assignments (NAT64 discovery)
		{"172.32.0.1", true},       // just outside RFC 1918
		{"100.128.0.1", true},      // just outside CGNAT
	}
	for _, tt := range tests {
		if got := publicAddr(netip.MustParseAddr(tt.addr)); got != tt.want {
			t.Errorf("publicAddr(%s) = %v, want %v", tt.addr, got, tt.want)
		}
	}
}
