// Package buildinfo says which build of smtpgate is running: the one
// source of the version, VCS revision, build date and Go version that
// every binary's --version, the smtpgate_build_info metric,
// AdminService/Status and the traces' service.version report.
//
// A release build (scripts/release, scripts/images, the Debian packages)
// stamps the version, revision and date with the linker:
//
//	go build -ldflags "-X github.com/smtpgate/smtpgate/pkg/buildinfo.version=v1.2.3
//	  -X github.com/smtpgate/smtpgate/pkg/buildinfo.revision=<commit>
//	  -X github.com/smtpgate/smtpgate/pkg/buildinfo.date=2026-12-07T23:00:00Z"
//
// A plain `go build` or `go install` falls back on what the Go toolchain
// records in the binary (runtime/debug.ReadBuildInfo): the module version,
// and with -buildvcs the commit and its time. The build date of a release
// is its commit's time (SOURCE_DATE_EPOCH), so that two builds of one
// commit are byte for byte the same.
package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
)

// Set by the linker only (-ldflags -X); never written at run time.
var (
	version  string
	revision string
	date     string
)

// Info describes the running binary.
type Info struct {
	// Version is `git describe` of the release ("v1.2.3",
	// "v1.2.3-4-gabcdef0"), else the module version, else "devel".
	Version string
	// Revision is the full VCS commit, "unknown" when not recorded; with
	// "-dirty" appended when the tree had uncommitted changes.
	Revision string
	// Date is the build date in RFC 3339, UTC: the commit's time for a
	// reproducible build; "unknown" when not recorded.
	Date string
	// GoVersion is the Go toolchain that built the binary ("go1.26.8").
	GoVersion string
	// Platform is GOOS/GOARCH ("linux/amd64").
	Platform string
}

// Get returns the build information of the running binary.
func Get() Info {
	in := Info{Version: version, Revision: revision, Date: date,
		GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if in.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			in.Version = bi.Main.Version
		}
		var rev, at string
		modified := false
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.time":
				at = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
		if in.Revision == "" && rev != "" {
			in.Revision = rev
			if modified {
				in.Revision += "-dirty"
			}
		}
		if in.Date == "" {
			in.Date = at
		}
	}
	if in.Version == "" {
		in.Version = "devel"
	}
	if in.Revision == "" {
		in.Revision = "unknown"
	}
	if in.Date == "" {
		in.Date = "unknown"
	}
	return in
}

// String is what `smtpgate-<svc> --version` prints for program prog, in
// the layout of the Prometheus exporters' --version:
//
//	smtpgate-edge, version v1.2.3 (revision: 0123abcd...)
//	  build date: 2026-12-07T23:00:00Z
//	  go version: go1.26.8
//	  platform:   linux/amd64
func (in Info) String(prog string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s, version %s (revision: %s)\n", prog, in.Version, in.Revision)
	fmt.Fprintf(&b, "  build date: %s\n", in.Date)
	fmt.Fprintf(&b, "  go version: %s\n", in.GoVersion)
	fmt.Fprintf(&b, "  platform:   %s\n", in.Platform)
	return b.String()
}
