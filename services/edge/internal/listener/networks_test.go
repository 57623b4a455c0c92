package listener

import (
	"net/netip"
	"strings"
	"testing"
)

func TestNetworks(t *testing.T) {
	n, err := ParseNetworks([]string{"!127.0.0.2", "127.0.0.0/8", "[::1]/128", "[2001:db8::]/32", "192.0.2.7", "::ffff:198.51.100.0/120"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		ip   string
		want bool
	}{
		{"127.0.0.1", true},
		{"127.0.0.2", false}, // negated before the network
		{"::1", true},
		{"2001:db8:1::5", true},
		{"2001:db9::5", false},
		{"192.0.2.7", true},
		{"192.0.2.8", false},
		{"::ffff:127.0.0.1", true}, // IPv4-mapped matches as IPv4
		{"198.51.100.9", false},
		{"::ffff:198.51.100.9", true},
	} {
		if got := n.Contains(netip.MustParseAddr(tc.ip)); got != tc.want {
			t.Errorf("Contains(%s) = %v, want %v", tc.ip, got, tc.want)
		}
	}
	var empty *Networks
	if empty.Contains(netip.MustParseAddr("127.0.0.1")) || !empty.Empty() {
		t.Error("a nil list matches")
	}
}

func TestNetworksErrors(t *testing.T) {
	for _, tc := range []struct{ item, want string }{
		{"hash:/etc/postfix/network_table", "tables"},
		{"/etc/postfix/networks", "tables"},
		{"mx.example.com", "host names"},
		{"127.0.0.1/24", "non-null host address bits"},
		{"127.0.0.0/33", "bad network"},
	} {
		_, err := ParseNetworks([]string{tc.item})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: err = %v, want %q", tc.item, err, tc.want)
		}
	}
}
