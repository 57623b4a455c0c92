package maincf

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func mustParse(t *testing.T, text string) *File {
	t.Helper()
	f, err := Parse("main.cf", strings.NewReader(text))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return f
}

func TestParse(t *testing.T) {
	f := mustParse(t, `# comment
myhostname = mail.example.org
smtpd_relay_restrictions = permit_mynetworks,
    # a comment inside a continued value
	permit_sasl_authenticated
    reject_unauth_destination

mydestination=$myhostname
myhostname = last.example.org
`)
	got := f.Params()
	want := []Param{
		{Name: "myhostname", Value: "last.example.org", Pos: Pos{"main.cf", 9}},
		{Name: "smtpd_relay_restrictions", Value: "permit_mynetworks, permit_sasl_authenticated reject_unauth_destination", Pos: Pos{"main.cf", 3}},
		{Name: "mydestination", Value: "$myhostname", Pos: Pos{"main.cf", 8}},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("Params() mismatch (-want +got):\n%s", d)
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		name, text, want string
	}{
		{"missing equals", "a = b\nnoequals\n", "main.cf:2: missing '='"},
		{"leading continuation", "  indented = x\n", "main.cf:1: continuation line without"},
		{"bad name", "my host = x\n", `main.cf:1: bad parameter name "my host"`},
		{"nul byte", "a = b\x00c\n", "main.cf:1: NUL byte"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("main.cf", strings.NewReader(tc.text))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Parse error = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func testCatalogue() *Catalogue {
	return NewCatalogue(
		Def{Name: "myhostname", Default: "host.example", Owner: All},
		Def{Name: "mydomain", Default: "example", Owner: All},
		Def{Name: "mydestination", Default: "$myhostname, localhost.$mydomain", Owner: Policy, Listener: true},
		Def{Name: "smtpd_delay_reject", Default: "yes", Owner: Policy, Check: CheckBool, Listener: true},
		Def{Name: "smtpd_timeout", Default: "300s", Owner: Edge, Check: CheckDuration},
		Def{Name: "smtpd_restriction_classes", Owner: Policy, Listener: true},
		Def{Name: "opt", Default: "", Owner: Policy},
		Def{Name: "secret", Default: "", Owner: Auth, Secret: true},
	)
}

func TestExpand(t *testing.T) {
	f := mustParse(t, `myhostname = mail.example.org
opt = x
loop1 = $loop2
loop2 = ${loop1}
`)
	c := New(testCatalogue(), f, "/etc/smtpgate")
	for _, tc := range []struct {
		in, want, wantErr string
	}{
		{in: "$myhostname", want: "mail.example.org"},
		{in: "${myhostname}.", want: "mail.example.org."},
		{in: "$(mydomain)", want: "example"},
		{in: "$mydestination", want: "mail.example.org, localhost.example"},
		{in: "${opt?set}", want: "set"},
		{in: "${opt:empty}", want: ""},
		{in: "${secret?set}", want: ""},
		{in: "${secret:empty}", want: "empty"},
		{in: "${opt?{yes}:{no}}", want: "yes"},
		{in: "${secret?{yes}:{no}}", want: "no"},
		{in: "cost $5", want: "cost $5"},
		{in: "$nosuch", wantErr: "undefined parameter $nosuch"},
		{in: "$loop1", wantErr: "refers to itself"},
		{in: "${myhostname", wantErr: "missing"},
		// The forms of Postfix 3.0's mac_expand: white space around the
		// braces is ignored; an unbraced text is taken whole.
		{in: "${opt? {yes} : {no} }", want: "yes"},
		{in: "${secret? {yes} : {no} }", want: "no"},
		{in: "${opt?{yes}:no}", want: "yes"},
		{in: "${secret?{yes}:no}", want: "no"},
		{in: "${opt?{yes}}", want: "yes"},
		{in: "${secret?{yes}}", want: ""},
		{in: "${secret: {empty} }", want: "empty"},
		{in: "${opt?a:b}", want: "a:b"},
		{in: "${secret?a:b}", want: ""},
		{in: "${opt?{$myhostname}:{x}}s", want: "mail.example.orgs"},
		// Postfix before 3.0: ${name?x}${name:y}.
		{in: "${opt?10}${opt:300}s", want: "10s"},
		{in: "${secret?10}${secret:300}s", want: "300s"},
		{in: "${opt?{a}b}", wantErr: `":" expected`},
		{in: "${opt?{a}:{b}c}", wantErr: "unexpected input"},
		{in: "${opt?{a}:{b}", wantErr: "missing"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := c.ExpandString(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ExpandString(%q) error = %v, want %q", tc.in, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ExpandString(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
			}
		})
	}
}

// stressCatalogue has Postfix's stress-dependent smtpd_timeout.
func stressCatalogue() *Catalogue {
	return NewCatalogue(
		Def{Name: "smtpd_timeout", Default: "${stress?{10}:{300}}s", Owner: Edge, Check: CheckDuration, Listener: true, Stress: true},
		Def{Name: "smtpd_banner", Default: "x", Owner: Edge, Listener: true},
		Def{Name: "message_size_limit", Default: "1", Owner: Edge, Listener: true, Check: CheckInt},
		Def{Name: StressParam, Default: "", Owner: Edge, Listener: true, Check: CheckOneOf("", "yes")},
	)
}

// ${stress} is "yes" in UnderStress's view only; a listener's -o stress
// forces it; main.cf may not set it; only Def.Stress parameters may
// depend on it.
func TestStress(t *testing.T) {
	c := New(stressCatalogue(), mustParse(t, ""), "/x")
	if got := c.Duration("smtpd_timeout"); got != 300*time.Second {
		t.Errorf("smtpd_timeout = %v, want 300s", got)
	}
	if got := c.UnderStress().Duration("smtpd_timeout"); got != 10*time.Second {
		t.Errorf("smtpd_timeout under stress = %v, want 10s", got)
	}
	if err := c.Validate(Edge); err != nil {
		t.Errorf("Validate: %v", err)
	}
	for _, tc := range []struct {
		over   string
		forced bool
		want   time.Duration
	}{
		{"", false, 10 * time.Second},
		{"yes", true, 10 * time.Second},
		{"", true, 300 * time.Second},
	} {
		var over []Param
		if tc.forced {
			over = []Param{{Name: StressParam, Value: tc.over}}
		}
		lc := c.WithOverrides(over)
		if lc.StressForced() != tc.forced {
			t.Errorf("-o stress=%q forced=%v: StressForced() = %v", tc.over, tc.forced, lc.StressForced())
		}
		if got := lc.UnderStress().Duration("smtpd_timeout"); got != tc.want {
			t.Errorf("-o stress=%q forced=%v: smtpd_timeout under stress = %v, want %v", tc.over, tc.forced, got, tc.want)
		}
	}
	for _, tc := range []struct{ name, text, want string }{
		{"set in main.cf", "stress = yes\n", "main.cf:1: stress: set by smtpgate-edge itself"},
		{"a parameter the edge reads once", "smtpd_banner = ${stress?{busy}:{idle}}\n",
			"main.cf:1: smtpd_banner: its value depends on $stress, which smtpgate applies only to smtpd_timeout"},
		{"indirectly", "message_size_limit = $mine\nmine = ${stress:1}${stress?2}\n",
			"main.cf:1: message_size_limit: its value depends on $stress"},
		{"bad under stress", "smtpd_timeout = ${stress?{x}:{300}}s\n", "main.cf:1: smtpd_timeout: under stress: want a time"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := New(stressCatalogue(), mustParse(t, tc.text), "/x").Validate(Edge)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Validate: %v, want %q", err, tc.want)
			}
		})
	}
	// On a listener that forces stress, the banner is one value.
	services, err := ParseMaster("master.cf", strings.NewReader(`25 inet n - n - - smtpd -o stress=yes -o smtpd_banner=${stress?{a}:{b}}
465 inet n - n - - smtpd -o smtpd_banner=${stress?{a}:{b}}
587 inet n - n - - smtpd -o stress=maybe
`))
	if err != nil {
		t.Fatal(err)
	}
	err = ValidateServices(c, services, Edge)
	for _, want := range []string{"service 465: -o smtpd_banner=${stress?{a}:{b}}: its value depends on $stress", `service 587: -o stress=maybe: want one of , yes`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ValidateServices: %v, want %q", err, want)
		}
	}
	if err != nil && strings.Contains(err.Error(), "service 25:") {
		t.Errorf("ValidateServices refused the listener that forces stress: %v", err)
	}
}

func TestValidate(t *testing.T) {
	f := mustParse(t, `myhostname = mail.example.org
smtpd_delay_reject = maybe
smtpd_timout = 10s
smtpd_restriction_classes = strict
strict = reject
`)
	c := New(testCatalogue(), f, "/etc/smtpgate")
	err := c.Validate(Policy)
	if err == nil {
		t.Fatal("Validate accepted a broken configuration")
	}
	msg := err.Error()
	for _, want := range []string{
		`main.cf:2: smtpd_delay_reject = maybe: want yes or no, got "maybe"`,
		`main.cf:3: unknown parameter "smtpd_timout" (did you mean smtpd_timeout?)`,
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("Validate error lacks %q; got:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "strict") {
		t.Errorf("restriction class reported as unknown:\n%s", msg)
	}
	// The edge does not read smtpd_delay_reject but still rejects the unknown name.
	err = c.Validate(Edge)
	if err == nil || strings.Contains(err.Error(), "smtpd_delay_reject") || !strings.Contains(err.Error(), "smtpd_timout") {
		t.Errorf("Validate(Edge) = %v; want only the unknown name", err)
	}
}

func TestMaster(t *testing.T) {
	text := `# listeners
127.0.0.1:2525 inet n - n - - smtpd
127.0.0.1:2587 inet n - n - - smtpd
  -o smtpd_delay_reject=no
  -o { mydestination = a, b }
  -o smtpd_restriction_classes=strict -o strict=reject
`
	services, err := ParseMaster("master.cf", strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	if len(services) != 2 || services[0].Name != "127.0.0.1:2525" || services[1].Pos.Line != 3 {
		t.Fatalf("services = %+v", services)
	}
	wantOver := []Param{
		{Name: "smtpd_delay_reject", Value: "no", Pos: Pos{"master.cf", 3}},
		{Name: "mydestination", Value: "a, b", Pos: Pos{"master.cf", 3}},
		{Name: "smtpd_restriction_classes", Value: "strict", Pos: Pos{"master.cf", 3}},
		{Name: "strict", Value: "reject", Pos: Pos{"master.cf", 3}},
	}
	if d := cmp.Diff(wantOver, services[1].Overrides); d != "" {
		t.Errorf("overrides mismatch (-want +got):\n%s", d)
	}
	c := New(testCatalogue(), mustParse(t, "smtpd_delay_reject = yes\n"), "/x")
	lc := c.WithOverrides(services[1].Overrides)
	if lc.Bool("smtpd_delay_reject") || !c.Bool("smtpd_delay_reject") {
		t.Error("override did not apply to the listener view only")
	}
	if got := lc.List("mydestination"); !cmp.Equal(got, []string{"a", "b"}) {
		t.Errorf("listener mydestination = %q", got)
	}
	if err := ValidateServices(c, services, Policy); err != nil {
		t.Errorf("ValidateServices: %v", err)
	}

	bad := "127.0.0.1:2525 inet n - n - - smtpd -o smtpd_timeout=5s -o smtpd_delay_reject=perhaps -o nosuch=1\n"
	services, err = ParseMaster("master.cf", strings.NewReader(bad))
	if err != nil {
		t.Fatal(err)
	}
	err = ValidateServices(c, services, All)
	for _, want := range []string{
		"master.cf:1: service 127.0.0.1:2525: -o smtpd_timeout: this parameter cannot be set per listener",
		`master.cf:1: service 127.0.0.1:2525: -o smtpd_delay_reject=perhaps: want yes or no`,
		"master.cf:1: service 127.0.0.1:2525: -o nosuch: unknown parameter",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ValidateServices error lacks %q; got %v", want, err)
		}
	}
}

func TestMasterErrors(t *testing.T) {
	for _, tc := range []struct{ text, want string }{
		{"smtp inet n - n - - smtpd -v\n", `master.cf:1: service smtp: unsupported argument "-v"`},
		{"smtp unix n - n - - smtpd\n", `type "unix" is not supported`},
		{"pickup inet n - n - - pickup\n", `command "pickup" is not supported`},
		{"smtp inet n - n\n", "want 8 fields"},
		{"smtp inet n - n - - smtpd\nsmtp inet n - n - - smtpd\n", "master.cf:2: duplicate service smtp/inet (first defined at master.cf:1)"},
		{"smtp inet n - n - - smtpd -o\n", "-o without name=value"},
		{"smtp inet n - n - - smtpd -o { a = b\n", "missing '}'"},
	} {
		_, err := ParseMaster("master.cf", strings.NewReader(tc.text))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseMaster(%q) error = %v, want %q", tc.text, err, tc.want)
		}
	}
}

func TestSplitList(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"a, b c,,d", []string{"a", "b", "c", "d"}},
		{"check_policy_service { inet:127.0.0.1:9, timeout=10s }, reject", []string{"check_policy_service { inet:127.0.0.1:9, timeout=10s }", "reject"}},
		{"inline:{ a=b, c=d } permit", []string{"inline:{ a=b, c=d }", "permit"}},
		{"", nil},
	} {
		if got := SplitList(tc.in); !cmp.Equal(got, tc.want) {
			t.Errorf("SplitList(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestValues(t *testing.T) {
	for in, want := range map[string]time.Duration{"10": 10 * time.Second, "10s": 10 * time.Second, "5m": 5 * time.Minute, "1h": time.Hour, "2d": 48 * time.Hour, "1w": 168 * time.Hour, "250ms": 250 * time.Millisecond} {
		if got, err := ParseDuration(in); err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "x", "-1s", "1y", "1.5s"} {
		if _, err := ParseDuration(in); err == nil {
			t.Errorf("ParseDuration(%q) accepted", in)
		}
	}
	for v, ok := range map[string]bool{"0": true, "67108864": true, "805306368": true, "67108863": false, "1": false, "-1": false, "x": false} {
		if err := CheckZeroOrAtLeast(64 << 20)(v); (err == nil) != ok {
			t.Errorf("CheckZeroOrAtLeast(64 MiB)(%q) = %v", v, err)
		}
	}
	if err := CheckReplyCode("4")("554"); err == nil {
		t.Error("CheckReplyCode(4) accepted 554")
	}
	if err := CheckReplyCode("45")("450"); err != nil {
		t.Errorf("CheckReplyCode(45)(450) = %v", err)
	}
	for _, in := range []string{"", "127.0.0.1:6060", "127.0.0.2:0", "[::1]:6060", "localhost:6060"} {
		if err := CheckLoopbackAddr(in); err != nil {
			t.Errorf("CheckLoopbackAddr(%q) = %v", in, err)
		}
	}
	for _, in := range []string{"0.0.0.0:6060", ":6060", "192.0.2.1:6060", "[::]:6060", "mail.example.org:6060", "127.0.0.1"} {
		if err := CheckLoopbackAddr(in); err == nil {
			t.Errorf("CheckLoopbackAddr(%q) accepted", in)
		}
	}
}

func TestLoadAndPaths(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "main.cf"), []byte("opt = rel/file\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c, services, err := Load(testCatalogue(), dir)
	if err != nil || services != nil {
		t.Fatalf("Load = %v, %v", services, err)
	}
	if got, want := c.Path("opt"), filepath.Join(dir, "rel/file"); got != want {
		t.Errorf("Path = %q, want %q", got, want)
	}
	if _, _, err := Load(testCatalogue(), filepath.Join(dir, "nope")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load of a missing dir = %v, want ErrNotExist", err)
	}
}

func TestEffectiveRedactsSecrets(t *testing.T) {
	c := New(testCatalogue(), mustParse(t, "secret = hunter2\n"), "/x")
	for _, p := range c.Effective(All) {
		if strings.Contains(p.Value, "hunter2") {
			t.Fatalf("Effective leaks %s = %s", p.Name, p.Value)
		}
	}
}

// TestShared checks the shared parameters: no duplicate names
// (NewCatalogue panics on one), every default expands and passes its own
// check. Each service's tests check the whole catalogue its command
// builds.
func TestShared(t *testing.T) {
	c := New(NewCatalogue(Shared()...), &File{params: map[string]Param{}}, "/etc/smtpgate")
	if err := c.Validate(All); err != nil {
		t.Fatalf("defaults do not validate:\n%v", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add("myhostname = a\n  continued\n# c\nb=$a ${a?x} $(a)\n")
	f.Add("x\n")
	f.Add(" =\n")
	f.Fuzz(func(t *testing.T, text string) {
		file, err := Parse("main.cf", strings.NewReader(text))
		if err != nil {
			return
		}
		c := New(testCatalogue(), file, "/x")
		for _, p := range file.Params() {
			_, _ = c.Expand(p.Name)
			_ = SplitList(p.Value)
		}
		_ = c.Validate(All)
	})
}

func FuzzParseMaster(f *testing.F) {
	f.Add("127.0.0.1:2587 inet n - n - - smtpd\n  -o a=b -o { c = d e }\n")
	f.Add("smtp inet n - n - - smtpd -o\n")
	f.Fuzz(func(t *testing.T, text string) {
		services, err := ParseMaster("master.cf", strings.NewReader(text))
		if err != nil {
			return
		}
		for _, s := range services {
			if s.Name == "" || s.Command != "smtpd" {
				t.Fatalf("accepted a bad service: %+v", s)
			}
		}
	})
}

// A Redis URL that fails its check is reported without its value, which
// may hold a password.
func TestRedisURLCheckHidesValue(t *testing.T) {
	cat := NewCatalogue(Def{Name: "smtpgate_connection_limit_redis", Owner: Edge, Secret: true, Check: CheckRedisURL})
	c := New(cat, mustParse(t, "smtpgate_connection_limit_redis = http://:hunter2@redis:6379\n"), "/x")
	err := c.Validate(Edge)
	if err == nil || !strings.Contains(err.Error(), "main.cf:1: smtpgate_connection_limit_redis = (value not shown): redis URL: want redis://") || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("Validate: %v", err)
	}
	for _, good := range []string{"redis://:hunter2@redis:6379/0", "rediss+sentinel://:hunter2@s1:26379,s2:26379/mymaster/1", "redis+cluster://:hunter2@c1:7000,c2:7000"} {
		ok := New(cat, mustParse(t, "smtpgate_connection_limit_redis = "+good+"\n"), "/x")
		if err := ok.Validate(Edge); err != nil {
			t.Errorf("a good URL: %v", err)
		}
	}
	for bad, why := range map[string]string{
		"redis+sentinel://:hunter2@s1:26379,s2:26379": "a sentinel URL needs the master name",
		"redis+cluster://:hunter2@c1:7000,c2/0":       "host 2 of 2: want host:port",
		"rediss+cluster://:hunter2@c1:7000?hunter2=1": "unknown or repeated query parameter",
	} {
		c := New(cat, mustParse(t, "\nsmtpgate_connection_limit_redis = "+bad+"\n"), "/x")
		err := c.Validate(Edge)
		if err == nil || !strings.Contains(err.Error(), "main.cf:2: smtpgate_connection_limit_redis = (value not shown): redis URL: ") ||
			!strings.Contains(err.Error(), why) || strings.Contains(err.Error(), "hunter2") {
			t.Errorf("Validate(%s): %v, want %q", bad, err, why)
		}
	}
}

// FuzzExpand expands any value with ${stress} empty and "yes": no panic,
// and the same answer twice.
func FuzzExpand(f *testing.F) {
	for _, v := range []string{"${stress?{10}:{300}}s", "${stress?10}${stress:300}s", "${stress? {1} : {20} }",
		"${stress?{a}:b}", "${stress:{x}}", "${stress?{{a}}:{$(stress)}}", "${stress?{a}b}", "${stress?{a", "$stress${"} {
		f.Add(v)
	}
	f.Fuzz(func(t *testing.T, v string) {
		c := New(stressCatalogue(), &File{params: map[string]Param{"smtpd_banner": {Name: "smtpd_banner", Value: v}}}, "/x")
		for _, view := range []*Config{c, c.UnderStress()} {
			got, err := view.Expand("smtpd_banner")
			again, err2 := view.Expand("smtpd_banner")
			if got != again || (err == nil) != (err2 == nil) {
				t.Fatalf("Expand(%q) = %q, %v then %q, %v", v, got, err, again, err2)
			}
		}
		_ = c.Validate(Edge)
	})
}

// Typed reports a bad value once (by the catalogue's check when it has one,
// else by Typed, with file:line) and a name the catalogue does not know.
func TestTyped(t *testing.T) {
	cat := NewCatalogue(Def{Name: "checked", Default: "1", Owner: Edge, Check: CheckInt}, Def{Name: "unchecked", Default: "1", Owner: Edge})
	c := New(cat, mustParse(t, "checked = many\nunchecked = lots\n"), "/x")
	if _, err := Typed(c, "checked", ParseInt); err != nil {
		t.Errorf("checked: %v, want nil (Validate reports it)", err)
	}
	if err := c.Validate(Edge); err == nil || !strings.Contains(err.Error(), "main.cf:1: checked = many") {
		t.Errorf("Validate: %v", err)
	}
	if _, err := Typed(c, "unchecked", ParseInt); err == nil || !strings.Contains(err.Error(), "main.cf:2: unchecked") {
		t.Errorf("unchecked: %v, want an error at main.cf:2", err)
	}
	if _, err := Typed(c, "uncheked", ParseInt); err == nil || !strings.Contains(err.Error(), "uncheked is not a parameter") {
		t.Errorf("misspelt name: %v", err)
	}
	if n, err := Typed(New(cat, mustParse(t, ""), "/x"), "unchecked", ParseInt); n != 1 || err != nil {
		t.Errorf("default: %d, %v", n, err)
	}
}

func TestFlatten(t *testing.T) {
	a, b, c := errors.New("a"), errors.New("b"), errors.New("c")
	got := Flatten(errors.Join(a, errors.Join(b, nil, c)))
	if len(got) != 3 || got[0] != a || got[1] != b || got[2] != c {
		t.Errorf("Flatten = %v, want a, b, c", got)
	}
	if Flatten(nil) != nil || len(Flatten(a)) != 1 {
		t.Errorf("Flatten(nil) = %v, Flatten(a) = %v", Flatten(nil), Flatten(a))
	}
}
