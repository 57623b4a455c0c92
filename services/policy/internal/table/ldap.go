package table

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/go-ldap/ldap/v3"
)

// LDAPParams are the parameters of ldap_table(5) that an ldap: table's
// .cf file may set; any other name is refused with its file:line.
// Postfix ignores the cache parameters (with a warning), and so does
// smtpgate; see openLDAP for the ones refused by value.
var LDAPParams = []string{
	"server_host", "server_port", "timeout", "search_base", "query_filter",
	"result_format", "result_filter", "domain", "result_attribute",
	"special_result_attribute", "terminal_result_attribute",
	"leaf_result_attribute", "scope", "bind", "bind_dn", "bind_pw",
	"cache", "cache_expiry", "cache_size", "recursion_limit",
	"expansion_limit", "size_limit", "dereference", "chase_referrals",
	"version", "debuglevel", "sasl_mechs", "sasl_realm", "sasl_authz_id",
	"sasl_minssf", "start_tls", "tls_ca_cert_dir", "tls_ca_cert_file",
	"tls_cert", "tls_key", "tls_require_cert", "tls_random_file",
	"tls_cipher_suite",
}

// ldapTable is "ldap:/etc/postfix/x.cf" (ldap_table(5)), looked up as
// Postfix 3.7's dict_ldap.c does: the search base and the filter are
// expanded from the key (RFC 4514 and RFC 4515 escaping), the listed
// result attributes of every entry found are expanded with
// result_format and joined with commas, DN and LDAP URL values of the
// special result attributes are searched in turn. Connections are
// opened on first use and kept for the next lookups (at most
// Options.PoolSize at once, none unused for more than 100 s); one that
// fails is dropped, and a lookup
// whose kept connection turns out dead is tried once more on a new one,
// as Postfix reconnects on LDAP_SERVER_DOWN.
type ldapTable struct {
	spec string
	// urls are the servers, tried in order when connecting.
	urls []string
	// base and filter are the search_base and query_filter templates;
	// filter also holds result_format.
	base, filter templates
	dynamicBase  bool
	scope        int
	deref        int
	// attrs are the result attributes in Postfix's order: terminal,
	// leaf-only, ordinary, then special ones (dict_ldap_open()).
	attrs                               []string
	numTerminal, numLeaf, numAttributes int
	bind                                bool
	bindDN, bindPW                      string
	startTLS                            bool
	tls                                 *tls.Config
	timeout                             time.Duration
	sizeLimit, expansionLimit           int
	recursionLimit                      int
	domain                              *domainFilter
	opts                                Options

	slots  chan struct{} // one per connection in use
	mu     sync.Mutex    // guards idle and closed
	idle   []idleLDAPConn
	closed bool
}

// idleLDAPConn is a kept connection and when it was last used.
type idleLDAPConn struct {
	*ldap.Conn
	since time.Time
}

// ldapMaxIdle is how long a connection is kept unused: Postfix's
// proxymap and smtpd processes, which hold its LDAP connections, exit
// after max_idle (100 s) without work, and a connection idle for longer
// may have been dropped silently by a firewall on the way.
const ldapMaxIdle = 100 * time.Second

// Postfix's bind values (bindopt_table in dict_ldap.c).
var ldapBindValues = map[string]string{"yes": "simple", "simple": "simple", "no": "none", "none": "none", "sasl": "sasl"}

// openLDAP reads an ldap_table(5) .cf file. Nothing is connected here:
// the first lookup connects. What Postfix only warns about and then
// replaces by a default (an unknown scope, version or dereference
// value, a server_host that is not a valid URL) is refused here with
// the file:line, as smtpgate refuses bad table lines; what smtpgate
// cannot do is refused with the reason (bind = sasl, chase_referrals =
// yes).
func openLDAP(spec, path string, opts Options) (Table, error) {
	f, err := readCF("ldap", path, LDAPParams)
	if err != nil {
		return nil, err
	}
	return newLDAPTable(spec, f, opts)
}

// newLDAPTable makes the table of a parsed .cf file.
func newLDAPTable(spec string, f *cfFile, opts Options) (*ldapTable, error) {
	var err error
	t := &ldapTable{spec: spec, opts: opts}
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	yesNo := func(name string) bool {
		v, err := cfBool(f, name)
		add(err)
		return v
	}

	port, err := f.integer("server_port", 389, 0)
	add(err)
	version, err := f.integer("version", 2, 2)
	add(err)
	if version != 2 && version != 3 {
		add(f.errorf("version", "%d: want 2 or 3", version))
	}
	for _, h := range strings.FieldsFunc(f.str("server_host", "localhost"), func(r rune) bool { return r == ',' || r == ' ' || r == '\t' }) {
		u, err := ldapServerURL(h, port)
		if err != nil {
			add(f.errorf("server_host", "%v", err))
			continue
		}
		t.urls = append(t.urls, u)
	}
	if len(t.urls) == 0 && len(errs) == 0 {
		add(f.errorf("server_host", "no server"))
	}

	switch strings.ToLower(f.str("scope", "sub")) {
	case "sub":
		t.scope = ldap.ScopeWholeSubtree
	case "one":
		t.scope = ldap.ScopeSingleLevel
	case "base":
		t.scope = ldap.ScopeBaseObject
	default:
		add(f.errorf("scope", "%q: want sub, one or base", f.str("scope", "")))
	}

	timeout, err := f.integer("timeout", 10, 0)
	add(err)
	t.timeout = time.Duration(timeout) * time.Second
	if t.timeout <= 0 || t.timeout > opts.QueryTimeout {
		// Bounded by the policy's own per-lookup budget, so that
		// the policy answers before the edge gives up on it.
		t.timeout = opts.QueryTimeout
	}

	result := f.str("result_format", f.str("result_filter", "%s"))
	if result == "" {
		add(f.errorf("result_format", "must not be empty"))
	}
	base := f.str("search_base", "")
	t.base, err = parseTemplates(base, "%s")
	if err != nil {
		add(f.errorf("search_base", "%v", err))
	}
	t.dynamicBase = t.base.dynamic
	filter := f.str("query_filter", "(mailacceptinggeneralid=%s)")
	t.filter, err = parseTemplates(filter, result)
	switch {
	case err != nil && strings.Contains(err.Error(), "result_format"):
		add(f.errorf("result_format", "%v", err))
	case err != nil:
		add(f.errorf("query_filter", "%v", err))
	case !t.filter.dynamic:
		// Postfix warns "Fixed query_filter %s is probably
		// useless"; as for the SQL tables' query, it is an error.
		add(f.errorf("query_filter", "%q does not use the lookup key (%%s, %%u, %%d, %%S, %%U, %%D or %%1..%%9)", filter))
	}
	if err == nil {
		if _, ferr := ldap.CompileFilter(ldapFilterParens(strings.NewReplacer("%%", "%", "%s", "x", "%u", "x", "%d", "x", "%S", "x", "%U", "x", "%D", "x",
			"%1", "x", "%2", "x", "%3", "x", "%4", "x", "%5", "x", "%6", "x", "%7", "x", "%8", "x", "%9", "x").Replace(filter))); ferr != nil {
			add(f.errorf("query_filter", "%q is not an LDAP filter (RFC 4515): %v", filter, ferr))
		}
	}
	if t.domain, err = parseDomainFilter(f.str("domain", "")); err != nil {
		add(f.errorf("domain", "%v", err))
	}

	split := func(name, def string) []string {
		return strings.FieldsFunc(f.str(name, def), func(r rune) bool { return r == ',' || r == ' ' || r == '\t' })
	}
	t.attrs = append(t.attrs, split("terminal_result_attribute", "")...)
	t.numTerminal = len(t.attrs)
	t.attrs = append(t.attrs, split("leaf_result_attribute", "")...)
	t.numLeaf = len(t.attrs) - t.numTerminal
	t.attrs = append(t.attrs, split("result_attribute", "maildrop")...)
	t.numAttributes = len(t.attrs)
	t.attrs = append(t.attrs, split("special_result_attribute", "")...)

	switch ldapBindValues[strings.ToLower(f.str("bind", "yes"))] {
	case "simple":
		t.bind = true
	case "none":
	case "sasl":
		add(f.errorf("bind", "sasl: SASL binds are not supported; use bind = yes with bind_dn and bind_pw (over ldaps:// or start_tls), or bind = no"))
	default:
		add(f.errorf("bind", "%q: want yes, no, simple or none", f.str("bind", "")))
	}
	t.bindDN, t.bindPW = f.str("bind_dn", ""), f.str("bind_pw", "")

	for _, n := range []string{"cache", "cache_expiry", "cache_size"} {
		if f.isSet(n) {
			opts.Logger.Warn("ldap table: ignoring "+n+" (Postfix ignores it too)", "table", spec, "at", f.pos(n))
		}
	}
	if t.recursionLimit, err = f.integer("recursion_limit", 1000, 1); err != nil {
		add(err)
	}
	if t.expansionLimit, err = f.integer("expansion_limit", 0, 0); err != nil {
		add(err)
	}
	if t.sizeLimit, err = f.integer("size_limit", t.expansionLimit, 0); err != nil {
		add(err)
	}
	if t.deref, err = f.integer("dereference", 0, 0); err != nil {
		add(err)
	} else if t.deref > 3 {
		add(f.errorf("dereference", "%d: want 0 (never), 1 (searching), 2 (finding) or 3 (always)", t.deref))
	}
	if yesNo("chase_referrals") {
		add(f.errorf("chase_referrals", "yes: referrals are not followed; name every server in server_host"))
	}
	if _, err := f.integer("debuglevel", 0, 0); err != nil {
		add(err)
	}
	if _, err := f.integer("sasl_minssf", 0, 0); err != nil {
		add(err)
	}

	t.startTLS = yesNo("start_tls")
	requireCert := yesNo("tls_require_cert")
	t.tls, err = ldapTLSConfig(f, requireCert)
	add(err)
	if f.isSet("tls_cipher_suite") {
		opts.Logger.Warn("ldap table: ignoring tls_cipher_suite (an OpenSSL cipher list); Go's TLS 1.2+ suites are used",
			"table", spec, "at", f.pos("tls_cipher_suite"))
	}
	usesTLS := t.startTLS
	for _, u := range t.urls {
		usesTLS = usesTLS || strings.HasPrefix(u, "ldaps://")
	}
	if usesTLS && !requireCert {
		opts.Logger.Warn("ldap table: the server's certificate is not verified (tls_require_cert = no, Postfix's default); set tls_require_cert = yes",
			"table", spec, "at", f.pos("tls_require_cert"))
	}
	if !usesTLS && t.bind && t.bindPW != "" {
		for _, u := range t.urls {
			if !strings.HasPrefix(u, "ldapi://") {
				opts.Logger.Warn("ldap table: bind_pw is sent in clear text (no ldaps:// or start_tls)", "table", spec, "at", f.pos("bind_pw"))
				break
			}
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("table %s: %w", spec, errors.Join(errs...))
	}
	t.slots = make(chan struct{}, opts.poolSize())
	return t, nil
}

// cfBool reads a yes/no setting (cfg_get_bool: default no).
func cfBool(f *cfFile, name string) (bool, error) {
	switch v := strings.ToLower(f.str(name, "no")); v {
	case "yes", "true", "1":
		return true, nil
	case "no", "false", "0":
		return false, nil
	}
	return false, f.errorf(name, "%q: want yes or no", f.str(name, ""))
}

// ldapServerURL makes one server_host entry a URL as Postfix does for
// OpenLDAP: an ldap://, ldaps:// or ldapi:// URL is taken as it is;
// "host:port" becomes ldap://host:port and "host" ldap://host:port with
// server_port.
func ldapServerURL(h string, port int) (string, error) {
	lower := strings.ToLower(h)
	if strings.HasPrefix(lower, "ldapi://") {
		// The host is the socket's path, percent-encoded (RFC 4516
		// and draft-chu-ldap-ldapi), which net/url refuses.
		host, _, _ := strings.Cut(h[len("ldapi://"):], "/")
		if _, err := url.PathUnescape(host); err != nil {
			return "", fmt.Errorf("%q: not a valid ldapi:// URL: %v", h, err)
		}
		return "ldapi://" + host, nil
	}
	for _, scheme := range []string{"ldap://", "ldaps://"} {
		if !strings.HasPrefix(lower, scheme) {
			continue
		}
		u, err := url.Parse(h)
		if err != nil {
			return "", fmt.Errorf("%q: not a valid LDAP URL: %v", h, err)
		}
		u.Scheme = strings.ToLower(u.Scheme)
		// The DN, attributes and filter of a server URL are not
		// used (libldap connects to the host only).
		u.Path, u.RawPath, u.RawQuery, u.Fragment = "", "", "", ""
		if u.Host == "" {
			u.Host = "localhost"
		}
		return u.String(), nil
	}
	if strings.Contains(lower, "://") {
		return "", fmt.Errorf("%q: want an ldap://, ldaps:// or ldapi:// URL, host:port or host", h)
	}
	if strings.LastIndexByte(h, ':') >= 0 {
		host, p, err := net.SplitHostPort(h)
		if err != nil || host == "" {
			return "", fmt.Errorf("%q: want host:port", h)
		}
		if _, err := strconv.ParseUint(p, 10, 16); err != nil {
			return "", fmt.Errorf("%q: bad port", h)
		}
		return "ldap://" + h, nil
	}
	return "ldap://" + net.JoinHostPort(h, strconv.Itoa(port)), nil
}

// ldapTLSConfig is the TLS of ldaps:// and start_tls: TLS 1.2 or later,
// the CAs of tls_ca_cert_file and tls_ca_cert_dir (else the system's),
// the client certificate of tls_cert and tls_key. tls_require_cert = no
// (Postfix's default, LDAP_OPT_X_TLS_NEVER) does not verify the
// server's certificate.
func ldapTLSConfig(f *cfFile, requireCert bool) (*tls.Config, error) {
	c := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: !requireCert} //nolint:gosec // Postfix's tls_require_cert = no, warned about at open
	var errs []error
	file, dir := f.str("tls_ca_cert_file", ""), f.str("tls_ca_cert_dir", "")
	if file != "" || dir != "" {
		pool := x509.NewCertPool()
		if file != "" {
			pem, err := os.ReadFile(file)
			switch {
			case err != nil:
				errs = append(errs, f.errorf("tls_ca_cert_file", "%v", err))
			case !pool.AppendCertsFromPEM(pem):
				errs = append(errs, f.errorf("tls_ca_cert_file", "%s: no PEM certificate", file))
			}
		}
		if dir != "" {
			ents, err := os.ReadDir(dir)
			if err != nil {
				errs = append(errs, f.errorf("tls_ca_cert_dir", "%v", err))
			}
			for _, e := range ents {
				if e.IsDir() {
					continue
				}
				if pem, err := os.ReadFile(filepath.Join(dir, e.Name())); err == nil {
					pool.AppendCertsFromPEM(pem)
				}
			}
		}
		c.RootCAs = pool
	}
	cert, key := f.str("tls_cert", ""), f.str("tls_key", "")
	switch {
	case cert != "" && key != "":
		kp, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			errs = append(errs, f.errorf("tls_cert", "%v", err))
		} else {
			c.Certificates = []tls.Certificate{kp}
		}
	case cert != "" || key != "":
		errs = append(errs, f.errorf("tls_cert", "tls_cert and tls_key go together"))
	}
	return c, errors.Join(errs...)
}

// ldapFilterQuote escapes text for an RFC 4515 filter as Postfix's
// rfc2254_quote() does: '*', '(', ')' and '\' become \2a, \28, \29 and
// \5c (upper-case hex), so that a key matches only itself. A NUL never
// gets here: such keys are not looked up.
func ldapFilterQuote(s string) string {
	return ldapHexQuote(s, "*()\\")
}

// ldapDNQuote escapes text for the search base (an RFC 4514 DN) as
// Postfix's rfc2253_quote() does: blanks, '"', '#', '+', ',', ';',
// '<', '>' and '\' become \XX wherever they are.
func ldapDNQuote(s string) string {
	return ldapHexQuote(s, " \t\"#+,;<>\\")
}

func ldapHexQuote(s, special string) string {
	if !strings.ContainsAny(s, special) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if strings.IndexByte(special, s[i]) >= 0 {
			fmt.Fprintf(&b, "\\%02X", s[i])
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// expand returns the search base and filter for key; ok is false when
// the key cannot fill them in, and the key is then not found without a
// search.
func (t *ldapTable) expand(key string) (base, filter string, ok bool) {
	if base, ok = t.base.expandQuery(key, ldapDNQuote); !ok {
		return "", "", false
	}
	if t.base.query == "" {
		base = ""
	}
	if filter, ok = t.filter.expandQuery(key, ldapFilterQuote); !ok {
		return "", "", false
	}
	return base, ldapFilterParens(filter), true
}

// ldapFilterParens puts a filter without its outer parentheses
// ("mail=%s", which libldap accepts) in them.
func ldapFilterParens(f string) string {
	if strings.HasPrefix(strings.TrimSpace(f), "(") {
		return f
	}
	return "(" + f + ")"
}

// Lookup searches the directory for key. As Postfix's ldap table does
// for smtpd's lookups, the key is case-folded; a key that is not UTF-8
// or holds a NUL is not found without a search, and so is one the domain
// setting does not list or that cannot fill in the templates' %d, %u or
// %[1-9]. A search that fails, a connection or bind that fails, more
// entries than size_limit or more results than expansion_limit, a static
// search_base that does not exist: each is an error wrapping ErrLookup.
func (t *ldapTable) Lookup(ctx context.Context, key string) (string, bool, error) {
	if !utf8.ValidString(key) || strings.IndexByte(key, 0) >= 0 {
		return "", false, nil
	}
	key = strings.ToLower(key)
	if !t.domain.allows(key) {
		return "", false, nil
	}
	base, filter, ok := t.expand(key)
	if !ok {
		return "", false, nil
	}
	ctx, cancel := context.WithTimeout(ctx, t.opts.QueryTimeout)
	defer cancel()
	v, err := t.search(ctx, base, filter, key)
	if err != nil {
		t.opts.Logger.WarnContext(ctx, "table lookup failed", "table", t.spec, "err", err)
		return "", false, &lookupError{table: t.spec, err: err}
	}
	return v, v != "", nil
}

// search runs the lookup's searches on one connection. A kept
// connection that turns out dead is replaced by a new one once.
func (t *ldapTable) search(ctx context.Context, base, filter, key string) (string, error) {
	select {
	case t.slots <- struct{}{}:
	case <-ctx.Done():
		return "", fmt.Errorf("waiting for a free connection: %w", ctx.Err())
	}
	defer func() { <-t.slots }()
	conn, reused, err := t.conn(ctx)
	if err != nil {
		return "", err
	}
	v, keep, err := t.searchOn(ctx, conn, base, filter, key)
	if err != nil && reused && ldap.IsErrorWithCode(err, ldap.ErrorNetwork) {
		conn.Close()
		if conn, err = t.dial(ctx); err != nil {
			return "", err
		}
		v, keep, err = t.searchOn(ctx, conn, base, filter, key)
	}
	if err != nil && !keep {
		// Postfix tears the connection down after a failed search.
		conn.Close()
		return "", err
	}
	t.put(conn)
	return v, err
}

// conn returns an idle connection (reused) or a new one.
func (t *ldapTable) conn(ctx context.Context) (c *ldap.Conn, reused bool, err error) {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil, false, errClosed
	}
	now := t.opts.Now()
	for len(t.idle) > 0 {
		ic := t.idle[len(t.idle)-1]
		t.idle = t.idle[:len(t.idle)-1]
		if !ic.IsClosing() && now.Sub(ic.since) < ldapMaxIdle {
			t.mu.Unlock()
			return ic.Conn, true, nil
		}
		ic.Close()
	}
	t.mu.Unlock()
	c, err = t.dial(ctx)
	return c, false, err
}

// put keeps a connection for the next lookup.
func (t *ldapTable) put(c *ldap.Conn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed || c.IsClosing() {
		c.Close()
		return
	}
	t.idle = append(t.idle, idleLDAPConn{Conn: c, since: t.opts.Now()})
}

// dial connects to the first server_host that answers, starts TLS when
// start_tls says so, and binds when bind says so.
func (t *ldapTable) dial(ctx context.Context) (*ldap.Conn, error) {
	d := &net.Dialer{Timeout: t.timeout}
	if dl, ok := ctx.Deadline(); ok {
		d.Deadline = dl
	}
	var errs []error
	for _, u := range t.urls {
		// The name the server's certificate must have is the URL's
		// host (for ldapi://, where there is none, "localhost").
		tc := t.tls.Clone()
		tc.ServerName = "localhost"
		if pu, err := url.Parse(u); err == nil && pu.Hostname() != "" {
			tc.ServerName = pu.Hostname()
		}
		c, err := ldap.DialURL(u, ldap.DialWithDialer(d), ldap.DialWithTLSConfig(tc))
		if err != nil {
			errs = append(errs, fmt.Errorf("connect %s: %w", u, err))
			continue
		}
		c.SetTimeout(t.requestTimeout(ctx))
		if t.startTLS && !strings.HasPrefix(u, "ldaps://") {
			if err := c.StartTLS(tc); err != nil {
				c.Close()
				errs = append(errs, fmt.Errorf("start_tls with %s: %w", u, err))
				continue
			}
		}
		if t.bind {
			// As libldap sends it: an empty password is sent as
			// it is (an anonymous or unauthenticated bind), not
			// refused by the client.
			_, err := c.SimpleBind(&ldap.SimpleBindRequest{Username: t.bindDN, Password: t.bindPW, AllowEmptyPassword: true})
			if err != nil {
				c.Close()
				dn := t.bindDN
				if dn == "" {
					dn = "empty or implicit"
				}
				errs = append(errs, fmt.Errorf("bind to %s with dn %s: %w", u, dn, err))
				continue
			}
		}
		return c, nil
	}
	return nil, errors.Join(errs...)
}

// requestTimeout is how long one request may wait for its answer: the
// table's timeout, cut to what is left of the lookup's deadline.
func (t *ldapTable) requestTimeout(ctx context.Context) time.Duration {
	d := t.timeout
	if dl, ok := ctx.Deadline(); ok {
		if left := time.Until(dl); left < d {
			d = max(left, time.Millisecond)
		}
	}
	return d
}

// searchOn runs the search and the special attributes' searches on c.
// keep reports a connection still good after the error (a static
// search base that does not exist, too many results, a bad URL value).
func (t *ldapTable) searchOn(ctx context.Context, c *ldap.Conn, base, filter, key string) (v string, keep bool, err error) {
	c.SetTimeout(t.requestTimeout(ctx))
	res, err := c.Search(t.request(base, t.scope, filter, t.attrs))
	switch {
	case ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject) && t.dynamicBase:
		// A base made from the key that does not exist: the key is
		// not found (dict_ldap_lookup()).
		return "", true, nil
	case ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject):
		return "", true, fmt.Errorf("search base %q not found: %w", base, err)
	case err != nil:
		return "", false, fmt.Errorf("search %q in %q: %w", filter, base, err)
	}
	g := &ldapGather{t: t, c: c, ctx: ctx, key: key}
	g.values(res.Entries, 1)
	if g.err != nil {
		return "", g.keep, g.err
	}
	return g.b.String(), true, nil
}

func (t *ldapTable) request(base string, scope int, filter string, attrs []string) *ldap.SearchRequest {
	secs := int(t.timeout / time.Second)
	return ldap.NewSearchRequest(base, scope, t.deref, t.sizeLimit, secs, false, filter, attrs, nil)
}

// ldapGather collects one lookup's results as dict_ldap_get_values()
// does, with the expansion count and the first error of the lookup.
type ldapGather struct {
	t         *ldapTable
	c         *ldap.Conn
	ctx       context.Context
	key       string
	b         strings.Builder
	expansion int
	// err is the lookup's first error; keep says the connection is
	// still good after it.
	err  error
	keep bool
}

// fail records the lookup's error.
func (g *ldapGather) fail(keep bool, err error) {
	if g.err == nil {
		g.err, g.keep = err, keep
	}
}

// values appends the result attributes of entries, searching the DNs
// and LDAP URLs of special attributes at recursion depth+1.
func (g *ldapGather) values(entries []*ldap.Entry, depth int) {
	t := g.t
	// As in Postfix, is_leaf and is_terminal are set per entry only when
	// the entry has the attributes that decide them, and otherwise keep
	// the previous entry's value.
	isLeaf, isTerminal := true, false
	for n, e := range entries {
		if g.err == nil && t.sizeLimit > 0 && n+1 > t.sizeLimit {
			g.fail(true, fmt.Errorf("query size limit (%d) exceeded", t.sizeLimit))
		}
		for i := 0; i < t.numTerminal; i++ {
			if vals, ok := attrValues(e, t.attrs[i]); ok {
				isTerminal = len(vals) > 0
				if isTerminal {
					break
				}
			}
		}
		if !isTerminal && t.numLeaf > 0 {
			for _, a := range t.attrs[t.numAttributes:] {
				if vals, ok := attrValues(e, a); ok {
					isLeaf = len(vals) == 0
					if !isLeaf {
						break
					}
				}
			}
		}
		for _, a := range e.Attributes {
			if g.err != nil || len(a.Values) == 0 {
				continue
			}
			i := 0
			for ; i < len(t.attrs); i++ {
				if attrSubtype(t.attrs[i], a.Name) > 0 {
					break
				}
			}
			switch {
			case i < t.numAttributes || isTerminal:
				if isTerminal && i >= t.numTerminal || !isLeaf && i < t.numTerminal+t.numLeaf {
					continue // a non-terminal or leaf-only attribute
				}
				for _, v := range a.Values {
					if t.filter.appendResult(&g.b, v, g.key) {
						g.expansion++
						if t.expansionLimit > 0 && g.expansion > t.expansionLimit {
							g.fail(true, fmt.Errorf("expansion limit %d exceeded for key %q", t.expansionLimit, g.key))
							break
						}
					}
				}
			case i < len(t.attrs) && depth < t.recursionLimit:
				for _, v := range a.Values {
					g.special(v, depth)
					if g.err != nil {
						break
					}
				}
			case i < len(t.attrs):
				g.fail(true, fmt.Errorf("recursion limit %d exceeded for special attribute %s=%s", t.recursionLimit, a.Name, a.Values[0]))
			}
		}
	}
}

// special searches a DN or LDAP URL value of a special result attribute
// and gathers what it finds.
func (g *ldapGather) special(v string, depth int) {
	t := g.t
	base, scope, filter, attrs := v, ldap.ScopeBaseObject, "(objectclass=*)", t.attrs
	if isLDAPURL(v) {
		u, err := parseLDAPURL(v)
		if err != nil {
			g.fail(true, fmt.Errorf("malformed URL %s: %w", v, err))
			return
		}
		base, scope, filter = u.dn, u.scope, u.filter
		if attrs = t.urlAttrs(u.attrs); len(attrs) == 0 {
			return // no pertinent attributes
		}
	}
	g.c.SetTimeout(t.requestTimeout(g.ctx))
	res, err := g.c.Search(t.request(base, scope, filter, attrs))
	switch {
	case ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject):
		// As though the DN existed without result attributes.
		t.opts.Logger.WarnContext(g.ctx, "ldap table: DN not found, skipping", "table", t.spec, "dn", base)
	case err != nil:
		g.fail(false, fmt.Errorf("search %q in %q: %w", filter, base, err))
	default:
		g.values(res.Entries, depth+1)
	}
}

// urlAttrs are the attributes an LDAP URL's search asks for: the
// table's result attributes when the URL names none, else those the
// URL names that are (or are subtypes of) result attributes, the more
// specific name of each pair (url_attrs()).
func (t *ldapTable) urlAttrs(named []string) []string {
	if len(named) == 0 {
		return t.attrs
	}
	var out []string
	for _, a1 := range named {
		for _, a2 := range t.attrs {
			switch attrSubtype(a1, a2) {
			case 1:
				out = append(out, a2)
			case -1:
				out = append(out, a1)
			}
		}
	}
	return out
}

// attrSubtype compares attribute descriptions without regard to case
// (RFC 4512): 1 when a2 is a1 or a subtype of it ("mail;lang-en" of
// "mail"), -1 when a1 is a subtype of a2, else 0 (attrdesc_subtype()).
func attrSubtype(a1, a2 string) int {
	i := 0
	for i < len(a1) && i < len(a2) && lowerASCII(a1[i]) == lowerASCII(a2[i]) {
		i++
	}
	switch {
	case i == len(a1) && (i == len(a2) || a2[i] == ';'):
		return 1
	case i == len(a2) && i < len(a1) && a1[i] == ';':
		return -1
	}
	return 0
}

// attrValues returns the values of the entry's attribute that name (or a
// subtype of it, as libldap matches) describes; ok is false when the
// entry does not have it.
func attrValues(e *ldap.Entry, name string) (vals []string, ok bool) {
	for _, a := range e.Attributes {
		if strings.EqualFold(a.Name, name) {
			return a.Values, true
		}
	}
	return nil, false
}

// isLDAPURL reports a value that ldap_is_ldap_url() takes for a URL.
func isLDAPURL(v string) bool {
	l := strings.ToLower(strings.TrimPrefix(v, "<"))
	l = strings.TrimPrefix(l, "url:")
	return strings.HasPrefix(l, "ldap://") || strings.HasPrefix(l, "ldaps://") || strings.HasPrefix(l, "ldapi://")
}

// ldapURL is the search an RFC 4516 URL describes; the host is not
// used (the search goes to the connection of the lookup, as in Postfix).
type ldapURL struct {
	dn     string
	attrs  []string
	scope  int
	filter string
}

// parseLDAPURL reads ldap://host/dn?attrs?scope?filter?extensions, with
// scope base and filter (objectClass=*) when not given (RFC 4516).
func parseLDAPURL(v string) (ldapURL, error) {
	v = strings.TrimSuffix(strings.TrimPrefix(v, "<"), ">")
	if len(v) > 4 && strings.EqualFold(v[:4], "url:") {
		v = v[4:]
	}
	u := ldapURL{scope: ldap.ScopeBaseObject, filter: "(objectClass=*)"}
	_, rest, _ := strings.Cut(v, "://")
	_, rest, hasPath := strings.Cut(rest, "/")
	if !hasPath {
		return u, nil
	}
	parts := strings.SplitN(rest, "?", 5)
	dec := func(s string) (string, error) { return url.PathUnescape(s) }
	var err error
	if u.dn, err = dec(parts[0]); err != nil {
		return u, err
	}
	if len(parts) > 1 && parts[1] != "" {
		for _, a := range strings.Split(parts[1], ",") {
			if a, err = dec(a); err != nil {
				return u, err
			}
			u.attrs = append(u.attrs, a)
		}
	}
	if len(parts) > 2 && parts[2] != "" {
		switch strings.ToLower(parts[2]) {
		case "base":
			u.scope = ldap.ScopeBaseObject
		case "one":
			u.scope = ldap.ScopeSingleLevel
		case "sub":
			u.scope = ldap.ScopeWholeSubtree
		default:
			return u, fmt.Errorf("bad scope %q", parts[2])
		}
	}
	if len(parts) > 3 && parts[3] != "" {
		if u.filter, err = dec(parts[3]); err != nil {
			return u, err
		}
		if !strings.HasPrefix(u.filter, "(") {
			u.filter = "(" + u.filter + ")"
		}
	}
	if len(parts) > 4 {
		for _, ext := range strings.Split(parts[4], ",") {
			if strings.HasPrefix(ext, "!") {
				return u, fmt.Errorf("critical extension %q not supported", ext)
			}
		}
	}
	return u, nil
}

func (t *ldapTable) Pattern() bool    { return false }
func (t *ldapTable) Name() string     { return t.spec }
func (t *ldapTable) Entries() []Entry { return nil }

// Probe connects and binds as a lookup would, for check: a server that
// cannot be reached is a warning there, not an error.
func (t *ldapTable) Probe(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, t.opts.QueryTimeout)
	defer cancel()
	c, err := t.dial(ctx)
	if err != nil {
		return err
	}
	return c.Close()
}

// Close closes the kept connections; later lookups fail.
func (t *ldapTable) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closed = true
	for _, c := range t.idle {
		c.Close()
	}
	t.idle = nil
	return nil
}
