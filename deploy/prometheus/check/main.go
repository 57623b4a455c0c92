// Command check reads the PromQL expressions of smtpgate's Grafana
// dashboard and Prometheus rule files with Prometheus's own parser
// (promql/parser) and fails when one selects a metric, or matches a
// label, that a scrape of the running services does not have.
//
// Usage:
//
//	check -metrics FILE dashboard.json rules.yml ...
//
// FILE lists the series names of a scrape, one a line, each followed by
// the names of its labels, comma-separated ("grpc_server_handled_total
// grpc_code,grpc_method,grpc_service,grpc_type"): services/edge/e2e's
// TestDocumentedMetrics writes it from the three services' /metrics.
// Labels Prometheus adds to every series (job, instance) may be matched
// on any metric. Files ending in .json are Grafana dashboards (every
// "expr" in them, and the metric of each label_values() variable query);
// the others are rule files (every rule's expr) or their promtool unit
// tests (every input series). For each file it prints
// how many expressions and selectors it checked; it exits 1 on any
// problem, 2 on a usage error.
//
// It is a module of its own (run with GOWORK=off) so that the Prometheus
// module stays out of the services' builds.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"

	"github.com/prometheus/prometheus/promql/parser"
	"go.yaml.in/yaml/v3"
)

// targetLabels are added by Prometheus to every series it scrapes.
var targetLabels = []string{"job", "instance"}

func main() {
	metricsFile := flag.String("metrics", "", "file of the scraped series names and their labels")
	flag.Parse()
	if *metricsFile == "" || flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: check -metrics FILE dashboard.json rules.yml ...")
		os.Exit(2)
	}
	known, err := readMetrics(*metricsFile)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	failed := false
	for _, f := range flag.Args() {
		exprs, err := expressions(f)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			failed = true
			continue
		}
		selectors := 0
		for _, e := range exprs {
			n, problems := check(e.expr, known)
			selectors += n
			for _, p := range problems {
				fmt.Printf("%s: %s: %s\n", f, e.where, p)
				failed = true
			}
		}
		fmt.Printf("%s: %d expressions, %d selectors checked\n", f, len(exprs), selectors)
	}
	if failed {
		os.Exit(1)
	}
}

// readMetrics reads the file -metrics names: series name → its labels.
func readMetrics(path string) (map[string][]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	known := map[string][]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, labels, _ := strings.Cut(strings.TrimSpace(sc.Text()), " ")
		if name == "" {
			continue
		}
		known[name] = append(known[name], strings.Split(labels, ",")...)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(known) == 0 {
		return nil, fmt.Errorf("%s: no metrics", path)
	}
	return known, nil
}

// expression is a PromQL expression and where it was found.
type expression struct {
	where, expr string
}

// expressions reads the expressions of a dashboard or rule file.
func expressions(path string) ([]expression, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if strings.HasSuffix(path, ".json") {
		return dashboardExpressions(path, b)
	}
	return ruleExpressions(path, b)
}

// labelValues is a Grafana variable query: label_values(metric, label)
// or label_values(label).
var labelValues = regexp.MustCompile(`^\s*label_values\(\s*([^,)]+?)\s*(?:,\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*)?\)\s*$`)

// dashboardExpressions finds every "expr" of a Grafana dashboard, and
// the selector of each label_values() variable query.
func dashboardExpressions(path string, b []byte) ([]expression, error) {
	var doc any
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var out []expression
	var walk func(v any, where string)
	walk = func(v any, where string) {
		switch v := v.(type) {
		case map[string]any:
			if title, ok := v["title"].(string); ok {
				where = title
			}
			if e, ok := v["expr"].(string); ok && e != "" {
				out = append(out, expression{where, grafanaToPromQL(e)})
			}
			if q, ok := v["query"].(string); ok {
				if m := labelValues.FindStringSubmatch(q); m != nil && m[2] != "" {
					// The selector, and its label as a matcher so that
					// the label is checked too.
					out = append(out, expression{"variable " + fmt.Sprint(v["name"]), grafanaToPromQL(selectorWithLabel(m[1], m[2]))})
				}
			}
			for k, x := range v {
				if k != "expr" {
					walk(x, where)
				}
			}
		case []any:
			for _, x := range v {
				walk(x, where)
			}
		}
	}
	walk(doc, path)
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no expressions", path)
	}
	return out, nil
}

// selectorWithLabel adds label!="" to selector, a metric name with or
// without matchers.
func selectorWithLabel(selector, label string) string {
	if i := strings.LastIndex(selector, "}"); i >= 0 {
		inner := strings.TrimSpace(selector[strings.Index(selector, "{")+1 : i])
		sep := ", "
		if inner == "" {
			sep = ""
		}
		return selector[:strings.Index(selector, "{")+1] + inner + sep + label + `!=""}`
	}
	return selector + "{" + label + `!=""}`
}

// grafanaVars are Grafana's interval variables, which PromQL does not
// parse where a duration goes; the dashboard's own variables appear
// only inside label matchers' strings, where they parse as they are.
var grafanaVars = strings.NewReplacer("$__rate_interval", "5m", "${__rate_interval}", "5m", "$__interval", "1m", "${__interval}", "1m", "$__range", "1h", "${__range}", "1h")

func grafanaToPromQL(e string) string { return grafanaVars.Replace(e) }

// ruleExpressions reads every rule's expr of a Prometheus rule file, or
// every input series of a rule test file (promtool test rules), whose
// names and labels must be the services' too.
func ruleExpressions(path string, b []byte) ([]expression, error) {
	var f struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []struct {
				Alert  string `yaml:"alert"`
				Record string `yaml:"record"`
				Expr   string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
		Tests []struct {
			InputSeries []struct {
				Series string `yaml:"series"`
			} `yaml:"input_series"`
		} `yaml:"tests"`
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var out []expression
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			out = append(out, expression{g.Name + "/" + r.Alert + r.Record, r.Expr})
		}
	}
	for i, t := range f.Tests {
		for _, s := range t.InputSeries {
			out = append(out, expression{fmt.Sprintf("test %d", i+1), s.Series})
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no rules or test series", path)
	}
	return out, nil
}

// check parses expr and returns how many vector selectors it has and
// what is wrong with them: a metric not in known, a label matched that
// the metric does not have, or a selector without a metric name.
func check(expr string, known map[string][]string) (int, []string) {
	e, err := parser.NewParser(parser.Options{}).ParseExpr(expr)
	if err != nil {
		return 0, []string{fmt.Sprintf("%q: %v", expr, err)}
	}
	n := 0
	var problems []string
	parser.Inspect(e, func(node parser.Node, _ []parser.Node) error {
		vs, ok := node.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		n++
		if vs.Name == "" {
			problems = append(problems, fmt.Sprintf("%s: a selector without a metric name", vs))
			return nil
		}
		labels, ok := known[vs.Name]
		if !ok {
			problems = append(problems, fmt.Sprintf("no metric %s in the scrape", vs.Name))
			return nil
		}
		for _, m := range vs.LabelMatchers {
			if m.Name == "__name__" || slices.Contains(targetLabels, m.Name) || slices.Contains(labels, m.Name) {
				continue
			}
			problems = append(problems, fmt.Sprintf("%s has no label %s", vs.Name, m.Name))
		}
		return nil
	})
	return n, problems
}
