package edge

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/smtpgate/smtpgate/pkg/maincf"
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
	cfg, services, err := maincf.Load(maincf.Params(), dir)
	if err != nil {
		t.Fatal(err)
	}
	return cfg, services
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
		{"bad connection limit redis", "smtpgate_connection_limit_redis = redis://:s3cret@redis.example:port/0\n", "127.0.0.1:25 inet n - n - - smtpd\n", "main.cf:1: smtpgate_connection_limit_redis: not a valid redis:// or rediss:// URL (value not shown"},
		{"bad xclient hosts", "smtpd_authorized_xclient_hosts = 10.0.0.1/8\n", "127.0.0.1:25 inet n - n - - smtpd\n", "main.cf:1: smtpd_authorized_xclient_hosts: \"10.0.0.1/8\": non-null host address bits"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, services := load(t, tc.main, tc.master)
			err := Validate(cfg, services)
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "s3cret") {
				t.Errorf("Validate = %v, want %q", err, tc.want)
			}
		})
	}
	cfg, services := load(t, "myhostname = h.example\nsmtpgate_next_hop = lmtp://127.0.0.1:24\n", "127.0.0.1:25 inet n - n - - smtpd\n127.0.0.1:26 inet n - n - - smtpd -o message_size_limit=1000 -o disable_vrfy_command=no\n")
	if err := Validate(cfg, services); err != nil {
		t.Fatalf("valid configuration refused: %v", err)
	}
	ls, _, err := listeners(cfg, services)
	if err != nil || len(ls) != 2 {
		t.Fatalf("listeners = %v, %v", ls, err)
	}
	if ls[0].MaxMessageSize != 10240000 || !ls[0].DisableVRFY || ls[1].MaxMessageSize != 1000 || ls[1].DisableVRFY || ls[1].Banner != "h.example ESMTP smtpgate" || ls[0].NextHop.String() != "lmtp://127.0.0.1:24" {
		t.Errorf("listener settings = %+v / %+v", ls[0], ls[1])
	}
}
