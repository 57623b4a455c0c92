package daemon

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/smtpgate/smtpgate/pkg/buildinfo"
	"github.com/smtpgate/smtpgate/pkg/maincf"
)

// testSettings are the test service's settings: its one parameter of its
// own, read by Load.
type testSettings struct {
	host  string
	limit int64
}

func testService(runErr error, ran *bool) Service[testSettings] {
	return countedService(runErr, ran, new(int))
}

// countedService is testService counting its Loads in loads.
func countedService(runErr error, ran *bool, loads *int) Service[testSettings] {
	cat := maincf.NewCatalogue(append(maincf.Shared(),
		maincf.Def{Name: "smtpd_recipient_limit", Default: "1000", Owner: maincf.Edge, Check: maincf.CheckInt})...)
	return Service[testSettings]{
		Name:      "test",
		Owner:     maincf.Edge,
		Catalogue: cat,
		Load: func(cfg *maincf.Config, services []maincf.Service) (testSettings, error) {
			*loads++
			if err := cfg.Validate(maincf.Edge); err != nil {
				return testSettings{}, err
			}
			n, err := maincf.ParseInt(cfg.Get("smtpd_recipient_limit"))
			return testSettings{host: cfg.Get("myhostname"), limit: n}, err
		},
		Start: func(ctx context.Context, env Env[testSettings]) error {
			*ran = true
			env.Logger.InfoContext(ctx, "running", "host", env.Settings.host, "limit", env.Settings.limit)
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
		{"serve", []string{"-c", good}, nil, 0, true, "host=mail.example.org limit=1000"},
		{"serve fails", []string{"-c", good}, errors.New("boom"), 1, true, "boom"},
		{"serve refuses bad config", []string{"-c", bad}, nil, 1, false, "unknown parameter"},
		{"unknown command", []string{"-c", good, "frobnicate"}, nil, 2, false, "unknown command \"frobnicate\" (want check)\nusage: smtpgate-test [-c CONFIG_DIR] [check]\n"},
		{"check with extra", []string{"-c", good, "check", "x"}, nil, 2, false, "no arguments"},
		{"bad flag", []string{"-x"}, nil, 2, false, "usage: smtpgate-test [-c CONFIG_DIR] [check]\n       smtpgate-test frobnicate\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			ran, loads := false, 0
			svc := countedService(tc.runErr, &ran, &loads)
			svc.Usage = []string{"smtpgate-test frobnicate"}
			svc.Warnings = func(set testSettings) []string { return []string{"host is " + set.host} }
			code := Main(context.Background(), svc, tc.args, &out)
			if code != tc.code || ran != tc.ran || !strings.Contains(out.String(), tc.out) {
				t.Errorf("Main(%q) = %d ran=%v output:\n%s\nwant %d ran=%v containing %q", tc.args, code, ran, out.String(), tc.code, tc.ran, tc.out)
			}
			// The configuration is loaded once, whether to check or to
			// serve; a usage error loads nothing.
			if want := map[bool]int{true: 0, false: 1}[code == 2]; loads != want && !strings.Contains(tc.name, "missing") {
				t.Errorf("Main(%q) loaded the configuration %d times, want %d", tc.args, loads, want)
			}
		})
	}
}

// TestEnvReload: Env.Reload reads the configuration directory again and
// loads it as at start; a broken file is an error with its file:line.
func TestEnvReload(t *testing.T) {
	dir := t.TempDir()
	mainCF := filepath.Join(dir, "main.cf")
	if err := os.WriteFile(mainCF, []byte("myhostname = one.example.org\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var got []string
	svc := testService(nil, new(bool))
	svc.Start = func(ctx context.Context, env Env[testSettings]) error {
		for _, content := range []string{"myhostname = two.example.org\n", "myhostname = x\nsmtpd_recipient_limit = lots\n"} {
			if err := os.WriteFile(mainCF, []byte(content), 0o600); err != nil {
				return err
			}
			l, err := env.Reload()
			if err != nil {
				got = append(got, err.Error())
				continue
			}
			got = append(got, l.Settings.host+" "+l.Config.Get("myhostname"))
		}
		return nil
	}
	var out bytes.Buffer
	if code := Main(context.Background(), svc, []string{"-c", dir}, &out); code != 0 {
		t.Fatalf("Main = %d:\n%s", code, out.String())
	}
	if len(got) != 2 || got[0] != "two.example.org two.example.org" || !strings.Contains(got[1], "main.cf:2: smtpd_recipient_limit") {
		t.Errorf("reloads = %q, want the new myhostname, then an error at main.cf:2", got)
	}
}

// TestVersion: --version (and Go's -version) prints the build on stdout,
// as pkg/buildinfo reports it, without reading the configuration.
func TestVersion(t *testing.T) {
	want := buildinfo.Get().String("smtpgate-test")
	for _, args := range [][]string{{"--version"}, {"-version"}, {"-c", "/nonexistent", "--version"}} {
		var stdout, stderr bytes.Buffer
		ran, loads := false, 0
		svc := countedService(nil, &ran, &loads)
		svc.Stdout = &stdout
		if code := Main(context.Background(), svc, args, &stderr); code != 0 || ran || loads != 0 {
			t.Errorf("Main(%q) = %d ran=%v loads=%d, want 0, no start, no load; stderr:\n%s", args, code, ran, loads, stderr.String())
		}
		if stdout.String() != want || !strings.HasPrefix(want, "smtpgate-test, version ") {
			t.Errorf("Main(%q) printed %q, want %q", args, stdout.String(), want)
		}
	}
	var stdout, stderr bytes.Buffer
	svc := countedService(nil, new(bool), new(int))
	svc.Stdout = &stdout
	if code := Main(context.Background(), svc, []string{"--version", "check"}, &stderr); code != 2 || stdout.Len() != 0 {
		t.Errorf("--version check = %d, stdout %q; want 2 and nothing printed", code, stdout.String())
	}
}
