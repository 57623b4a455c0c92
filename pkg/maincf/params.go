package maincf

import (
	"os"
	"strings"
)

// hostDefaults derives myhostname and mydomain from the system host name as
// Postfix does: mydomain is myhostname minus its first label.
func hostDefaults() (hostname, domain string) {
	h, err := os.Hostname()
	if err != nil || h == "" {
		h = "localhost"
	}
	if !strings.Contains(h, ".") {
		h += ".localdomain"
	}
	_, d, _ := strings.Cut(h, ".")
	return h, d
}

// Shared are the parameters that more than one service reads, or that
// code in pkg reads on a service's behalf: the host's names, logging, where
// each service listens and is found, the side servers, TLS and caller
// identities between the services, and process_name. Each service's own
// parameters are defined in its params package (services/<svc>/params);
// a service's command joins Shared and the three catalogues into one with
// NewCatalogue, so that each rejects a name nobody owns.
func Shared() []Def {
	host, domain := hostDefaults()
	return []Def{
		{Name: "myhostname", Default: host, Owner: All, Listener: true},
		{Name: "mydomain", Default: domain, Owner: All},
		{Name: "mail_name", Default: "smtpgate", Owner: All},
		{Name: "smtpgate_log_format", Default: "text", Owner: All, Check: CheckOneOf("text", "json")},
		{Name: "smtpgate_log_level", Default: "info", Owner: All, Check: CheckOneOf("debug", "info", "warn", "error")},
		// Where the services listen and where the edge finds them.
		{Name: "smtpgate_policy_listen", Default: "127.0.0.1:10040", Owner: Policy},
		{Name: "smtpgate_auth_listen", Default: "127.0.0.1:10050", Owner: Auth},
		{Name: "smtpgate_policy_service", Default: "$smtpgate_policy_listen", Owner: Edge},
		{Name: "smtpgate_auth_service", Default: "$smtpgate_auth_listen", Owner: Edge | Policy},
		// Where each service serves its Prometheus metrics (GET /metrics,
		// plain HTTP); empty: not served.
		{Name: "smtpgate_edge_metrics_listen", Default: "", Owner: Edge},
		{Name: "smtpgate_policy_metrics_listen", Default: "", Owner: Policy},
		{Name: "smtpgate_auth_metrics_listen", Default: "", Owner: Auth},
		// Where each service serves Go's runtime profiles (net/http/pprof
		// under /debug/pprof/, plain HTTP); loopback only; empty: off.
		{Name: "smtpgate_edge_pprof_listen", Default: "", Owner: Edge, Check: CheckLoopbackAddr},
		{Name: "smtpgate_policy_pprof_listen", Default: "", Owner: Policy, Check: CheckLoopbackAddr},
		{Name: "smtpgate_auth_pprof_listen", Default: "", Owner: Auth, Check: CheckLoopbackAddr},
		// The deadline of each call to auth (0 is refused: every call has
		// a deadline).
		{Name: "smtpgate_auth_timeout", Default: "10s", Owner: Edge | Policy, Check: CheckPositiveDuration},
		// TLS between the services (pkg/grpctls). Server side, every gRPC
		// listener: TLS when a certificate is set; mutual TLS (a client
		// certificate signed by these CAs required) with a client CA file.
		{Name: "smtpgate_grpc_tls_cert_file", Default: "", Owner: Policy | Auth},
		{Name: "smtpgate_grpc_tls_key_file", Default: "$smtpgate_grpc_tls_cert_file", Owner: Policy | Auth},
		{Name: "smtpgate_grpc_tls_client_ca_file", Default: "", Owner: Policy | Auth},
		// Client side (edge to policy and auth, policy to auth): TLS when
		// a CA file is set (the servers' certificates are verified
		// against it only), a client certificate for mutual TLS, and the
		// name to verify instead of the host of the target.
		{Name: "smtpgate_grpc_tls_ca_file", Default: "", Owner: Edge | Policy},
		{Name: "smtpgate_grpc_tls_client_cert_file", Default: "", Owner: Edge | Policy},
		{Name: "smtpgate_grpc_tls_client_key_file", Default: "$smtpgate_grpc_tls_client_cert_file", Owner: Edge | Policy},
		{Name: "smtpgate_grpc_tls_server_name", Default: "", Owner: Edge | Policy},
		// Without TLS, gRPC listeners and targets must be loopback or
		// unix sockets; yes allows plaintext on any address.
		{Name: "smtpgate_grpc_allow_plaintext", Default: "no", Owner: All, Check: CheckBool},
		// Who may call which gRPC method (pkg/grpcserver Access). With
		// mutual TLS, the client certificate names (URI SAN, DNS SAN or
		// common name) that have each role: the edge (policy Check, AUTH,
		// user lookups), policy (user lookups), operators (reflection,
		// AdminService, Explain, Check).
		{Name: "smtpgate_grpc_edge_identities", Default: "smtpgate-edge", Owner: Policy | Auth},
		{Name: "smtpgate_grpc_policy_identities", Default: "smtpgate-policy", Owner: Policy | Auth},
		{Name: "smtpgate_grpc_operator_identities", Default: "smtpgate-operator", Owner: Policy | Auth},
		// AuthService/LookupUser calls per second and caller (certificate
		// identity, or IP address without mutual TLS), per auth process;
		// beyond it ResourceExhausted. 0: no limit.
		{Name: "smtpgate_auth_lookup_rate_limit", Default: "500", Owner: Auth, Check: CheckInt},
		// Postfix's read-only process_name: the program reading main.cf
		// (smtpgate-edge, smtpgate-policy, smtpgate-auth), so that one
		// main.cf can name a file per service, such as
		// /run/credentials/${process_name}.service/grpc.pem.
		{Name: "process_name", Default: "", Owner: All},
	}
}
