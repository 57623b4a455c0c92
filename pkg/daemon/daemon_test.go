package daemon

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/smtpgate/smtpgate/pkg/maincf"
)

func testService(runErr error, ran *bool) Service {
	return Service{
		Name:  "test",
		Owner: maincf.Edge,
		Validate: func(cfg *maincf.Config, services []maincf.Service) error {
			return cfg.Validate(maincf.Edge)
		},
		Run: func(ctx context.Context, cfg *maincf.Config, _ []maincf.Service, log *slog.Logger) error {
			*ran = true
			log.InfoContext(ctx, "running", "host", cfg.Get("myhostname"))
			return runErr
		},
	}
}

func TestMain(t *testing.T) {
	good := t.TempDir()
	if err := os.WriteFile(filepath.Join(good, "main.cf"), []byte("myhostname = mail.example.org\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := t.TempDir()
	if err := os.WriteFile(filepath.Join(bad, "main.cf"), []byte("myhostname = x\nnosuch_parameter = 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		args   []string
		runErr error
		code   int
		ran    bool
		out    string
	}{
		{"check ok", []string{"-c", good, "check"}, nil, 0, false, "smtpgate-test: warning: host is mail.example.org\n"},
		{"check bad", []string{"-c", bad, "check"}, nil, 1, false, "main.cf:2: unknown parameter \"nosuch_parameter\""},
		{"missing dir", []string{"-c", filepath.Join(good, "nope"), "check"}, nil, 1, false, "main.cf"},
		{"serve", []string{"-c", good}, nil, 0, true, "host=mail.example.org"},
		{"serve fails", []string{"-c", good}, errors.New("boom"), 1, true, "boom"},
		{"serve refuses bad config", []string{"-c", bad}, nil, 1, false, "unknown parameter"},
		{"unknown command", []string{"-c", good, "frobnicate"}, nil, 2, false, "unknown command \"frobnicate\" (want check)\nusage: smtpgate-test [-c CONFIG_DIR] [check]\n"},
		{"check with extra", []string{"-c", good, "check", "x"}, nil, 2, false, "no arguments"},
		{"bad flag", []string{"-x"}, nil, 2, false, "usage: smtpgate-test [-c CONFIG_DIR] [check]\n       smtpgate-test frobnicate\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			ran := false
			svc := testService(tc.runErr, &ran)
			svc.Usage = []string{"smtpgate-test frobnicate"}
			svc.Warnings = func(cfg *maincf.Config) []string { return []string{"host is " + cfg.Get("myhostname")} }
			code := Main(context.Background(), svc, tc.args, &out)
			if code != tc.code || ran != tc.ran || !strings.Contains(out.String(), tc.out) {
				t.Errorf("Main(%q) = %d ran=%v output:\n%s\nwant %d ran=%v containing %q", tc.args, code, ran, out.String(), tc.code, tc.ran, tc.out)
			}
		})
	}
}

// TestEnvReload: Env.Reload reads the configuration directory again and
// validates it as at start; a broken file is an error with its file:line.
func TestEnvReload(t *testing.T) {
	dir := t.TempDir()
	mainCF := filepath.Join(dir, "main.cf")
	if err := os.WriteFile(mainCF, []byte("myhostname = one.example.org\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var got []string
	svc := testService(nil, new(bool))
	svc.Run = nil
	svc.Start = func(ctx context.Context, env Env) error {
		for _, content := range []string{"myhostname = two.example.org\n", "myhostname = x\nsmtpd_recipient_limit = lots\n"} {
			if err := os.WriteFile(mainCF, []byte(content), 0o600); err != nil {
				return err
			}
			cfg, _, err := env.Reload()
			if err != nil {
				got = append(got, err.Error())
				continue
			}
			got = append(got, cfg.Get("myhostname"))
		}
		return nil
	}
	var out bytes.Buffer
	if code := Main(context.Background(), svc, []string{"-c", dir}, &out); code != 0 {
		t.Fatalf("Main = %d:\n%s", code, out.String())
	}
	if len(got) != 2 || got[0] != "two.example.org" || !strings.Contains(got[1], "main.cf:2: smtpd_recipient_limit") {
		t.Errorf("reloads = %q, want the new myhostname, then an error at main.cf:2", got)
	}
}
