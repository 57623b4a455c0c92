package importcf

import (
	_ "embed"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/smtpgate/smtpgate/pkg/maincf"
	authparams "github.com/smtpgate/smtpgate/services/auth/params"
	edgeparams "github.com/smtpgate/smtpgate/services/edge/params"
	policyparams "github.com/smtpgate/smtpgate/services/policy/params"
)

// Verdict is what smtpgate does with one Postfix setting.
type Verdict int

// The verdicts, in the order the report lists them.
const (
	// Taken: smtpgate reads the parameter and honours it as written.
	Taken Verdict = iota
	// Ignored: a Postfix parameter that does not matter to an SMTP front
	// door without a queue.
	Ignored
	// BehavesDifferently: smtpgate takes the setting (or Postfix's
	// default for it) but what happens to the mail changes; Reason says
	// exactly what. The setting may still be written (relayhost, as
	// smtpgate_next_hop) or not (a local_recipient_maps smtpgate cannot
	// read).
	BehavesDifferently
	// CannotHonour: a parameter that changes what Postfix's smtpd does,
	// which smtpgate does not implement (yet).
	CannotHonour
	// Unknown: not a Postfix parameter at all.
	Unknown
)

func (v Verdict) String() string {
	switch v {
	case Taken:
		return "taken"
	case Ignored:
		return "ignored"
	case BehavesDifferently:
		return "behaves differently"
	case CannotHonour:
		return "cannot honour"
	case Unknown:
		return "unknown"
	}
	return fmt.Sprintf("Verdict(%d)", int(v))
}

// postfixParamsText is the list of Postfix's built-in parameter names; see
// its header for how it was made.
//
//go:embed postfix_params.txt
var postfixParamsText string

var postfixParams = sync.OnceValue(func() map[string]bool {
	m := map[string]bool{}
	for _, l := range strings.Split(postfixParamsText, "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			m[l] = true
		}
	}
	return m
})

// IsPostfixParam reports whether name is a built-in Postfix 3.7 parameter.
func IsPostfixParam(name string) bool { return postfixParams()[name] }

// transportSuffixes are the endings of the per-transport parameters that
// Postfix derives from each master.cf service name ("dovecot_destination_recipient_limit").
var transportSuffixes = []string{
	"_delivery_slot_cost", "_delivery_slot_discount", "_delivery_slot_loan",
	"_destination_concurrency_failed_cohort_limit", "_destination_concurrency_limit",
	"_destination_concurrency_negative_feedback", "_destination_concurrency_positive_feedback",
	"_destination_rate_delay", "_destination_recipient_limit", "_extra_recipient_limit",
	"_initial_destination_concurrency", "_minimum_delivery_slots", "_recipient_limit",
	"_recipient_refill_delay", "_recipient_refill_limit", "_time_limit", "_transport_rate_delay",
}

// transportParam returns the transport a per-transport parameter is for.
func transportParam(name string) (string, bool) {
	for _, s := range transportSuffixes {
		if t, ok := strings.CutSuffix(name, s); ok && t != "" {
			return t, true
		}
	}
	return "", false
}

// rule classifies Postfix parameters that smtpgate's catalogue lacks.
type rule struct {
	exact    []string
	prefix   []string
	contains []string
	suffix   []string
	verdict  Verdict
	reason   string
}

func (r rule) match(name string) bool {
	if slices.Contains(r.exact, name) {
		return true
	}
	for _, p := range r.prefix {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	for _, s := range r.contains {
		if strings.Contains(name, s) {
			return true
		}
	}
	for _, s := range r.suffix {
		if strings.HasSuffix(name, s) {
			return true
		}
	}
	return false
}

const (
	reasonQueue   = "queue and scheduling: smtpgate has no queue, it hands each message on during the session"
	reasonRouting = "routing: smtpgate hands accepted mail to smtpgate_next_hop"
	reasonLocal   = "local delivery: done by the next hop, not by an SMTP front door"
	reasonClient  = "SMTP/LMTP client: smtpgate's hand-off is set with smtpgate_next_hop"
	reasonSMTPD   = "smtpd feature smtpgate does not implement yet"
)

// rules are tried in order; the first match wins.
var rules = []rule{
	// Harmless smtpd settings first, so that the smtpd_* rule below does
	// not catch them.
	{exact: []string{"smtpd_tls_session_cache_database", "smtpd_tls_loglevel"},
		verdict: Ignored, reason: "TLS session cache database and logging: smtpgate resumes sessions with tickets only (smtpd_tls_session_cache_timeout, smtpgate_tls_session_ticket_keys_file)"},
	{prefix: []string{"postscreen_", "dnsblog_"}, exact: []string{"postscreen"},
		verdict: CannotHonour, reason: "postscreen is not implemented: there is no pre-SMTP screening"},
	{exact: []string{"non_smtpd_milters"},
		verdict: Ignored, reason: "milters for mail not received over SMTP (sendmail, pickup)"},
	{contains: []string{"milter"},
		verdict: CannotHonour, reason: "milters are not supported"},
	{exact: []string{"header_checks", "body_checks", "mime_header_checks", "nested_header_checks", "body_checks_size_limit"},
		verdict: CannotHonour, reason: "no content inspection in the edge: the message goes to the next hop as received; check it there"},
	{exact: []string{"content_filter"},
		verdict: CannotHonour, reason: "no content filter: point smtpgate_next_hop at the filter instead"},
	{prefix: []string{"smtpd_sasl_"}, exact: []string{"cyrus_sasl_config_path", "broken_sasl_auth_clients"},
		verdict: CannotHonour, reason: "SASL setting smtpgate does not have: smtpgate-auth checks passwords itself (smtpgate_passwd_file, smtpgate_sasl_mechanisms) or through Dovecot (smtpd_sasl_type = dovecot), never through Cyrus"},
	{prefix: []string{"smtpd_tls_", "smtpd_enforce_tls", "smtpd_use_tls"}, exact: []string{"relay_clientcerts"},
		verdict: CannotHonour, reason: "TLS setting smtpgate does not have (it reads " + strings.Join(catalogueWithPrefix("smtpd_tls_"), ", ") + ")"},
	{prefix: []string{"tls_"},
		verdict: CannotHonour, reason: "TLS library setting: smtpgate uses Go's crypto/tls defaults"},
	{exact: []string{"strict_rfc821_envelopes", "allow_untrusted_routing", "permit_mx_backup_networks", "maps_rbl_domains",
		"rbl_reply_maps", "default_rbl_reply", "proxy_interfaces", "smtpd_proxy_filter"},
		verdict: CannotHonour, reason: reasonSMTPD},
	{contains: []string{"_restriction"},
		verdict: CannotHonour, reason: "restriction list smtpgate does not have"},
	{exact: []string{"mynetworks_style"},
		verdict: CannotHonour, reason: "smtpgate derives nothing from the network interfaces: its default mynetworks is " + mustDefault("mynetworks") + "; set mynetworks instead"},
	{suffix: []string{"_reject_code", "_defer_code", "_tempfail_action", "_reject_reason"},
		verdict: CannotHonour, reason: "reply setting of an smtpd check smtpgate does not implement yet"},
	{prefix: []string{"smtpd_"},
		verdict: CannotHonour, reason: reasonSMTPD},

	{exact: []string{"inet_interfaces", "inet_protocols"},
		verdict: Ignored, reason: "listening addresses: smtpgate listens on the host:port of each master.cf service"},
	{prefix: []string{"smtp_", "lmtp_", "smtputf8_autodetect", "tlsproxy_", "connection_cache_", "scache_", "smtp_sasl_"},
		exact:   []string{"smtputf8_autodetect_classes"},
		verdict: Ignored, reason: reasonClient},
	{prefix: []string{"local_", "alias_", "mailbox_", "forward_", "allow_mail_to_", "command_", "fallback_transport", "sun_mailtool", "owner_request"},
		exact: []string{"home_mailbox", "mail_spool_directory", "luser_relay", "biff", "expand_owner_alias", "prepend_delivered_header",
			"require_home_directory", "strict_mailbox_ownership", "recipient_delimiter", "propagate_unmatched_extensions",
			"allow_min_user", "enable_original_recipient", "frozen_delivered_to", "daemon_timeout", "ipc_timeout"},
		verdict: Ignored, reason: reasonLocal},
	{prefix: []string{"virtual_"},
		verdict: Ignored, reason: "virtual(8) delivery agent: done by the next hop"},
	{prefix: []string{"bounce_", "2bounce_", "delay_", "error_notice", "notify_", "double_bounce", "backwards_bounce"},
		suffix:  []string{"_notice_recipient", "_template_file"},
		verdict: Ignored, reason: "bounces and notices: smtpgate refuses in the SMTP session and never writes a bounce"},
	{prefix: []string{"qmgr_", "queue_", "hash_queue_", "maximal_", "minimal_backoff", "default_delivery_slot", "default_destination_",
		"default_extra_recipient", "default_minimum_delivery", "default_recipient_", "default_transport_rate", "defer_", "deliver_lock_",
		"initial_destination_concurrency", "destination_concurrency", "transport_retry_time", "fast_flush_", "flush_", "in_flow_delay",
		"duplicate_filter_limit", "confirm_delay_cleared", "dont_remove"},
		contains: []string{"_queue_"},
		verdict:  Ignored, reason: reasonQueue},
	{prefix: []string{"relay", "transport_maps", "default_transport", "fallback_relay", "sender_dependent_", "empty_address_", "address_verify_",
		"default_filter_nexthop", "internal_mail_filter", "best_mx_transport", "disable_dns_lookups", "ignore_mx_lookup_error"},
		suffix:  []string{"_transport", "_transport_maps"},
		verdict: Ignored, reason: reasonRouting},
	{prefix: []string{"canonical_", "sender_canonical", "recipient_canonical", "masquerade_", "append_", "remote_header_rewrite",
		"local_header_rewrite", "always_", "cleanup_", "header_", "swap_bangpath", "allow_percent_hack", "resolve_", "myorigin",
		"receive_override_options", "hopcount_limit", "message_", "undisclosed_recipients", "enable_long_queue_ids", "mime_",
		"strict_7bit", "strict_8bitmime", "strict_mime", "disable_mime", "detect_8bit", "enable_errors_to", "info_log_address_format",
		"message_drop_headers", "sender_bcc", "recipient_bcc", "auto_8bit"},
		suffix:  []string{"_bcc_maps", "_canonical_maps", "_canonical_classes"},
		verdict: Ignored, reason: "address rewriting and cleanup(8): left to the next hop"},
	{prefix: []string{"syslog_", "maillog_", "debug_", "postlog", "trace_"},
		verdict: Ignored, reason: "logging: smtpgate logs as smtpgate_log_format and smtpgate_log_level say"},
	{suffix: []string{"_directory", "_path", "_owner", "_group", "_environment"},
		prefix: []string{"compatibility_level", "default_privs", "multi_instance", "master_", "process_", "shlib_", "meta_directory",
			"default_process_limit", "default_database_type", "default_cache_db_type", "lock_", "stale_lock_time", "daemon_", "config_",
			"alternate_config_directories", "mail_version", "mail_release_date", "meta_", "service_", "max_idle", "max_use",
			"fork_", "transport_retry_time", "line_length", "mydomain_fallback"},
		verdict: Ignored, reason: "Postfix installation and process management: smtpgate has its own"},
}

// mustDefault is the default of one of smtpgate's parameters.
func mustDefault(name string) string {
	d, _ := catalogue().Def(name)
	return d.Default
}

// catalogueWithPrefix lists smtpgate's parameters starting with prefix.
func catalogueWithPrefix(prefix string) []string {
	var out []string
	for _, n := range catalogue().Names() {
		if strings.HasPrefix(n, prefix) {
			out = append(out, n)
		}
	}
	return out
}

// Classify says what smtpgate does with a main.cf parameter, from its name
// alone: taken if smtpgate's catalogue has it (whichever service reads
// it), else by Postfix subsystem for a Postfix 3.7 parameter, else
// unknown with a suggestion. Restriction classes, user-defined
// parameters, per-transport names and values are judged by Import.
func Classify(name string) (Verdict, string) {
	if d, ok := catalogue().Def(name); ok {
		return Taken, "read by smtpgate-" + d.Owner.String()
	}
	if !IsPostfixParam(name) {
		return Unknown, "not a Postfix 3.7 parameter" + suggest(name)
	}
	for _, r := range rules {
		if r.match(name) {
			return r.verdict, r.reason
		}
	}
	return Ignored, "Postfix subsystem not involved in receiving SMTP mail"
}

// suggest names a known parameter (Postfix's or smtpgate's) close to name.
func suggest(name string) string {
	best, bestD := "", 3
	if len(name) < 6 {
		bestD = 2
	}
	consider := func(n string) {
		if d := maincf.EditDistance(n, name); d < bestD || d == bestD && n < best {
			best, bestD = n, d
		}
	}
	for n := range postfixParams() {
		consider(n)
	}
	for _, n := range catalogue().Names() {
		consider(n)
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %s?)", best)
}

// catalogue is every parameter smtpgate knows (as each service's command
// reads main.cf): the output is checked against it. Built once: Classify
// and the report ask it for every parameter of the imported main.cf.
var catalogue = sync.OnceValue(func() *maincf.Catalogue {
	return maincf.NewCatalogue(slices.Concat(maincf.Shared(), edgeparams.Defs(), policyparams.Defs(), authparams.Defs())...)
})
