package e2e

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/smtpgate/smtpgate/pkg/redistest"
)

// documented is a row of docs/operations.md's table of metrics.
type documented struct {
	name, typ string
	services  []string
	labels    []string
	// fromStart: "from the start" in the present column; else the
	// metric appears at its first event.
	fromStart bool
}

// documentedMetrics reads the table under "## Metrics" in
// docs/operations.md.
func documentedMetrics(t *testing.T, path string) []documented {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(b), "\n## Metrics\n")
	if !ok {
		t.Fatalf("%s: no ## Metrics section", path)
	}
	section, _, _ = strings.Cut(section, "\n## ")
	section, _, _ = strings.Cut(section, "\n### ")
	code := regexp.MustCompile("`([^`]*)`")
	var out []documented
	for line := range strings.SplitSeq(section, "\n") {
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		if len(cells) != 6 {
			t.Fatalf("%s: a row of the metrics table without its 6 cells: %s", path, line)
		}
		d := documented{
			name:      strings.Trim(strings.TrimSpace(cells[0]), "`"),
			services:  strings.Split(strings.TrimSpace(cells[1]), ", "),
			typ:       strings.TrimSpace(cells[2]),
			fromStart: strings.TrimSpace(cells[4]) == "from the start",
		}
		for _, m := range code.FindAllStringSubmatch(cells[3], -1) {
			d.labels = append(d.labels, m[1])
		}
		sort.Strings(d.labels)
		out = append(out, d)
	}
	if len(out) < 30 {
		t.Fatalf("%s: only %d metrics in the table", path, len(out))
	}
	return out
}

// scrape is one service's /metrics: its families (name → type, label
// names) and its series names with their labels.
type scrape struct {
	families map[string]*family
	series   map[string]map[string]bool
}

type family struct {
	typ    string
	labels map[string]bool
}

// scrapeMetrics reads http://127.0.0.1:port/metrics (text format).
func scrapeMetrics(t *testing.T, port int) scrape {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	s := scrape{families: map[string]*family{}, series: map[string]map[string]bool{}}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, "# TYPE "); ok {
			name, typ, _ := strings.Cut(rest, " ")
			s.families[name] = &family{typ: typ, labels: map[string]bool{}}
			continue
		}
		if line == "" || line[0] == '#' {
			continue
		}
		name, labels, err := parseSample(line)
		if err != nil {
			t.Fatalf(":%d/metrics: %v: %s", port, err, line)
		}
		if s.series[name] == nil {
			s.series[name] = map[string]bool{}
		}
		f := s.families[name]
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if f == nil {
				f = s.families[strings.TrimSuffix(name, suffix)]
			}
		}
		if f == nil {
			t.Fatalf(":%d/metrics: series %s of no family", port, name)
		}
		for _, l := range labels {
			s.series[name][l] = true
			if l != "le" && l != "quantile" {
				f.labels[l] = true
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return s
}

// parseSample splits a sample line of the text format into the series
// name and its label names.
func parseSample(line string) (string, []string, error) {
	i := strings.IndexAny(line, "{ ")
	if i < 0 {
		return "", nil, fmt.Errorf("no value")
	}
	name, rest := line[:i], line[i:]
	var labels []string
	if rest[0] == '{' {
		rest = rest[1:]
		for {
			if strings.HasPrefix(rest, "}") {
				break
			}
			eq := strings.Index(rest, `="`)
			if eq < 0 {
				return "", nil, fmt.Errorf("bad label")
			}
			labels = append(labels, rest[:eq])
			rest = rest[eq+2:]
			j := 0
			for ; j < len(rest) && rest[j] != '"'; j++ {
				if rest[j] == '\\' {
					j++
				}
			}
			if j >= len(rest) {
				return "", nil, fmt.Errorf("unterminated label value")
			}
			rest = strings.TrimPrefix(rest[j+1:], ",")
		}
	}
	return name, labels, nil
}

// ours are the metric families smtpgate documents: its own and the
// gRPC ones (Go's and the process's are the client library's).
func ours(name string) bool {
	return strings.HasPrefix(name, "smtpgate_") || strings.HasPrefix(name, "grpc_")
}

// TestDocumentedMetrics scrapes the three services of a running stack:
// every metric docs/operations.md lists is there with the labels and
// type it says, from the start unless the table says otherwise; every
// smtpgate_* and grpc_* metric they serve is listed; and every PromQL
// expression of the Grafana dashboard, the alert rules and their unit
// tests uses only metrics and labels the scrape has, as
// deploy/prometheus/check (Prometheus's own PromQL parser) reads them.
func TestDocumentedMetrics(t *testing.T) {
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	docs := documentedMetrics(t, filepath.Join(root, "docs/operations.md"))
	// A Redis for the connection limits, so that their fallback counter
	// is registered.
	redis := redistest.Start(t)
	s := newStack(t, "smtpgate_connection_limit_redis = "+redis.URL()+"\n")
	services := map[string]int{"edge": s.port["edge-metrics"], "policy": s.port["policy-metrics"], "auth": s.port["auth-metrics"]}

	check := func(when string, scrapes map[string]scrape, want func(documented) bool) []string {
		var problems []string
		for _, d := range docs {
			if !want(d) {
				continue
			}
			for _, svc := range d.services {
				f := scrapes[svc].families[d.name]
				switch {
				case f == nil:
					problems = append(problems, fmt.Sprintf("%s: smtpgate-%s serves no %s", when, svc, d.name))
				case f.typ != d.typ:
					problems = append(problems, fmt.Sprintf("%s: smtpgate-%s's %s is a %s, documented as a %s", when, svc, d.name, f.typ, d.typ))
				default:
					var got []string
					for l := range f.labels {
						got = append(got, l)
					}
					sort.Strings(got)
					if !slices.Equal(got, d.labels) {
						problems = append(problems, fmt.Sprintf("%s: smtpgate-%s's %s has labels %v, documented %v", when, svc, d.name, got, d.labels))
					}
				}
			}
		}
		return problems
	}
	scrapeAll := func() map[string]scrape {
		out := map[string]scrape{}
		for svc, port := range services {
			out[svc] = scrapeMetrics(t, port)
		}
		return out
	}

	// Before the test's SMTP session (the stack's start only probed the
	// listeners): the gRPC servers make their series as
	// they start serving, which may follow their metrics listener by a
	// moment, so scraped again for a while.
	var problems []string
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		problems = check("before the session", scrapeAll(), func(d documented) bool { return d.fromStart })
		if len(problems) == 0 || time.Now().After(deadline) {
			break
		}
	}
	for _, p := range problems {
		t.Error(p)
	}

	// A session whose RCPT policy refuses (relay access denied), so that
	// smtpgate_policy_refusals_total appears.
	c, err := s.dial(Stranger, "mx", false)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Mail("someone@example.net"); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("someone@elsewhere.example"); codeOf(err) != 554 {
		t.Fatalf("relayed RCPT = %v, want 554", err)
	}
	_ = c.Quit()
	scrapes := scrapeAll()
	for _, p := range check("after a refused RCPT", scrapes, func(documented) bool { return true }) {
		t.Error(p)
	}
	// Nothing served that the table does not list.
	listed := map[string]bool{}
	for _, d := range docs {
		for _, svc := range d.services {
			listed[svc+" "+d.name] = true
		}
	}
	for svc, sc := range scrapes {
		for name := range sc.families {
			if ours(name) && !listed[svc+" "+name] {
				t.Errorf("smtpgate-%s serves %s, which docs/operations.md does not list for it", svc, name)
			}
		}
	}

	// The dashboard and the rules, against every series of the three
	// scrapes.
	labels := map[string]map[string]bool{}
	for _, sc := range scrapes {
		for name, ls := range sc.series {
			if labels[name] == nil {
				labels[name] = map[string]bool{}
			}
			for l := range ls {
				labels[name][l] = true
			}
		}
	}
	var list strings.Builder
	for name, ls := range labels {
		var names []string
		for l := range ls {
			names = append(names, l)
		}
		sort.Strings(names)
		fmt.Fprintf(&list, "%s %s\n", name, strings.Join(names, ","))
	}
	dir := t.TempDir()
	write(t, filepath.Join(dir, "metrics.txt"), list.String())
	build := exec.Command("go", "build", "-o", filepath.Join(dir, "check"), ".")
	build.Dir = filepath.Join(root, "deploy/prometheus/check")
	build.Env = append(os.Environ(), "GOWORK=off")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building deploy/prometheus/check: %v\n%s", err, out)
	}
	files := []string{"deploy/grafana/smtpgate.json", "deploy/prometheus/smtpgate.rules.yml", "deploy/prometheus/smtpgate.rules.test.yml"}
	run := exec.Command(filepath.Join(dir, "check"), append([]string{"-metrics", filepath.Join(dir, "metrics.txt")}, files...)...)
	run.Dir = root
	out, err := run.CombinedOutput()
	if err != nil {
		t.Errorf("deploy/prometheus/check: %v\n%s", err, out)
	}
	for _, f := range files {
		if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(f) + `: [1-9][0-9]* expressions, [1-9][0-9]* selectors checked$`).Match(out) {
			t.Errorf("deploy/prometheus/check did not check %s:\n%s", f, out)
		}
	}
	t.Logf("deploy/prometheus/check:\n%s", out)
}
