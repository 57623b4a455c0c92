package e2e

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"debug/elf"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// gitOut runs git in dir and returns its trimmed output.
func gitOut(t *testing.T, dir string, args ...string) string {
	t.Helper()
	out, err := exec.Command("git", append([]string{"-C", dir}, args...)...).Output()
	if err != nil {
		t.Fatalf("git %s: %v", strings.Join(args, " "), err)
	}
	return strings.TrimSpace(string(out))
}

// checkout makes a fresh checkout of the commit checked out in the
// repository, as a release builder would: its own directory, new file
// times.
func checkout(t *testing.T, root, commit string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "smtpgate")
	for _, args := range [][]string{
		{"clone", "--quiet", "--shared", "--no-checkout", root, dir},
		{"-C", dir, "checkout", "--quiet", "--detach", commit},
	} {
		if out, err := exec.Command("git", args...).CombinedOutput(); err != nil {
			t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	return dir
}

// release runs scripts/release in the checkout dir for amd64 only (arm64
// is the same build with GOARCH changed and would double the test's time)
// under shell, which sets the umask, and returns the output directory.
func release(t *testing.T, dir, shell string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "dist")
	cmd := exec.Command("bash", "-c", shell+` && exec scripts/release -o "$1" --arch amd64`, "release", out)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "VERSION=")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("scripts/release in %s: %v\n%s", dir, err, b)
	}
	return out
}

// TestReleaseReproducible builds the release archive twice, from two
// checkouts of the commit in different directories, with different
// umasks, time zones and file times, and wants the same bytes, then
// checks what a user of the archive would: the files, owner 0/0, the
// commit's time on every entry, static stripped binaries that say the
// version `git describe` gives and the commit.
func TestReleaseReproducible(t *testing.T) {
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	commit := gitOut(t, root, "rev-parse", "HEAD")
	a := checkout(t, root, commit)
	b := checkout(t, root, commit)
	// The second checkout's files are a day old and private.
	old := time.Now().Add(-24 * time.Hour)
	if err := filepath.Walk(b, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Chtimes(p, old, old)
	}); err != nil {
		t.Fatal(err)
	}
	outA := release(t, a, "umask 022; export TZ=UTC")
	outB := release(t, b, "umask 077; export TZ=Pacific/Kiritimati")

	sumsA, err := os.ReadFile(filepath.Join(outA, "SHA256SUMS"))
	if err != nil {
		t.Fatal(err)
	}
	sumsB, err := os.ReadFile(filepath.Join(outB, "SHA256SUMS"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(sumsA, sumsB) {
		t.Fatalf("two builds of %s differ:\n%s\n%s", commit, sumsA, sumsB)
	}
	fields := strings.Fields(string(sumsA))
	if len(fields) != 2 || !strings.HasPrefix(fields[1], "smtpgate_") || !strings.HasSuffix(fields[1], "_linux_amd64.tar.gz") {
		t.Fatalf("SHA256SUMS = %q, want one line for smtpgate_VERSION_linux_amd64.tar.gz", sumsA)
	}
	// sha256sum -c: the sums are those of the files.
	check := exec.Command("sha256sum", "-c", "SHA256SUMS")
	check.Dir = outA
	if out, err := check.CombinedOutput(); err != nil {
		t.Fatalf("sha256sum -c: %v\n%s", err, out)
	}

	env := readEnv(t, filepath.Join(outA, "build.env"))
	version := gitDescribe(t, a)
	if env["VERSION"] != version || env["REVISION"] != commit {
		t.Errorf("build.env = %v, want VERSION=%s REVISION=%s", env, version, commit)
	}
	wantName := "smtpgate_" + strings.TrimPrefix(version, "v") + "_linux_amd64"
	if fields[1] != wantName+".tar.gz" {
		t.Errorf("archive %s, want %s.tar.gz", fields[1], wantName)
	}
	epoch, err := strconv.ParseInt(gitOut(t, a, "log", "-1", "--format=%ct"), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	date := time.Unix(epoch, 0).UTC().Format(time.RFC3339)

	// The archive: its entries, owners and times.
	unpacked := t.TempDir()
	names := untar(t, filepath.Join(outA, fields[1]), unpacked, epoch)
	for _, want := range []string{"bin/smtpgate-edge", "bin/smtpgate-policy", "bin/smtpgate-auth",
		"deploy/local/main.cf", "deploy/local/master.cf", "deploy/systemd/smtpgate-edge.service",
		"deploy/systemd/smtpgate.target", "deploy/logrotate/smtpgate", "deploy/fail2ban/jail.d/smtpgate.conf",
		"LICENSE", "README.md"} {
		if !names[wantName+"/"+want] {
			t.Errorf("the archive has no %s", want)
		}
	}

	// The binaries: static, stripped, and they say what they are.
	for _, svc := range []string{"edge", "policy", "auth"} {
		bin := filepath.Join(unpacked, wantName, "bin", "smtpgate-"+svc)
		f, err := elf.Open(bin)
		if err != nil {
			t.Fatal(err)
		}
		if f.Section(".interp") != nil {
			t.Errorf("smtpgate-%s is dynamically linked (CGO on?)", svc)
		}
		if f.Section(".symtab") != nil {
			t.Errorf("smtpgate-%s is not stripped", svc)
		}
		f.Close()
		out, err := exec.Command(bin, "--version").Output()
		if err != nil {
			t.Fatalf("smtpgate-%s --version: %v", svc, err)
		}
		want := "smtpgate-" + svc + ", version " + version + " (revision: " + commit + ")\n" +
			"  build date: " + date + "\n"
		if !strings.HasPrefix(string(out), want) || !strings.Contains(string(out), "platform:   linux/amd64") {
			t.Errorf("smtpgate-%s --version =\n%s\nwant it to begin\n%s", svc, out, want)
		}
	}
}

// gitDescribe is the version scripts/release gives the commit checked out
// in dir, as its comment says: `git describe` of a v* tag, else
// v0.0.0-N-gHASH.
func gitDescribe(t *testing.T, dir string) string {
	t.Helper()
	out, err := exec.Command("git", "-C", dir, "describe", "--tags", "--match", "v[0-9]*").Output()
	if err == nil {
		return strings.TrimSpace(string(out))
	}
	return "v0.0.0-" + gitOut(t, dir, "rev-list", "--count", "HEAD") + "-g" + gitOut(t, dir, "rev-parse", "--short=12", "HEAD")
}

// readEnv reads a KEY=VALUE file.
func readEnv(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		k, v, _ := strings.Cut(line, "=")
		env[k] = v
	}
	return env
}

// untar unpacks the .tar.gz at path into dir, checking that every entry
// belongs to 0/0 and has the time epoch, and returns the entries' names.
func untar(t *testing.T, path, dir string, epoch int64) map[string]bool {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	if zr.Name != "" || !zr.ModTime.IsZero() {
		t.Errorf("gzip header names %q, time %v: not gzip -n", zr.Name, zr.ModTime)
	}
	tr := tar.NewReader(zr)
	names := map[string]bool{}
	prev := ""
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		name := strings.TrimSuffix(h.Name, "/")
		names[name] = true
		if h.Uid != 0 || h.Gid != 0 || h.ModTime.Unix() != epoch {
			t.Errorf("%s: owner %d/%d, time %v; want 0/0 and the commit's time %v", h.Name, h.Uid, h.Gid, h.ModTime, time.Unix(epoch, 0))
		}
		if name < prev {
			t.Errorf("%s after %s: entries not sorted", name, prev)
		}
		prev = name
		target := filepath.Join(dir, filepath.FromSlash(name))
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, 0o755); err != nil {
				t.Fatal(err)
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
				t.Fatal(err)
			}
			w, err := os.OpenFile(target, os.O_CREATE|os.O_WRONLY, os.FileMode(h.Mode)&0o755)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.Copy(w, tr); err != nil {
				t.Fatal(err)
			}
			w.Close()
		default:
			t.Errorf("%s: entry type %c, want files and directories only", h.Name, h.Typeflag)
		}
	}
	return names
}
