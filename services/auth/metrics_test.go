package auth

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/smtpgate/smtpgate/pkg/telemetry"
	authv1 "github.com/smtpgate/smtpgate/proto/smtpgate/auth/v1"
)

// TestMetricsScrape scrapes /metrics over HTTP after a few
// authentications, one of them tripping a lockout.
func TestMetricsScrape(t *testing.T) {
	reg := telemetry.NewRegistry("auth")
	r := startReplicaWith(t, "smtpgate_auth_failure_delay = 0\nsmtpgate_auth_max_failures_per_client = 2\n", reg)
	tls := &authv1.Session{Id: "s1", ClientAddress: "127.0.0.66", Tls: true}
	other := &authv1.Session{Id: "s2", ClientAddress: "127.0.0.67", Tls: true}
	exchange(t, r.client, other, "PLAIN", []byte("\x00john@example.org\x00"+password))
	exchange(t, r.client, tls, "X-NOPE", nil)
	for range 3 { // two failures, then locked out
		exchange(t, r.client, tls, "PLAIN", []byte("\x00john@example.org\x00wrong"))
	}
	web := httptest.NewServer(telemetry.MetricsHandler(reg))
	defer web.Close()
	wants := []string{
		`smtpgate_auth_authentications_total{mechanism="PLAIN",result="success"} 1`,
		`smtpgate_auth_authentications_total{mechanism="PLAIN",result="failure"} 2`,
		`smtpgate_auth_authentications_total{mechanism="PLAIN",result="temporary_failure"} 1`,
		`smtpgate_auth_authentications_total{mechanism="other",result="unsupported_mechanism"} 1`,
		`smtpgate_auth_lockouts_total{kind="client"} 1`,
		`smtpgate_auth_locked_out_total 1`,
		`smtpgate_auth_redis_errors_total 0`,
		`smtpgate_auth_dovecot_errors_total 0`,
		// Timed when the stream's handler returns, just after the
		// outcome was sent: scraped again until it shows.
		`grpc_server_handled_total{grpc_code="OK",grpc_method="Authenticate",grpc_service="smtpgate.auth.v1.AuthService",grpc_type="bidi_stream"} 5`,
		`grpc_server_handling_seconds_count{grpc_method="Authenticate",grpc_service="smtpgate.auth.v1.AuthService",grpc_type="bidi_stream"} 5`,
		`grpc_server_handled_total{grpc_code="OK",grpc_method="LookupUser",grpc_service="smtpgate.auth.v1.AuthService",grpc_type="unary"} 0`,
	}
	var body []byte
	var missing []string
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		resp, err := http.Get(web.URL)
		if err != nil {
			t.Fatal(err)
		}
		body, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		missing = missing[:0]
		for _, want := range wants {
			if !strings.Contains(string(body), want) {
				missing = append(missing, want)
			}
		}
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
	}
	for _, want := range missing {
		t.Errorf("no %s in /metrics", want)
	}
	if t.Failed() {
		for _, l := range strings.Split(string(body), "\n") {
			if strings.HasPrefix(l, "smtpgate_auth") {
				t.Log(l)
			}
		}
	}
}
