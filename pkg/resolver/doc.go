// Package resolver is the DNS client behind smtpgate-policy's DNS checks
// (DNSBL, FCrDNS, SPF, MX): a stub resolver that asks the configured
// recursive servers and keeps the answers in a shared cache, so that a
// burst of connections from one client costs one query and every replica
// profits from what another one already asked.
//
// # What it trusts
//
// The Config is trusted: the servers it names (or /etc/resolv.conf) are the
// recursive servers whose answers are believed, and the Redis server given
// is believed to hold only what some smtpgate replica wrote there (its
// entries are still decoded defensively: garbage is a cache miss, never a
// panic). Names come from SMTP clients (HELO names, MAIL FROM domains,
// reverse-DNS names) and are not trusted: Lookup validates them (at most 253
// octets, labels of 1 to 63 letters, digits, hyphens or underscores, no
// empty label but the trailing one) and refuses an invalid name with
// ErrInvalidName, a permanent error, without sending a query.
//
// # Answers and errors
//
// Lookup follows CNAME chains inside the answer section (the recursive
// server supplies them; RFC 1034 §3.6.2) and returns the records of the
// final name for the asked type, in presentation form. The convenience
// lookups map outcomes to the classes Postfix's restrictions branch on:
//
//   - ErrNotFound: the name does not exist (NXDOMAIN).
//   - ErrNoData: the name exists but has no record of the type (NOERROR
//     with an empty answer, RFC 2308 §2.2).
//   - ErrTemporary: SERVFAIL, REFUSED or another unexpected rcode, a
//     timeout, a network error, a malformed reply, or the caller's own
//     context ending. Callers defer (4xx) on it, as Postfix does on a
//     DNS lookup failure; it is never turned into "not found".
//
// # Cache
//
// Answers are kept under the lower-cased FQDN and the type in two levels:
// a bounded in-process LRU and, when Config.Redis is set, Redis (keys
// "smtpgate:dns:TYPE:name", a compact encoding carrying the absolute
// expiry, written with SET PX). A lookup reads the in-process cache, then
// Redis, then asks DNS, and writes what DNS said to both. Identical
// lookups in flight are coalesced into one.
//
// Positive answers live for the smallest TTL of the records used (CNAMEs
// included), clamped to [MinTTL, MaxTTL]. NXDOMAIN and NODATA live for
// the smaller of the SOA record's TTL and its MINIMUM field from the
// authority section (RFC 2308 §5), capped by NegativeMaxTTL; a negative
// answer without a SOA is kept 5 minutes (capped the same way). Temporary
// failures are kept ErrorTTL, in-process only: a replica's network trouble
// must not become every replica's answer.
//
// # Failure modes
//
//   - A server that times out or fails: the next server is tried, for
//     Attempts rounds, each query bounded by Timeout; a reply with the TC
//     bit is asked again over TCP. When all fail, ErrTemporary.
//   - Redis down, slow or refusing: every Redis call is bounded by
//     RedisTimeout whatever the client's own timeouts, the lookup goes to
//     DNS directly, and Redis is left alone for RedisRetry before being
//     tried again (it is never disabled for good). Stats counts the errors
//     and fallbacks; a warning is logged at most once a minute, and a
//     note when Redis answers again.
//   - Clocks: Redis entries carry an absolute expiry, so replicas whose
//     clocks disagree keep entries a little longer or shorter.
//   - Records whose owner or data use characters outside the hostname
//     set are passed on in presentation form (escaped); callers that look
//     such a name up again get ErrInvalidName.
package resolver
