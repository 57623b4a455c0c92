package buildinfo

import (
	"runtime"
	"strings"
	"testing"
)

// TestGet: an unstamped build (go test's) still says something for every
// field, and the Go version and platform are the running ones.
func TestGet(t *testing.T) {
	in := Get()
	if in.Version == "" || in.Revision == "" || in.Date == "" {
		t.Errorf("Get() = %+v: an empty field", in)
	}
	if in.GoVersion != runtime.Version() || in.Platform != runtime.GOOS+"/"+runtime.GOARCH {
		t.Errorf("Get() = %+v, want Go %s on %s/%s", in, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	}
}

// TestString: the --version layout.
func TestString(t *testing.T) {
	in := Info{Version: "v1.2.3", Revision: "0123abcd", Date: "2026-12-07T23:00:00Z", GoVersion: "go1.26.8", Platform: "linux/arm64"}
	want := "smtpgate-edge, version v1.2.3 (revision: 0123abcd)\n" +
		"  build date: 2026-12-07T23:00:00Z\n" +
		"  go version: go1.26.8\n" +
		"  platform:   linux/arm64\n"
	if got := in.String("smtpgate-edge"); got != want {
		t.Errorf("String =\n%s\nwant\n%s", got, want)
	}
	if strings.Count(want, "\n") != 4 {
		t.Fatal("layout changed")
	}
}
