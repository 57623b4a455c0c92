package grpcclient

import (
	"context"
	"errors"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/smtpgate/smtpgate/pkg/grpcserver"
	authv1 "github.com/smtpgate/smtpgate/proto/smtpgate/auth/v1"
)

// mechanismsOnly answers Mechanisms and a one-step Authenticate; the
// rest is Unimplemented.
type mechanismsOnly struct {
	authv1.UnimplementedAuthServiceServer
}

func (mechanismsOnly) Mechanisms(context.Context, *authv1.MechanismsRequest) (*authv1.MechanismsResponse, error) {
	return &authv1.MechanismsResponse{Mechanisms: []string{"PLAIN"}}, nil
}

func (mechanismsOnly) Authenticate(s grpc.BidiStreamingServer[authv1.AuthenticateRequest, authv1.AuthenticateResponse]) error {
	if _, err := s.Recv(); err != nil {
		return err
	}
	return s.Send(&authv1.AuthenticateResponse{Step: &authv1.AuthenticateResponse_Outcome{Outcome: &authv1.Outcome{Result: authv1.Result_RESULT_FAILURE}}})
}

// sample is the value of the series of family name with labels (every
// label given; others ignored); ok false when there is none.
func sample(t *testing.T, g prometheus.Gatherer, name string, labels map[string]string) (float64, bool) {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, lp := range m.GetLabel() {
				got[lp.GetName()] = lp.GetValue()
			}
			for k, v := range labels {
				if got[k] != v {
					continue series
				}
			}
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				return m.GetCounter().GetValue(), true
			case dto.MetricType_HISTOGRAM:
				return float64(m.GetHistogram().GetSampleCount()), true
			}
		}
	}
	return 0, false
}

// familyNames are the metric families g has, with at least one series.
func familyNames(t *testing.T, g prometheus.Gatherer) []string {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, mf := range mfs {
		out = append(out, mf.GetName())
	}
	return out
}

// The server and client metrics carry go-grpc-middleware's names and
// labels, exist at zero for every method before the first call, count
// each call once with its code (an AUTH stream read to its end as OK),
// and leave health checks out.
func TestCallMetrics(t *testing.T) {
	serverReg, clientReg := prometheus.NewRegistry(), prometheus.NewRegistry()
	srv := grpcserver.New(grpcserver.WithMetrics(serverReg))
	authv1.RegisterAuthServiceServer(srv.GRPC, mechanismsOnly{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })
	conn, err := Dial(ln.Addr().String(), WithMetrics(NewMetrics(clientReg), &authv1.AuthService_ServiceDesc))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := authv1.NewAuthServiceClient(conn)

	const svc = "smtpgate.auth.v1.AuthService"
	series := func(typ, method string, code codes.Code) map[string]string {
		l := map[string]string{"grpc_type": typ, "grpc_service": svc, "grpc_method": method}
		if code != 99 {
			l["grpc_code"] = code.String()
		}
		return l
	}
	type want struct {
		name          string
		labels        map[string]string
		before, after float64
	}
	var wants []want
	for _, side := range []string{"server", "client"} {
		wants = append(wants,
			want{"grpc_" + side + "_started_total", series("unary", "Mechanisms", 99), 0, 2},
			want{"grpc_" + side + "_handled_total", series("unary", "Mechanisms", codes.OK), 0, 2},
			want{"grpc_" + side + "_handling_seconds", series("unary", "Mechanisms", 99), 0, 2},
			want{"grpc_" + side + "_handled_total", series("unary", "LookupUser", codes.Unimplemented), 0, 1},
			want{"grpc_" + side + "_handled_total", series("unary", "LookupUser", codes.OK), 0, 0},
			want{"grpc_" + side + "_started_total", series("bidi_stream", "Authenticate", 99), 0, 1},
			want{"grpc_" + side + "_handled_total", series("bidi_stream", "Authenticate", codes.OK), 0, 1},
			want{"grpc_" + side + "_handled_total", series("bidi_stream", "Authenticate", codes.Canceled), 0, 0},
			want{"grpc_" + side + "_msg_received_total", series("bidi_stream", "Authenticate", 99), 0, 1},
			want{"grpc_" + side + "_msg_sent_total", series("bidi_stream", "Authenticate", 99), 0, 1},
		)
	}
	regs := map[string]prometheus.Gatherer{"server": serverReg, "client": clientReg}
	check := func(when string, value func(w want) float64) {
		t.Helper()
		for _, w := range wants {
			side := strings.Split(w.name, "_")[1]
			got, ok := sample(t, regs[side], w.name, w.labels)
			if !ok {
				t.Errorf("%s: no %s%v", when, w.name, w.labels)
			} else if got != value(w) {
				t.Errorf("%s: %s%v = %v, want %v", when, w.name, w.labels, got, value(w))
			}
		}
	}
	// Serve makes the server's series; wait until it is serving.
	if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true)); err != nil {
		t.Fatal(err)
	}
	check("before any call", func(w want) float64 { return w.before })

	for range 2 {
		if _, err := c.Mechanisms(ctx, &authv1.MechanismsRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.LookupUser(ctx, &authv1.LookupUserRequest{}); status.Code(err) != codes.Unimplemented {
		t.Fatalf("LookupUser = %v, want Unimplemented", err)
	}
	stream, err := c.Authenticate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&authv1.AuthenticateRequest{Step: &authv1.AuthenticateRequest_Start{Start: &authv1.Start{Mechanism: "PLAIN"}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("Recv after the outcome = %v, want EOF", err)
	}
	// The server counts a call when its handler has returned, which may
	// be just after the client saw the end: scraped until it shows.
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if n, _ := sample(t, serverReg, "grpc_server_handled_total", series("bidi_stream", "Authenticate", codes.OK)); n == 1 {
			break
		}
	}
	check("after the calls", func(w want) float64 { return w.after })

	for side, g := range regs {
		for _, name := range familyNames(t, g) {
			if v, ok := sample(t, g, name, map[string]string{"grpc_service": "grpc.health.v1.Health"}); ok {
				t.Errorf("%s: health checks counted in %s (%v)", side, name, v)
			}
		}
	}
}

// Metrics describes the same metrics as go-grpc-middleware's
// ClientMetrics with its handling time histogram: names, help and labels.
func TestClientMetricsAreTheProviders(t *testing.T) {
	describe := func(c prometheus.Collector) []string {
		ch := make(chan *prometheus.Desc, 16)
		c.Describe(ch)
		close(ch)
		var out []string
		for d := range ch {
			out = append(out, d.String())
		}
		slices.Sort(out)
		return out
	}
	m := NewMetrics(nil)
	ours := describe(collectors{m.started, m.handled, m.handling, m.received, m.sent})
	theirs := describe(grpcprom.NewClientMetrics(grpcprom.WithClientHandlingTimeHistogram()))
	if diff := cmp.Diff(theirs, ours); diff != "" {
		t.Errorf("descriptors differ from the provider's (-theirs +ours):\n%s", diff)
	}
}

type collectors []prometheus.Collector

func (cs collectors) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range cs {
		c.Describe(ch)
	}
}

func (cs collectors) Collect(ch chan<- prometheus.Metric) {
	for _, c := range cs {
		c.Collect(ch)
	}
}

// BenchmarkCallMetrics is a unary call over loopback with the server's
// and the client's call metrics, and without: what measuring costs a
// call (go test -bench CallMetrics -benchmem ./pkg/grpcclient).
func BenchmarkCallMetrics(b *testing.B) {
	for _, on := range []bool{false, true} {
		b.Run(map[bool]string{false: "off", true: "on"}[on], func(b *testing.B) {
			var sopts []grpcserver.Option
			var copts []Option
			if on {
				sopts = append(sopts, grpcserver.WithMetrics(prometheus.NewRegistry()))
				copts = append(copts, WithMetrics(NewMetrics(prometheus.NewRegistry()), &authv1.AuthService_ServiceDesc))
			}
			srv := grpcserver.New(sopts...)
			authv1.RegisterAuthServiceServer(srv.GRPC, mechanismsOnly{})
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- srv.Serve(ctx, ln) }()
			defer func() { cancel(); <-done }()
			conn, err := Dial(ln.Addr().String(), copts...)
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			c := authv1.NewAuthServiceClient(conn)
			if _, err := c.Mechanisms(ctx, &authv1.MechanismsRequest{}, grpc.WaitForReady(true)); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, err := c.Mechanisms(ctx, &authv1.MechanismsRequest{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
