package importcf

import (
	"fmt"
	"net"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/smtpgate/smtpgate/pkg/maincf"
	"github.com/smtpgate/smtpgate/services/policy/internal/table"
)

// Where the mail goes. Postfix routes each recipient by its domain's
// address class (postconf(5), relayhost and transport(5)): mydestination
// to local_transport (local(8)), virtual_mailbox_domains to
// virtual_transport (virtual(8)), relay_domains to relay_transport, any
// other domain to default_transport, the last two by relayhost or else by
// the domain's MX hosts; transport_maps before all of them. smtpgate
// hands every accepted message to one place, smtpgate_next_hop. delivery
// translates what can be translated (relayhost, an LMTP or SMTP transport
// with a fixed destination) and moves every setting whose mail would go
// somewhere else, or be treated differently, to "behaves differently",
// saying what changes.

// postfixDefaults are Postfix 3.7's defaults (postconf -d) of the
// parameters import judges by their effect.
var postfixDefaults = map[string]string{
	"relayhost":               "",
	"mydestination":           "$myhostname, localhost.$mydomain, localhost",
	"local_recipient_maps":    "proxy:unix:passwd.byname $alias_maps",
	"local_transport":         "local:$myhostname",
	"mailbox_transport":       "",
	"virtual_transport":       "virtual",
	"relay_transport":         "relay",
	"default_transport":       "smtp",
	"relay_domains":           "",
	"queue_directory":         "/var/spool/postfix",
	"smtpd_sasl_type":         "cyrus",
	"smtpd_sasl_path":         "smtpd",
	"smtpd_sasl_auth_enable":  "no",
	"smtp_tls_security_level": "",
	"smtp_sasl_auth_enable":   "no",
	"virtual_mailbox_domains": "$virtual_mailbox_maps",
	"smtpd_tls_auth_only":     "no",
	"smtpd_tls_wrappermode":   "no",
	"compatibility_level":     "0",
}

// effective returns the value of a main.cf parameter as Postfix uses it:
// the winning setting (nil when none) and its value, or Postfix's default.
func (r *Report) effective(name string) (string, *Setting) {
	if s := r.lookup(name); s != nil {
		return s.Value, s
	}
	return postfixDefaults[name], nil
}

// effectiveList is effective split as a list, without $name references to
// lists that are empty by default.
func (r *Report) effectiveList(name string) []string {
	v, _ := r.effective(name)
	var out []string
	for _, w := range maincf.SplitList(v) {
		if ref, ok := strings.CutPrefix(w, "$"); ok {
			ref = strings.Trim(ref, "{}()")
			if rv, s := r.effective(ref); s == nil && rv == "" {
				continue
			}
		}
		out = append(out, w)
	}
	return out
}

// defaultSetting adds a setting for a parameter that main.cf does not set,
// whose Postfix default behaves differently in smtpgate.
func (r *Report) defaultSetting(name string, v Verdict, reason string) *Setting {
	s := &Setting{Pos: maincf.Pos{File: filepath.Base(r.MainPath)}, Name: name, Value: postfixDefaults[name],
		Verdict: v, Reason: reason, Default: true}
	r.Settings = append(r.Settings, s)
	return s
}

// nextHop is where smtpgate will hand every accepted message.
type nextHop struct {
	// spec is the smtpgate_next_hop value.
	spec string
	// from is the setting it was translated from; nil: smtpgate's
	// default.
	from *Setting
}

func (n nextHop) String() string {
	if n.from == nil {
		return fmt.Sprintf("smtpgate_next_hop, which the written main.cf leaves at its default %s (a Maildir under the configuration directory)", n.spec)
	}
	return fmt.Sprintf("smtpgate_next_hop = %s (written from %s %s)", n.spec, n.from.Pos, n.from.Name)
}

// route is where Postfix sends one address class.
type route struct {
	// spec is the equivalent smtpgate_next_hop; "" when there is none.
	spec string
	// desc says where Postfix sends the mail.
	desc string
	// mx: Postfix looks up the MX records of the destination (SMTP to
	// an unbracketed host name).
	mx bool
}

// hostPort reads a Postfix destination "[host]:port", "host:port",
// "[host]" or "host" (port: a number or a service name) and returns
// host:port for smtpgate with defPort when none is given; bracketed is
// whether the host was in brackets (no MX lookup).
func hostPort(dest, defPort string) (hostport string, bracketed bool, err error) {
	host, port := dest, defPort
	if rest, ok := strings.CutPrefix(host, "["); ok {
		h, after, ok := strings.Cut(rest, "]")
		if !ok {
			return "", false, fmt.Errorf("%q: missing ']'", dest)
		}
		host, bracketed = h, true
		if after != "" {
			p, ok := strings.CutPrefix(after, ":")
			if !ok {
				return "", false, fmt.Errorf("%q: text after ']'", dest)
			}
			port = p
		}
	} else if h, p, ok := strings.Cut(host, ":"); ok {
		host, port = h, p
	}
	if h, ok := strings.CutPrefix(strings.ToLower(host), "ipv6:"); ok {
		host = h
	}
	if p, ok := servicePorts[port]; ok {
		port = p
	}
	if n, err := strconv.Atoi(port); err != nil || n <= 0 || n > 65535 {
		return "", false, fmt.Errorf("%q: port %q is not a port number or a known service", dest, port)
	}
	if !validHost(host) {
		return "", false, fmt.Errorf("%q: not a host name or address", dest)
	}
	return net.JoinHostPort(host, port), bracketed, nil
}

// smtpRoute translates an SMTP destination (relayhost, or the next hop of
// an smtp(8) transport).
func smtpRoute(dest string) (route, error) {
	hp, bracketed, err := hostPort(dest, "25")
	if err != nil {
		return route{}, err
	}
	host, _, _ := net.SplitHostPort(hp)
	rt := route{spec: "smtp://" + hp, desc: dest + " by SMTP"}
	if !bracketed && net.ParseIP(host) == nil {
		rt.mx = true
		rt.desc = "the MX hosts of " + host + " by SMTP (or " + host + " itself when it has none)"
	}
	return rt, nil
}

// transportRoute is where a Postfix transport value ("name:nexthop")
// sends mail; noNexthop says where an SMTP transport without a next hop
// goes (relayhost's route, or the recipient domain's MX hosts).
func (r *Report) transportRoute(value string, noNexthop route) route {
	name, nexthop, _ := strings.Cut(strings.TrimSpace(value), ":")
	command := map[string]string{"smtp": "smtp", "relay": "smtp", "lmtp": "lmtp", "local": "local", "virtual": "virtual",
		"error": "error", "retry": "error", "discard": "discard"}[name]
	if c, ok := r.commands[name]; ok {
		command = c
	}
	switch command {
	case "local":
		return route{desc: "local(8) (alias_maps, ~/.forward, then mailbox_transport, mailbox_command, home_mailbox or /var/mail)"}
	case "virtual":
		return route{desc: "virtual(8) (the mailboxes under virtual_mailbox_base named in virtual_mailbox_maps)"}
	case "error":
		return route{desc: "error(8) (" + value + "), which bounces it"}
	case "discard":
		return route{desc: "discard(8) (" + value + "), which drops it"}
	case "smtp":
		if nexthop == "" {
			return noNexthop
		}
		rt, err := smtpRoute(nexthop)
		if err != nil {
			return route{desc: nexthop + " by SMTP"}
		}
		return rt
	case "lmtp":
		if nexthop == "" {
			return route{desc: "lmtp(8) with no destination (" + name + ")"}
		}
		if p, ok := strings.CutPrefix(nexthop, "unix:"); ok {
			if strings.Contains(p, "$") {
				return route{desc: nexthop + " by LMTP"}
			}
			if !path.IsAbs(p) {
				q, _ := r.effective("queue_directory")
				p = path.Join(q, p)
			}
			return route{spec: "lmtp+unix://" + p, desc: nexthop + " by LMTP"}
		}
		hp, _, err := hostPort(strings.TrimPrefix(nexthop, "inet:"), "24")
		if err != nil {
			return route{desc: nexthop + " by LMTP"}
		}
		return route{spec: "lmtp://" + hp, desc: nexthop + " by LMTP"}
	}
	if command == "" {
		return route{desc: fmt.Sprintf("the transport %q", value)}
	}
	return route{desc: fmt.Sprintf("the master.cf service %s (%s)", name, command)}
}

// delivery judges what decides where accepted mail goes.
func (r *Report) delivery() {
	// Where mail without a transport next hop goes: relayhost, or the MX
	// hosts of the recipient's domain.
	viaMX := route{desc: "the MX hosts of the recipient's domain by SMTP"}
	relay, relaySetting := r.effective("relayhost")
	relay, expandErr := r.expand(relay)
	var dests []string
	if expandErr == nil {
		dests = maincf.SplitList(relay)
	}
	var nh nextHop
	if d, ok := catalogue().Def("smtpgate_next_hop"); ok {
		nh.spec = d.Default
	}
	if s := r.lookup("smtpgate_next_hop"); s != nil && s.writes() {
		nh = nextHop{spec: s.Value, from: s}
	}
	defaultRoute := viaMX
	switch {
	case nh.from != nil:
	case expandErr != nil:
		relaySetting.Verdict, relaySetting.Reason = CannotHonour, "cannot translate to smtpgate_next_hop: "+expandErr.Error()
	case len(dests) > 0:
		rt, err := smtpRoute(dests[0])
		if err != nil {
			relaySetting.Verdict, relaySetting.Reason = CannotHonour, "cannot translate to smtpgate_next_hop: "+err.Error()
			break
		}
		rt.desc = "the relayhost " + relay
		defaultRoute = rt
		nh = nextHop{spec: rt.spec, from: relaySetting}
		relaySetting.mapped, relaySetting.out = true, []string{"smtpgate_next_hop = " + rt.spec}
		var diffs []string
		if rt.mx {
			host, port, _ := net.SplitHostPort(strings.TrimPrefix(rt.spec, "smtp://"))
			diffs = append(diffs, fmt.Sprintf("Postfix looks up the MX records of %s and delivers to those hosts (to %s itself only when it has none); "+
				"smtpgate connects to %s's own address, port %s, and never looks up MX records: where %s has MX records that name other hosts, "+
				"the mail goes to a different machine (relayhost = [%s]:%s says the same in Postfix)", host, host, host, port, host, host, port))
		}
		if len(dests) > 1 {
			diffs = append(diffs, fmt.Sprintf("Postfix tries %s in turn when one fails; smtpgate hands every message to the first only, "+
				"and a client gets its temporary failure (4xx) when it is down", strings.Join(dests, ", ")))
		}
		if len(diffs) > 0 {
			relaySetting.Verdict, relaySetting.keep = BehavesDifferently, true
			relaySetting.Reason = fmt.Sprintf("written as smtpgate_next_hop = %s: %s", rt.spec, strings.Join(diffs, "; "))
		} else {
			relaySetting.Verdict, relaySetting.Reason = Taken, fmt.Sprintf("written as smtpgate_next_hop = %s: the same host and port, no MX lookup, as Postfix", rt.spec)
		}
		r.relayClient(rt.spec)
	default:
		// No relayhost: an LMTP or SMTP transport that the local or
		// virtual domains use becomes the next hop when there is one.
		var cands []*Setting
		var spec string
		for _, name := range []string{"local_transport", "mailbox_transport", "virtual_transport", "relay_transport", "default_transport"} {
			s := r.lookup(name)
			if s == nil || s.Value == "" || !r.classInUse(name) {
				continue
			}
			rt := r.transportRoute(s.Value, viaMX)
			if rt.spec == "" || rt.mx {
				continue
			}
			if spec != "" && rt.spec != spec {
				cands = nil
				break
			}
			spec = rt.spec
			cands = append(cands, s)
		}
		if len(cands) > 0 {
			nh = nextHop{spec: spec, from: cands[0]}
			cands[0].mapped, cands[0].out = true, []string{"smtpgate_next_hop = " + spec}
		}
	}

	routes := map[string]route{}
	for _, name := range []string{"local_transport", "virtual_transport", "relay_transport", "default_transport", "mailbox_transport", "fallback_transport"} {
		v, _ := r.effective(name)
		routes[name] = r.transportRoute(v, defaultRoute)
	}

	// Mail for other domains (relayed for mynetworks and SASL clients):
	// relayhost, or MX delivery.
	if len(dests) == 0 && expandErr == nil && routes["default_transport"] == viaMX {
		reason := fmt.Sprintf("Postfix delivers mail for other domains (relayed for mynetworks and SASL-authenticated clients) itself, to the MX hosts of each recipient's domain; "+
			"smtpgate looks up no MX records and hands that mail to %s. Set smtpgate_next_hop (or relayhost, in Postfix's form) to the host that should deliver it", nh)
		if relaySetting != nil {
			if relaySetting.Verdict != CannotHonour {
				relaySetting.Verdict, relaySetting.Reason = BehavesDifferently, reason
			}
		} else {
			r.defaultSetting("relayhost", BehavesDifferently, reason)
		}
	}

	// The transports: equal to the next hop, or mail goes elsewhere.
	classOf := map[string]string{"local_transport": "mydestination", "mailbox_transport": "mydestination", "fallback_transport": "mydestination",
		"virtual_transport": "virtual_mailbox_domains", "relay_transport": "relay_domains", "default_transport": "other domains"}
	for _, name := range []string{"local_transport", "mailbox_transport", "fallback_transport", "virtual_transport", "relay_transport", "default_transport"} {
		s := r.lookup(name)
		if s == nil || s.Value == "" || s.Value == postfixDefaults[name] || s.Verdict == CannotHonour {
			continue
		}
		if !r.classInUse(name) {
			s.Reason = fmt.Sprintf("%s (no %s to deliver)", s.Reason, classOf[name])
			continue
		}
		rt := routes[name]
		switch {
		case s == nh.from:
			s.Verdict, s.Reason = Taken, fmt.Sprintf("written as smtpgate_next_hop = %s: the mail for %s goes where Postfix sends it", nh.spec, classOf[name])
		case rt.spec != "" && rt.spec == nh.spec:
			s.Verdict, s.Reason = Taken, fmt.Sprintf("the same destination as smtpgate_next_hop = %s", nh.spec)
			s.mapped, s.out = true, nil
		case name == "mailbox_transport" || name == "fallback_transport":
			if routes["local_transport"].spec == nh.spec && nh.spec != "" {
				continue // local(8) is not used
			}
			s.Verdict = BehavesDifferently
			s.Reason = fmt.Sprintf("Postfix's local(8) hands mailbox deliveries for mydestination to %s (after alias_maps and ~/.forward); smtpgate hands all mail to %s", rt.desc, nh)
		default:
			s.Verdict = BehavesDifferently
			s.Reason = fmt.Sprintf("Postfix sends the mail for %s to %s; smtpgate hands it to %s", classOf[name], rt.desc, nh)
		}
	}

	// The address classes.
	if len(r.effectiveList("mydestination")) > 0 {
		rt := routes["local_transport"]
		if rt.spec == "" || rt.spec != nh.spec {
			skipped := "no alias expansion, no .forward, no local mailbox"
			if mb := routes["mailbox_transport"]; mb.spec != "" && mb.spec == nh.spec {
				skipped = "no alias expansion, no .forward: the mailbox deliveries go where mailbox_transport sends them"
			}
			reason := fmt.Sprintf("smtpgate-policy takes these as its local domains, but where Postfix hands their mail to %s, "+
				"smtpgate hands it, with the recipient as the client wrote it (%s), to %s", rt.desc, skipped, nh)
			r.classSetting("mydestination", reason)
		}
	}
	if len(r.effectiveList("virtual_mailbox_domains")) > 0 {
		rt := routes["virtual_transport"]
		if rt.spec == "" || rt.spec != nh.spec {
			r.classSetting("virtual_mailbox_domains", fmt.Sprintf("smtpgate-policy takes these as virtual mailbox domains (recipients checked against virtual_mailbox_maps), "+
				"but where Postfix hands their mail to %s, smtpgate hands it to %s", rt.desc, nh))
		}
	}
	if len(r.effectiveList("relay_domains")) > 0 {
		rt := routes["relay_transport"]
		if rt.spec == "" || rt.spec != nh.spec {
			r.classSetting("relay_domains", fmt.Sprintf("smtpgate-policy relays for these domains, but where Postfix sends their mail to %s, smtpgate hands it to %s", rt.desc, nh))
		}
	}
	if s := r.lookup("virtual_alias_maps"); s != nil && s.Value != "" && s.writes() {
		s.Verdict, s.keep = BehavesDifferently, true
		s.Reason = fmt.Sprintf("smtpgate-policy uses it only to refuse unknown recipients (550 5.1.1 ... User unknown in virtual alias table); "+
			"Postfix also rewrites each listed address to its targets before delivery: smtpgate hands the message to %s under the address the client gave, "+
			"so the aliases are followed only if the next hop has the same table", nh)
	}
	for _, name := range []string{"transport_maps", "sender_dependent_relayhost_maps", "sender_dependent_default_transport_maps"} {
		if s := r.lookup(name); s != nil && s.Value != "" {
			s.Verdict = BehavesDifferently
			s.Reason = fmt.Sprintf("Postfix routes the addresses, domains or senders this table lists to their own destinations; smtpgate routes nothing: it hands all mail to %s", nh)
		}
	}
	r.localRecipients(nh)
}

// classSetting marks the setting of an address class (or Postfix's
// default for it) as behaving differently; it is still written.
func (r *Report) classSetting(name, reason string) {
	s := r.lookup(name)
	if s == nil {
		r.defaultSetting(name, BehavesDifferently, reason)
		return
	}
	if s.writes() {
		s.Verdict, s.keep, s.Reason = BehavesDifferently, true, reason
	}
}

// classInUse reports whether the address class a transport serves has
// domains.
func (r *Report) classInUse(transport string) bool {
	switch transport {
	case "local_transport", "mailbox_transport", "fallback_transport":
		return len(r.effectiveList("mydestination")) > 0
	case "virtual_transport":
		return len(r.effectiveList("virtual_mailbox_domains")) > 0
	case "relay_transport":
		return len(r.effectiveList("relay_domains")) > 0
	}
	return true
}

// relayClient judges the SMTP client settings that apply to mail for the
// relayhost, now smtpgate's hand-off, which has neither TLS nor SASL.
func (r *Report) relayClient(spec string) {
	if s := r.lookup("smtp_tls_security_level"); s != nil {
		switch strings.ToLower(s.Value) {
		case "", "none":
		case "may":
			s.Verdict = BehavesDifferently
			s.Reason = fmt.Sprintf("Postfix encrypts the mail to the relayhost when it offers STARTTLS; smtpgate's hand-off to %s never uses TLS: the mail crosses the network in clear", spec)
		default:
			s.Verdict = CannotHonour
			s.Reason = fmt.Sprintf("Postfix refuses to send to the relayhost without TLS; smtpgate's hand-off to %s has no TLS and would send in clear", spec)
		}
	}
	for _, name := range []string{"smtp_use_tls", "smtp_enforce_tls"} {
		if s := r.lookup(name); s != nil && strings.EqualFold(s.Value, "yes") {
			s.Verdict = CannotHonour
			s.Reason = fmt.Sprintf("smtpgate's hand-off to %s has no TLS", spec)
		}
	}
	if s := r.lookup("smtp_sasl_auth_enable"); s != nil && strings.EqualFold(s.Value, "yes") {
		s.Verdict = CannotHonour
		s.Reason = fmt.Sprintf("Postfix logs in to the relayhost (smtp_sasl_password_maps); smtpgate's hand-off to %s cannot authenticate, so a relay that requires it refuses the mail", spec)
	}
}

// localRecipients judges local_recipient_maps: Postfix's default refuses
// local parts that are no UNIX account and no alias.
func (r *Report) localRecipients(nh nextHop) {
	if len(r.effectiveList("mydestination")) == 0 {
		if s := r.lookup("local_recipient_maps"); s != nil && s.Verdict == CannotHonour {
			s.Verdict, s.Reason, s.Errors = Ignored, "mydestination is empty: no local recipients to look up", nil
		}
		return
	}
	s := r.lookup("local_recipient_maps")
	if s != nil && (s.Value == "" || s.writes()) {
		return // taken as written
	}
	value := postfixDefaults["local_recipient_maps"]
	if s != nil {
		value = s.Value
	}
	var unread []string
	for _, w := range maincf.SplitList(value) {
		if strings.HasPrefix(w, "$") || strings.Contains(w, "unix:passwd") || !tableReadable(w) {
			unread = append(unread, w)
		}
	}
	then := "the next hop may still refuse it at RCPT TO"
	if strings.HasPrefix(nh.spec, "maildir:") {
		then = "every such message is written to the Maildir"
	}
	reason := fmt.Sprintf("Postfix refuses RCPT TO a local part of mydestination that %s does not list (UNIX accounts and aliases): "+
		"\"550 5.1.1 <user@domain>: Recipient address rejected: User unknown in local recipient table\"; smtpgate cannot read %s, "+
		"so the written main.cf leaves local_recipient_maps empty and smtpgate accepts every local part (%s). "+
		"To keep the refusal, set local_recipient_maps = auth:users (smtpgate-auth's users%s) or a table of the valid addresses",
		value, strings.Join(unread, ", "), then, userdbHint(r))
	if s == nil {
		r.defaultSetting("local_recipient_maps", BehavesDifferently, reason)
		return
	}
	s.Verdict, s.Reason, s.keep = BehavesDifferently, reason, false
}

// tableReadable reports whether a table spec names a type smtpgate reads.
func tableReadable(spec string) bool {
	t := spec
	for {
		typ, rest, ok := strings.Cut(t, ":")
		if !ok {
			return false
		}
		if typ != "proxy" {
			return typ == "auth" || slices.Contains(table.Supported, typ)
		}
		t = rest
	}
}

// validHost reports whether h is an IP address or a host name (letters,
// digits, '-', '_' and dots between labels).
func validHost(h string) bool {
	if net.ParseIP(h) != nil {
		return true
	}
	if h == "" || strings.HasPrefix(h, ".") || strings.Contains(h, "..") {
		return false
	}
	for _, c := range h {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// expand replaces the $name, ${name} and $(name) references of a value
// with the values main.cf gives those parameters; a parameter main.cf
// does not set is an error (its Postfix default may depend on the
// machine).
func (r *Report) expand(v string) (string, error) {
	for range 10 {
		m := refPattern.FindStringSubmatchIndex(v)
		if m == nil {
			return v, nil
		}
		name := v[m[2]:m[3]]
		s := r.lookup(name)
		if s == nil {
			return "", fmt.Errorf("$%s is not set in main.cf: write the host in place", name)
		}
		end := m[1]
		if end < len(v) && (v[end] == '}' || v[end] == ')') && m[0]+1 < len(v) && (v[m[0]+1] == '{' || v[m[0]+1] == '(') {
			end++
		}
		v = v[:m[0]] + s.Value + v[end:]
	}
	return "", fmt.Errorf("too many $name references")
}

// userdbHint says where auth:users finds Dovecot's users when the
// configuration uses Dovecot SASL and smtpgate can ask Dovecot's userdb.
func userdbHint(r *Report) string {
	if _, ok := catalogue().Def("smtpgate_dovecot_userdb_path"); !ok {
		return ""
	}
	if v, _ := r.effective("smtpd_sasl_type"); v != "dovecot" {
		return ""
	}
	return "; with Dovecot, smtpgate_dovecot_userdb_path = private/auth-userdb asks Dovecot's userdb"
}
