package main

import (
	"strings"
	"testing"
)

// check finds what a scrape lacks: a metric, a label matched; the labels
// Prometheus adds to every target are allowed; a bad expression is one
// problem.
func TestCheck(t *testing.T) {
	known := map[string][]string{
		"grpc_server_handled_total":                     {"grpc_code", "grpc_method", "grpc_service", "grpc_type"},
		"smtpgate_edge_handoff_duration_seconds_bucket": {"le", "next_hop"},
	}
	for _, tc := range []struct {
		expr      string
		selectors int
		problems  []string
	}{
		{`sum by (grpc_code) (rate(grpc_server_handled_total{instance=~"$x", grpc_code!="OK"}[5m]))`, 1, nil},
		{`histogram_quantile(0.99, sum by (le) (rate(smtpgate_edge_handoff_duration_seconds_bucket{job="e"}[5m])))`, 1, nil},
		{`rate(grpc_server_handled_total{code="OK"}[5m])`, 1, []string{"grpc_server_handled_total has no label code"}},
		{`rate(smtpgate_grpc_server_handling_seconds_count[5m]) / rate(grpc_server_handled_total[5m])`, 2, []string{"no metric smtpgate_grpc_server_handling_seconds_count in the scrape"}},
		{`{__name__=~"grpc_.*"}`, 1, []string{"a selector without a metric name"}},
		{`rate(grpc_server_handled_total[5m]`, 0, []string{"unclosed"}},
	} {
		n, problems := check(tc.expr, known)
		if n != tc.selectors || len(problems) != len(tc.problems) {
			t.Errorf("check(%s) = %d, %q; want %d selectors and %d problems", tc.expr, n, problems, tc.selectors, len(tc.problems))
			continue
		}
		for i, want := range tc.problems {
			if !strings.Contains(problems[i], want) {
				t.Errorf("check(%s) problem %q, want it to say %q", tc.expr, problems[i], want)
			}
		}
	}
}

func TestGrafanaVariables(t *testing.T) {
	d := []byte(`{"panels":[{"title":"p","targets":[{"expr":"rate(a_total{instance=~\"$instance\"}[$__rate_interval])"}]}],
		"templating":{"list":[{"name":"instance","query":"label_values(smtpgate_build_info, instance)"},{"name":"x","query":"label_values(b_total{job=\"j\"}, kind)"}]}}`)
	exprs, err := dashboardExpressions("d.json", d)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{
		`rate(a_total{instance=~"$instance"}[5m])`: true,
		`smtpgate_build_info{instance!=""}`:        true,
		`b_total{job="j", kind!=""}`:               true,
	}
	if len(exprs) != len(want) {
		t.Fatalf("expressions %v, want %v", exprs, want)
	}
	for _, e := range exprs {
		if !want[e.expr] {
			t.Errorf("expression %q not expected", e.expr)
		}
	}
}
