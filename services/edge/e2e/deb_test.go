package e2e

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// unit is what a systemd unit file says about how to run its service.
type unit struct {
	execStart []string
	user      string
	group     string
	umask     string
}

// readUnit reads ExecStart=, User=, Group= and UMask= of an installed
// unit (the package's units have plain ExecStart lines: no quoting, no
// prefixes).
func readUnit(t *testing.T, path string) unit {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var u unit
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if !ok || strings.HasPrefix(k, "#") {
			continue
		}
		switch k {
		case "ExecStart":
			u.execStart = strings.Fields(v)
		case "User":
			u.user = v
		case "Group":
			u.group = v
		case "UMask":
			u.umask = v
		}
	}
	if len(u.execStart) == 0 || u.user == "" {
		t.Fatalf("%s: no ExecStart= or User=", path)
	}
	return u
}

// TestDebianPackage builds the Debian package (scripts/deb), installs it
// on this machine with dpkg -i, runs the installed binaries on the
// installed configuration as each unit's ExecStart line would (as the
// unit's User and Group, with its UMask; there is no systemd here), sends
// a relay attempt and a submission, then purges the package and checks
// that the purge removed the user, the state and log directories and
// /etc/smtpgate. It changes the machine (CI runs it as root): it refuses
// to run where smtpgate is installed or a user smtpgate exists, and purges
// even when it fails half-way.
func TestDebianPackage(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("TestDebianPackage installs a package: run it as root (scripts/test in CI is)")
	}
	// systemd-analyze: scripts/check-deploy installs systemd.
	for _, tool := range []string{"dpkg", "setpriv", "adduser", "openssl", "systemd-analyze"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed: %v", tool, err)
		}
	}
	if out, err := exec.Command("dpkg-query", "-W", "-f=${Status}", "smtpgate").Output(); err == nil && strings.Contains(string(out), "installed") {
		t.Fatalf("smtpgate is already installed on this machine (%s): not touching it", out)
	}
	if _, err := user.Lookup("smtpgate"); err == nil {
		t.Fatal("a user smtpgate exists on this machine: not touching it")
	}
	for _, p := range []string{"/etc/smtpgate", "/var/lib/smtpgate", "/var/log/smtpgate"} {
		if _, err := os.Stat(p); err == nil {
			t.Fatalf("%s exists on this machine: not touching it", p)
		}
	}
	reserveLocalPorts(t)
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}

	out := t.TempDir()
	build := exec.Command("scripts/deb", "-o", out)
	build.Dir = root
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("scripts/deb: %v\n%s", err, b)
	}
	debs, _ := filepath.Glob(filepath.Join(out, "smtpgate_*.deb"))
	if len(debs) != 1 {
		t.Fatalf("scripts/deb made %v, want one smtpgate_*.deb", debs)
	}
	// Reproducible: packaging the same binaries again, a second later,
	// gives the same bytes (file times from SOURCE_DATE_EPOCH).
	out2 := t.TempDir()
	again := exec.Command("scripts/deb", "-o", out2, "--bin", filepath.Join(out, "build"))
	again.Dir = root
	if b, err := again.CombinedOutput(); err != nil {
		t.Fatalf("scripts/deb --bin: %v\n%s", err, b)
	}
	first, err := os.ReadFile(debs[0])
	if err != nil {
		t.Fatal(err)
	}
	second, err := os.ReadFile(filepath.Join(out2, filepath.Base(debs[0])))
	if err != nil || !bytes.Equal(first, second) {
		t.Errorf("a second scripts/deb of the same binaries made a different %s (%v)", filepath.Base(debs[0]), err)
	}

	// Purged whatever happens (registered before the processes' stop, so
	// it runs after it).
	t.Cleanup(func() {
		if b, err := exec.Command("dpkg", "--purge", "smtpgate").CombinedOutput(); err != nil {
			t.Errorf("dpkg --purge smtpgate: %v\n%s", err, b)
		}
	})
	if b, err := exec.Command("dpkg", "-i", debs[0]).CombinedOutput(); err != nil {
		t.Fatalf("dpkg -i: %v\n%s", err, b)
	}

	// What dpkg and the postinst made.
	conffiles, err := exec.Command("dpkg-query", "-W", "-f=${Conffiles}", "smtpgate").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"/etc/smtpgate/main.cf", "/etc/smtpgate/master.cf", "/etc/logrotate.d/smtpgate", "/etc/fail2ban/jail.d/smtpgate.conf"} {
		if !strings.Contains(string(conffiles), f+" ") {
			t.Errorf("%s is not a conffile: %s", f, conffiles)
		}
	}
	u, err := user.Lookup("smtpgate")
	if err != nil {
		t.Fatalf("the package made no user smtpgate: %v", err)
	}
	if uid, _ := strconv.Atoi(u.Uid); uid >= 1000 || uid == 0 {
		t.Errorf("user smtpgate has uid %d, want a system user", uid)
	}
	passwd, _ := exec.Command("getent", "passwd", "smtpgate").Output()
	if !strings.HasSuffix(strings.TrimSpace(string(passwd)), ":/usr/sbin/nologin") {
		t.Errorf("user smtpgate: %s, want the shell /usr/sbin/nologin", passwd)
	}
	for path, mode := range map[string]os.FileMode{"/var/lib/smtpgate": 0o750, "/var/lib/smtpgate/maildir": 0o750,
		"/var/log/smtpgate": 0o750, "/etc/smtpgate/passwd": 0o640, "/etc/smtpgate/tls/key.pem": 0o640} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Errorf("after dpkg -i: %v", err)
			continue
		}
		if fi.Mode().Perm() != mode {
			t.Errorf("%s has mode %v, want %v", path, fi.Mode().Perm(), mode)
		}
	}
	// The package's units (User= instead of deploy/systemd's DynamicUser=)
	// as systemd reads them, sandboxed as well as deploy/systemd's
	// (scripts/check-deploy's threshold).
	units := []string{"smtpgate-edge.service", "smtpgate-policy.service", "smtpgate-auth.service", "smtpgate.target"}
	if b, err := exec.Command("systemd-analyze", append([]string{"verify", "--man=no"}, units...)...).CombinedOutput(); err != nil || len(b) > 0 {
		t.Errorf("systemd-analyze verify of the installed units: %v\n%s", err, b)
	}
	for _, u := range units[:3] {
		if b, err := exec.Command("systemd-analyze", "security", "--offline=yes", "--threshold=25", u).CombinedOutput(); err != nil {
			t.Errorf("systemd-analyze security %s: %v\n%s", u, err, b)
		}
	}
	for _, svc := range []string{"edge", "policy", "auth"} {
		if b, err := exec.Command("/usr/bin/smtpgate-"+svc, "-c", "/etc/smtpgate", "check").CombinedOutput(); err != nil {
			t.Errorf("smtpgate-%s check of the installed configuration: %v\n%s", svc, err, b)
		}
	}

	// The operator adds a user (deploy/local's john, whose password the
	// README gives).
	example, err := os.ReadFile(filepath.Join(root, "deploy/local/passwd"))
	if err != nil {
		t.Fatal(err)
	}
	var john string
	for _, line := range strings.Split(string(example), "\n") {
		if strings.HasPrefix(line, "john@example.org:") {
			john = line + "\n"
		}
	}
	f, err := os.OpenFile("/etc/smtpgate/passwd", os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(john); err != nil {
		t.Fatal(err)
	}
	f.Close()

	// Each service as its unit's ExecStart would run it.
	p := newProcs(t)
	env := []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8"}
	for _, s := range []struct{ svc, addr string }{
		{"policy", "127.0.0.1:10040"}, {"auth", "127.0.0.1:10050"}, {"edge", "127.0.0.1:2525"},
	} {
		un := readUnit(t, "/usr/lib/systemd/system/smtpgate-"+s.svc+".service")
		if un.execStart[0] != "/usr/bin/smtpgate-"+s.svc || un.user != "smtpgate" {
			t.Errorf("smtpgate-%s.service: ExecStart=%v User=%s", s.svc, un.execStart, un.user)
		}
		group := un.group
		if group == "" {
			group = un.user
		}
		argv := append([]string{"setpriv", "--reuid=" + un.user, "--regid=" + group, "--init-groups", "--"}, un.execStart...)
		if un.umask != "" {
			argv = append([]string{"sh", "-c", `umask "$0" && exec "$@"`, un.umask}, argv...)
		}
		p.start(s.svc, argv, env, s.addr)
	}
	version, err := exec.Command("/usr/bin/smtpgate-edge", "--version").Output()
	if err != nil {
		t.Fatal(err)
	}
	delivered := driveLocal(t, "/var/lib/smtpgate/maildir")
	if fi, err := os.Stat(delivered); err != nil || strconv.Itoa(int(fi.Sys().(*syscall.Stat_t).Uid)) != u.Uid {
		t.Errorf("%s: %v, want it owned by smtpgate (%s)", delivered, err, u.Uid)
	}
	buildInfoMatches(t, string(version))
	p.stopAll()

	if b, err := exec.Command("dpkg", "--purge", "smtpgate").CombinedOutput(); err != nil {
		t.Fatalf("dpkg --purge: %v\n%s", err, b)
	}
	if _, err := user.Lookup("smtpgate"); err == nil {
		t.Error("dpkg --purge left the user smtpgate")
	}
	if _, err := user.LookupGroup("smtpgate"); err == nil {
		t.Error("dpkg --purge left the group smtpgate")
	}
	for _, path := range []string{"/etc/smtpgate", "/var/lib/smtpgate", "/var/log/smtpgate", "/usr/bin/smtpgate-edge",
		"/usr/lib/systemd/system/smtpgate-edge.service", "/etc/logrotate.d/smtpgate"} {
		if _, err := os.Stat(path); err == nil {
			t.Errorf("dpkg --purge left %s", path)
		}
	}
}
