package passwdfile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const sample = `# users
john@example.org:{PLAIN}pw1::::::
jane@example.org:{SHA512-CRYPT}$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1:1000:1000::/home/jane::userdb_quota=1G

bare:{PLAIN}x
`

func TestParse(t *testing.T) {
	users, err := Parse("passwd", strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	if len(users) != 3 {
		t.Fatalf("got %d users, want 3", len(users))
	}
	if !users["jane@example.org"].Verify([]byte("Hello world!")) || !users["john@example.org"].Verify([]byte("pw1")) {
		t.Error("stored passwords do not verify")
	}
	if _, ok := users["JOHN@example.org"]; ok {
		t.Error("user names must be compared exactly")
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ text, want string }{
		{"john\n", "passwd:1: want user:{SCHEME}password"},
		{":{PLAIN}x\n", "passwd:1: want user"},
		{"# c\njohn:secret\n", "passwd:2: user john: password has no {SCHEME} prefix"},
		{"john:{OTP}x\n", "unknown password scheme"},
		{"john:{MD5}x\n", "passwd:1: user john: {MD5}: data is not valid base64"},
		{"a:{PLAIN}x\na:{PLAIN}y\n", "passwd:2: user a listed twice"},
	} {
		if _, err := Parse("passwd", strings.NewReader(tc.text)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%q) error = %v, want %q", tc.text, err, tc.want)
		}
	}
}

func TestReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "passwd")
	if err := os.WriteFile(path, []byte("a:{PLAIN}one\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	f.minCheck = 0
	if st, ok, _ := f.Lookup("a"); !ok || !st.Verify([]byte("one")) {
		t.Fatal("initial lookup failed")
	}
	later := time.Now().Add(2 * time.Second)
	if err := os.WriteFile(path, []byte("a:{PLAIN}two\nb:{PLAIN}three\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_ = os.Chtimes(path, later, later)
	if st, ok, err := f.Lookup("a"); !ok || !st.Verify([]byte("two")) || err != nil {
		t.Fatalf("after change: ok=%v err=%v, want the new password", ok, err)
	}
	// A broken file keeps the previous users and reports the problem.
	if err := os.WriteFile(path, []byte("broken line\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	later = later.Add(2 * time.Second)
	_ = os.Chtimes(path, later, later)
	st, ok, err := f.Lookup("b")
	if !ok || !st.Verify([]byte("three")) {
		t.Error("a broken reload dropped the previous users")
	}
	if err == nil || !strings.Contains(err.Error(), "passwd:1") && !strings.Contains(err.Error(), ":1:") {
		t.Errorf("reload error = %v, want one naming the line", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add(sample)
	f.Add("a:{PLAIN}\n")
	f.Add("a:{SHA256-CRYPT}$5$rounds=1000$x$\n")
	f.Fuzz(func(t *testing.T, text string) {
		users, err := Parse("passwd", strings.NewReader(text))
		if err != nil {
			return
		}
		for u := range users {
			if u == "" || strings.Contains(u, ":") {
				t.Fatalf("bad user name %q accepted", u)
			}
		}
	})
}
