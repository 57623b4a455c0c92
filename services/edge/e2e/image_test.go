package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// podmanRun are the options every container of TestImages runs with: the
// host's network (deploy/local's loopback addresses), a read-only root
// file system as deploy/k8s sets, and runc with explicit rlimits: in a
// sandbox without CAP_SYS_RESOURCE (this CI's), crun's and podman's
// default rlimits cannot be set, and crun refuses the hybrid cgroup
// layout; runc with limits under the host's starts everywhere.
var podmanRun = []string{"run", "--runtime", "runc", "--network", "host", "--read-only",
	"--ulimit", "nofile=16384:16384", "--ulimit", "nproc=4096:4096"}

// imageConfig is the part of `podman image inspect` the test checks.
type imageConfig struct {
	Config struct {
		User         string
		ExposedPorts map[string]struct{}
		Entrypoint   []string
		Cmd          []string
		Labels       map[string]string
	}
}

// TestImages builds the three images with scripts/images (the offline
// path: host binaries, FROM scratch), checks what deploy/k8s relies on
// (user 65532, the ports, the entrypoint and -c /etc/smtpgate, the OCI
// labels, no shell in the file system), then runs the stack from them
// with podman (host network, deploy/local's configuration mounted
// read-only, a host directory as the Maildir) and sends a relay attempt
// and a submission, as a user of the images would.
func TestImages(t *testing.T) {
	podman, err := exec.LookPath("podman")
	if err != nil {
		t.Fatal("podman is not installed: scripts/test installs it (scripts/deps --test)")
	}
	if os.Geteuid() != 0 {
		t.Fatal("TestImages runs containers on the host network with rootful podman: run it as root (CI does)")
	}
	reserveLocalPorts(t)
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	pm := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(podman, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("podman %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out))
	}

	// Images of this test's own name, removed at the end.
	prefix := fmt.Sprintf("localhost/smtpgate-e2e-%d", time.Now().UnixNano())
	build := exec.Command("scripts/images")
	build.Dir = root
	build.Env = append(os.Environ(), "IMAGE_PREFIX="+prefix, "VERSION=")
	out, err := build.CombinedOutput()
	t.Cleanup(func() {
		ids, _ := exec.Command(podman, "images", "-q", "--filter", "reference="+prefix+"/*").Output()
		if f := strings.Fields(string(ids)); len(f) > 0 {
			_ = exec.Command(podman, append([]string{"rmi", "-f"}, f...)...).Run()
		}
	})
	if err != nil {
		t.Fatalf("scripts/images: %v\n%s", err, out)
	}

	ports := map[string][]string{"edge": {"2465/tcp", "2525/tcp", "2587/tcp"}, "policy": {"10040/tcp"}, "auth": {"10050/tcp"}}
	var version string
	for _, svc := range []string{"edge", "policy", "auth"} {
		image := prefix + "/smtpgate-" + svc + ":latest"
		var cfg []imageConfig
		if err := json.Unmarshal([]byte(pm("image", "inspect", image)), &cfg); err != nil || len(cfg) != 1 {
			t.Fatalf("podman image inspect %s: %v", image, err)
		}
		c := cfg[0].Config
		var exposed []string
		for p := range c.ExposedPorts {
			exposed = append(exposed, p)
		}
		slices.Sort(exposed)
		if c.User != "65532:65532" || !slices.Equal(exposed, ports[svc]) ||
			!slices.Equal(c.Entrypoint, []string{"/usr/bin/smtpgate-" + svc}) || !slices.Equal(c.Cmd, []string{"-c", "/etc/smtpgate"}) {
			t.Errorf("%s: user %q, ports %v, entrypoint %q, cmd %q; want 65532:65532, %v, /usr/bin/smtpgate-%s, -c /etc/smtpgate",
				image, c.User, exposed, c.Entrypoint, c.Cmd, ports[svc], svc)
		}
		for _, l := range []string{"source", "version", "revision", "licenses"} {
			if c.Labels["org.opencontainers.image."+l] == "" {
				t.Errorf("%s: no label org.opencontainers.image.%s", image, l)
			}
		}
		// The version tag is the image, and the binary says that version.
		v := c.Labels["org.opencontainers.image.version"]
		if id, idv := pm("image", "inspect", "--format", "{{.Id}}", image), pm("image", "inspect", "--format", "{{.Id}}", prefix+"/smtpgate-"+svc+":"+v); id != idv {
			t.Errorf("%s is not %s:%s", image, svc, v)
		}
		got := pm(append(podmanRun, "--rm", image, "--version")...)
		if want := "smtpgate-" + svc + ", version " + v + " (revision: " + c.Labels["org.opencontainers.image.revision"] + ")"; !strings.HasPrefix(got, want) {
			t.Errorf("%s --version = %q, want it to begin %q", image, got, want)
		}
		if svc == "edge" {
			version = got
		}
		// The file system: the binary, CA certificates, passwd and group;
		// no shell, nothing else.
		ctr := pm("create", image)
		export := exec.Command("sh", "-c", `"$0" export "$1" | tar -t`, podman, ctr)
		files, err := export.Output()
		pm("rm", ctr)
		if err != nil {
			t.Fatalf("podman export %s: %v", image, err)
		}
		var regular []string
		for _, f := range strings.Fields(string(files)) {
			if !strings.HasSuffix(f, "/") {
				regular = append(regular, f)
			}
		}
		slices.Sort(regular)
		want := []string{"etc/group", "etc/passwd", "etc/ssl/certs/ca-certificates.crt", "usr/bin/smtpgate-" + svc}
		if !slices.Equal(regular, want) {
			t.Errorf("%s holds %v, want only %v", image, regular, want)
		}
	}

	// deploy/local as it is, plus its certificate (scripts/up makes one),
	// readable by the images' user; mounted read-only.
	conf := filepath.Join(t.TempDir(), "smtpgate")
	for _, f := range []string{"main.cf", "master.cf", "passwd"} {
		b, err := os.ReadFile(filepath.Join(root, "deploy/local", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(conf, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(conf, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(conf, "tls"), 0o755); err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := writeCert(t, t.TempDir())
	for src, dst := range map[string]string{certFile: "tls/cert.pem", keyFile: "tls/key.pem"} {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(conf, dst), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// main.cf's next hop, maildir:../../var/maildir, is /var/maildir in
	// the container: a host directory the user 65532 may write.
	maildir := filepath.Join(t.TempDir(), "maildir")
	if err := os.MkdirAll(maildir, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(maildir, 65532, 65532); err != nil {
		t.Fatal(err)
	}

	var names []string
	t.Cleanup(func() {
		for _, n := range names {
			if t.Failed() {
				logs, _ := exec.Command(podman, "logs", n).CombinedOutput()
				t.Logf("%s:\n%s", n, logs)
			}
			_ = exec.Command(podman, "rm", "-f", "-t", "20", n).Run()
		}
	})
	for _, s := range []struct{ svc, addr string }{
		{"policy", "127.0.0.1:10040"}, {"auth", "127.0.0.1:10050"}, {"edge", "127.0.0.1:2525"},
	} {
		name := strings.TrimPrefix(prefix, "localhost/") + "-" + s.svc
		args := append(slices.Clone(podmanRun), "-d", "--name", name, "-v", conf+":/etc/smtpgate:ro")
		if s.svc == "edge" {
			args = append(args, "-v", maildir+":/var/maildir")
		}
		pm(append(args, prefix+"/smtpgate-"+s.svc+":latest")...)
		names = append(names, name)
		if err := waitListening(s.addr, 60*time.Second); err != nil {
			logs, _ := exec.Command(podman, "logs", name).CombinedOutput()
			t.Fatalf("%s: %v\n%s", name, err, logs)
		}
	}
	driveLocal(t, maildir)
	buildInfoMatches(t, version)
}
