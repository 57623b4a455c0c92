package telemetry_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"

	"github.com/smtpgate/smtpgate/pkg/buildinfo"
	"github.com/smtpgate/smtpgate/pkg/telemetry"
)

func TestServeMetrics(t *testing.T) {
	reg := telemetry.NewRegistry("policy")
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- telemetry.ServeMetrics(ctx, lis, reg) }()
	resp, err := http.Get("http://" + lis.Addr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	// The labels carry what --version prints (pkg/buildinfo).
	bi := buildinfo.Get()
	want := `smtpgate_build_info{build_date="` + bi.Date + `",go_version="` + runtime.Version() + `",revision="` + bi.Revision +
		`",service="policy",version="` + bi.Version + `"} 1`
	if !strings.Contains(string(body), want) {
		t.Errorf("no %s in\n%s", want, body)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("ServeMetrics = %v", err)
	}
}
