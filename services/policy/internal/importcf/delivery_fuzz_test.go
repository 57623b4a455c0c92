package importcf

import (
	"net"
	"net/url"
	"strconv"
	"strings"
	"testing"
)

// FuzzRelayhost: any relayhost destination either translates to an
// smtp://host:port that smtpgate's next hop reads (a host and a port in
// range, MX lookup only for an unbracketed name), or is refused; never a
// panic.
func FuzzRelayhost(f *testing.F) {
	for _, s := range []string{"[relay.example.net]:587", "[relay.example.net]", "relay.example.net:2525", "example.net",
		"[ipv6:2001:db8::1]:25", "[192.0.2.1]", "192.0.2.1:25", "[relay]:submission", "[relay:25", "relay]:25", "[]:25",
		"relay:0", "relay:65536", "$relay", "[a]b", ":25", "relay:smtp:25"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, dest string) {
		rt, err := smtpRoute(dest)
		if err != nil {
			return
		}
		u, err := url.Parse(rt.spec)
		if err != nil || u.Scheme != "smtp" || u.Hostname() == "" || u.Path != "" || u.User != nil || u.RawQuery != "" {
			t.Fatalf("%q: %q is not smtp://host:port (%v)", dest, rt.spec, err)
		}
		if n, err := strconv.Atoi(u.Port()); err != nil || n <= 0 || n > 65535 {
			t.Fatalf("%q: port of %q", dest, rt.spec)
		}
		if strings.HasPrefix(dest, "[") && rt.mx {
			t.Fatalf("%q: bracketed but MX lookup", dest)
		}
		if rt.mx && net.ParseIP(u.Hostname()) != nil {
			t.Fatalf("%q: MX lookup of an address", dest)
		}
	})
}
