// Package e2e holds the end-to-end tests of smtpgate: they build the three
// real binaries (smtpgate-policy, smtpgate-auth, smtpgate-edge), run them on
// the example configuration of deploy/local with free loopback ports, and
// drive them with real SMTP clients (Go's net/smtp, swaks, Python's smtplib)
// from a trusted (127.0.0.1) and a stranger's (127.0.0.66) source address.
// TestScale runs them scaled out instead (cluster_test.go): HAProxy, two
// edges, two replicas each of policy and auth, one redis-server.
//
// The tests trust nothing they drive: every reply, log line and delivered
// file is checked, and every server they start (the binaries, redis-
// server, HAProxy, Postfix, next hops and DNS servers) listens on loopback
// only.
package e2e
