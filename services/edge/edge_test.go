package edge

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smtpgate/smtpgate/pkg/maincf"
	"github.com/smtpgate/smtpgate/services/edge/internal/smtpd"
)

// load writes main.cf and master.cf into a directory and loads them.
func load(t *testing.T, mainCF, masterCF string) (*maincf.Config, []maincf.Service) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "main.cf"), []byte(mainCF), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "master.cf"), []byte(masterCF), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, services, err := maincf.Load(Catalogue(), dir)
	if err != nil {
		t.Fatal(err)
	}
	return cfg, services
}

// listeners are the compiled listeners Load returns.
func listeners(main *maincf.Config, services []maincf.Service) ([]*smtpd.Listener, error) {
	set, err := Load(main, services)
	var ls []*smtpd.Listener
	for _, l := range set.listeners {
		ls = append(ls, l.l)
	}
	return ls, err
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name, main, master, want string
	}{
		{"no listeners", "myhostname = h.example\n", "", "no smtpd services"},
		{"wrapper without certificate", "myhostname = h.example\n", "127.0.0.1:2465 inet n - n - - smtpd\n  -o smtpd_tls_wrappermode=yes\n", "master.cf:1: service 127.0.0.1:2465: (default): smtpd_tls_cert_file: TLS is required"},
		{"missing certificate file", "smtpd_tls_cert_file = nosuch.pem\n", "127.0.0.1:25 inet n - n - - smtpd\n", "main.cf:1: smtpd_tls_cert_file: open"},
		{"bad next hop", "smtpgate_next_hop = ftp://x:1\n", "127.0.0.1:25 inet n - n - - smtpd\n", "main.cf:1: smtpgate_next_hop: next hop \"ftp://x:1\""},
		{"bad override", "myhostname = h.example\n", "127.0.0.1:25 inet n - n - - smtpd -o smtpd_tls_auth_only=maybe\n", "master.cf:1: service 127.0.0.1:25: -o smtpd_tls_auth_only=maybe: want yes or no"},
		{"bad proxy networks", "smtpgate_proxy_networks = lb.example\n", "127.0.0.1:25 inet n - n - - smtpd -o smtpd_upstream_proxy_protocol=haproxy\n", "main.cf:1: smtpgate_proxy_networks: \"lb.example\": not an address or network"},
		{"bad proxy protocol", "myhostname = h.example\n", "127.0.0.1:25 inet n - n - - smtpd -o smtpd_upstream_proxy_protocol=proxy\n", "smtpd_upstream_proxy_protocol=proxy"},
		{"bad connection limit redis", "smtpgate_connection_limit_redis = redis://:s3cret@redis.example:port/0\n", "127.0.0.1:25 inet n - n - - smtpd\n", "main.cf:1: smtpgate_connection_limit_redis: redis URL: want redis://"},
		{"bad xclient hosts", "smtpd_authorized_xclient_hosts = 10.0.0.1/8\n", "127.0.0.1:25 inet n - n - - smtpd\n", "main.cf:1: smtpd_authorized_xclient_hosts: \"10.0.0.1/8\": non-null host address bits"},
		{"reserves over the cap", "smtpgate_max_connections = 100\n", "127.0.0.1:25 inet n - n - - smtpd -o smtpgate_connection_reserve=60\n127.0.0.1:587 inet n - n - - smtpd -o smtpgate_connection_reserve=50\n",
			"master.cf:2: service 127.0.0.1:587: smtpgate_connection_reserve: the listeners' reserves add up to 110 (so far), more than smtpgate_max_connections = 100"},
		{"stress in main.cf", "stress = yes\n", "127.0.0.1:25 inet n - n - - smtpd\n", "main.cf:1: stress: set by smtpgate-edge itself"},
		{"stress in a setting read once", "smtpd_banner = ${stress?{busy}:{idle}}\n", "127.0.0.1:25 inet n - n - - smtpd\n", "main.cf:1: smtpd_banner: its value depends on $stress"},
		{"bad ipv4 prefix", "smtpgate_network_ipv4_prefix = 33\n", "127.0.0.1:25 inet n - n - - smtpd\n", "main.cf:1: smtpgate_network_ipv4_prefix = 33: want a whole number from 1 to 32"},
		{"bad stress threshold", "smtpgate_stress_threshold = 120\n", "127.0.0.1:25 inet n - n - - smtpd\n", "main.cf:1: smtpgate_stress_threshold = 120: want a percentage"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, services := load(t, tc.main, tc.master)
			err := validate(cfg, services)
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "s3cret") {
				t.Errorf("Validate = %v, want %q", err, tc.want)
			}
		})
	}
	cfg, services := load(t, "myhostname = h.example\nsmtpgate_next_hop = lmtp://127.0.0.1:24\n", "127.0.0.1:25 inet n - n - - smtpd\n127.0.0.1:26 inet n - n - - smtpd -o message_size_limit=1000 -o disable_vrfy_command=no\n")
	if err := validate(cfg, services); err != nil {
		t.Fatalf("valid configuration refused: %v", err)
	}
	ls, err := listeners(cfg, services)
	if err != nil || len(ls) != 2 {
		t.Fatalf("listeners = %v, %v", ls, err)
	}
	if ls[0].MaxMessageSize != 10240000 || !ls[0].DisableVRFY || ls[1].MaxMessageSize != 1000 || ls[1].DisableVRFY || ls[1].Banner != "h.example ESMTP smtpgate" || ls[0].NextHop.String() != "lmtp://127.0.0.1:24" {
		t.Errorf("listener settings = %+v / %+v", ls[0], ls[1])
	}
}

// The stress-dependent settings: Postfix's defaults give a listener its
// normal values and, in UnderStress, 10s and the limits of 1; a listener
// that forces stress (-o stress=yes, -o stress=) has one set of values.
func TestStressSettings(t *testing.T) {
	cfg, services := load(t, "myhostname = h.example\nsmtpd_soft_error_limit = ${stress?{2}:{10}}\n", `127.0.0.1:25 inet n - n - - smtpd
127.0.0.1:26 inet n - n - - smtpd -o stress=yes
127.0.0.1:587 inet n - n - - smtpd -o stress= -o smtpgate_connection_reserve=20 -o smtpgate_network_connection_count_limit=7
`)
	if err := validate(cfg, services); err != nil {
		t.Fatalf("valid configuration refused: %v", err)
	}
	ls, err := listeners(cfg, services)
	if err != nil {
		t.Fatal(err)
	}
	mx, forcedOn, forcedOff := ls[0], ls[1], ls[2]
	if mx.Timeout != 300*time.Second || mx.HardErrorLimit != 20 || mx.JunkCommandLimit != 100 || mx.SoftErrorLimit != 10 {
		t.Errorf("normal settings: %+v", mx)
	}
	want := smtpd.Adaptive{Timeout: 10 * time.Second, HardErrorLimit: 1, SoftErrorLimit: 2, ErrorSleep: time.Second, JunkCommandLimit: 1}
	if mx.UnderStress == nil || *mx.UnderStress != want {
		t.Errorf("under stress: %+v, want %+v", mx.UnderStress, want)
	}
	if forcedOn.UnderStress != nil || forcedOn.Timeout != 10*time.Second || forcedOn.HardErrorLimit != 1 {
		t.Errorf("-o stress=yes: %+v", forcedOn)
	}
	if forcedOff.UnderStress != nil || forcedOff.Timeout != 300*time.Second || forcedOff.ConnectionReserve != 20 || forcedOff.NetworkCountLimit != 7 {
		t.Errorf("-o stress=: %+v", forcedOff)
	}
	if mx.NetworkCountLimit != 100 || mx.IPv4Prefix != 24 || mx.IPv6Prefix != 64 || mx.ConnectionReserve != 0 {
		t.Errorf("network limit defaults: %+v", mx)
	}
	for _, tc := range []struct{ max, pct, want int }{{1000, 80, 800}, {0, 80, 0}, {1000, 0, 0}, {1, 50, 1}, {600, 100, 600}} {
		if got := stressAt(tc.max, tc.pct); got != tc.want {
			t.Errorf("stressAt(%d, %d) = %d, want %d", tc.max, tc.pct, got, tc.want)
		}
	}
}
