package spf_test

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/smtpgate/smtpgate/services/policy/internal/spf"
)

// zone is a Resolver over a fixed set of records; the real one adapts
// pkg/resolver.
type zone map[string][]string

func (z zone) LookupTXT(_ context.Context, name string) ([]string, error) {
	if v, ok := z[name]; ok {
		return v, nil
	}
	return nil, spf.ErrNotFound
}

func (z zone) LookupA(context.Context, string) ([]netip.Addr, error) { return nil, spf.ErrNotFound }
func (z zone) LookupAAAA(context.Context, string) ([]netip.Addr, error) {
	return nil, spf.ErrNotFound
}
func (z zone) LookupMX(context.Context, string) ([]spf.MX, error) { return nil, spf.ErrNotFound }
func (z zone) LookupPTR(context.Context, netip.Addr) ([]string, error) {
	return nil, spf.ErrNotFound
}

func ExampleCheck() {
	dns := zone{"example.com": {"v=spf1 ip4:192.0.2.0/24 -all"}}
	req := spf.Request{
		IP:       netip.MustParseAddr("192.0.2.25"),
		Sender:   "alice@example.com",
		HELO:     "mail.example.com",
		Receiver: "mx.example.net",
	}
	resp := spf.Check(context.Background(), dns, req)
	fmt.Println(resp.Result, resp.Mechanism)
	fmt.Println("Received-SPF: " + spf.ReceivedSPF(req, resp))
	// Output:
	// pass ip4:192.0.2.0/24
	// Received-SPF: pass (mx.example.net: domain of alice@example.com designates 192.0.2.25 as permitted sender) client-ip=192.0.2.25; envelope-from="alice@example.com"; helo=mail.example.com; receiver=mx.example.net; identity=mailfrom; mechanism="ip4:192.0.2.0/24";
}
