package edge

import (
	"strings"
	"testing"

	"github.com/smtpgate/smtpgate/services/edge/internal/maillog"
)

// TestMailLogSettings: maillog_file, its old name, syslog_name (also per
// listener), syslog_facility and smtpgate_syslog_socket as Load reads
// them, and their bad values refused with file:line.
func TestMailLogSettings(t *testing.T) {
	const master = "127.0.0.1:25 inet n - n - - smtpd\n127.0.0.1:587 inet n - n - - smtpd -o syslog_name=postfix/submission\n"
	for _, tc := range []struct {
		name, main string
		want       maillog.Destination
	}{
		{"defaults: syslog, as Postfix", "myhostname = h.example\n",
			maillog.Destination{Socket: "/dev/log", Name: "postfix", Facility: "mail", Host: "h.example"}},
		{"maillog_file", "myhostname = h.example\nmaillog_file = /var/log/smtpgate/mail.log\nsyslog_name = postfix-edge\nsyslog_facility = local3\nsmtpgate_syslog_socket = /run/log\n",
			maillog.Destination{File: "/var/log/smtpgate/mail.log", Socket: "/run/log", Name: "postfix-edge", Facility: "local3", Host: "h.example"}},
		{"old name", "myhostname = h.example\nsmtpgate_maillog_file = /var/log/old.log\n",
			maillog.Destination{File: "/var/log/old.log", Socket: "/dev/log", Name: "postfix", Facility: "mail", Host: "h.example"}},
		{"maillog_file wins", "myhostname = h.example\nsmtpgate_maillog_file = /var/log/old.log\nmaillog_file = /dev/stderr\n",
			maillog.Destination{File: "/dev/stderr", Socket: "/dev/log", Name: "postfix", Facility: "mail", Host: "h.example"}},
	} {
		cfg, services := load(t, tc.main, master)
		set, err := Load(cfg, services)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if set.mailLog != tc.want {
			t.Errorf("%s: %+v, want %+v", tc.name, set.mailLog, tc.want)
		}
		if a, b := set.listeners[0].l.SyslogName, set.listeners[1].l.SyslogName; a != "" || b != "postfix/submission" {
			t.Errorf("%s: listeners' syslog_name %q, %q; want \"\", postfix/submission", tc.name, a, b)
		}
	}
	for _, bad := range []string{"syslog_name = post fix\n", "syslog_facility = mailx\n", "syslog_name = a:b\n"} {
		cfg, services := load(t, "myhostname = h.example\n"+bad, master)
		_, err := Load(cfg, services)
		if err == nil || !strings.Contains(err.Error(), "main.cf:2: ") {
			t.Errorf("%q: got %v, want an error at main.cf:2", bad, err)
		}
	}
	cfg, services := load(t, "myhostname = h.example\n", "127.0.0.1:25 inet n - n - - smtpd -o syslog_name=bad[name]\n")
	if _, err := Load(cfg, services); err == nil || !strings.Contains(err.Error(), "master.cf:1") {
		t.Errorf("-o syslog_name=bad[name]: got %v, want an error at master.cf:1", err)
	}
}
