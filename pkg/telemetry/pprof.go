package telemetry

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
)

// ServePprof serves Go's runtime profiles (net/http/pprof: /debug/pprof/,
// profile, heap, goroutine, trace …) at lis until ctx is done. Its own
// mux: nothing is registered on http.DefaultServeMux. Callers listen on
// loopback only (maincf.CheckLoopbackAddr): profiles show the process's
// internals.
func ServePprof(ctx context.Context, lis net.Listener) error {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	if err := serveHTTP(ctx, lis, mux); err != nil {
		return fmt.Errorf("pprof on %s: %w", lis.Addr(), err)
	}
	return nil
}
