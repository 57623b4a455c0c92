package table

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/go-sql-driver/mysql"
)

// mysqlParams are the parameters of mysql_table(5).
var mysqlParams = append([]string{"hosts", "user", "password", "dbname", "option_file", "option_group",
	"tls_key_file", "tls_cert_file", "tls_CAfile", "tls_CApath", "tls_ciphers", "tls_verify_cert",
	"require_result_set"}, sqlParams...)

// mysqlDefaultSocket is where libmariadb looks for the server of
// "localhost" (Debian's MariaDB and MySQL put it there).
const mysqlDefaultSocket = "/run/mysqld/mysqld.sock"

// openMySQL opens "mysql:/etc/postfix/x.cf" (mysql_table(5)). Nothing
// connects until the first lookup.
func openMySQL(spec, cfPath string, opts Options) (Table, error) {
	f, err := readCF("mysql", cfPath, mysqlParams)
	if err != nil {
		return nil, err
	}
	cfg, cerr := readSQLConfig(f)
	var errs []error
	if cerr != nil {
		errs = append(errs, cerr)
	}
	if f.str("dbname", "") == "" {
		errs = append(errs, fmt.Errorf("%s: dbname: missing; name the database", f.pos("dbname")))
	}
	for _, n := range []string{"option_file", "option_group"} {
		if f.isSet(n) {
			errs = append(errs, f.errorf(n, "MySQL option files are not read; set hosts, user, password and the tls_* parameters in %s", f.path))
		}
	}
	requireResult, err := cfBoolDefault(f, "require_result_set", true)
	if err != nil {
		errs = append(errs, err)
	}
	tlsConfig, err := mysqlTLS(f, opts)
	if err != nil {
		errs = append(errs, err)
	}
	hosts, err := mysqlHosts(f)
	if err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("table %s: %w", spec, errors.Join(errs...))
	}
	if u := unquotedExpansions(cfg.tmpl.query); len(u) > 0 {
		opts.Logger.Warn("table query expands the key without the recommended '' quotes", "table", spec,
			"at", f.pos("query"), "expansions", strings.Join(u, " "))
	}
	t := &sqlTable{spec: spec, cfg: cfg, connQuote: mysqlConnQuote, allColumns: true, noResultOK: !requireResult,
		timeout: opts.QueryTimeout, opts: opts}
	for _, h := range hosts {
		c := mysql.NewConfig()
		c.User, c.Passwd, c.DBName = f.str("user", ""), f.str("password", ""), f.str("dbname", "")
		c.Net, c.Addr = h.net, h.addr
		c.Timeout, c.ReadTimeout, c.WriteTimeout = opts.QueryTimeout, opts.QueryTimeout, opts.QueryTimeout
		c.TLS = tlsConfig
		if c.TLS != nil && c.TLS.ServerName == "" && h.net == "tcp" && !c.TLS.InsecureSkipVerify {
			c.TLS = c.TLS.Clone()
			c.TLS.ServerName, _, _ = net.SplitHostPort(h.addr)
		}
		// Server-side prepared statements and client-side parameters are
		// never used: the query is Postfix's text with the key quoted in.
		c.InterpolateParams = false
		c.Logger = mysqlLogger{}
		t.hosts = append(t.hosts, &sqlHost{name: h.name, unix: h.net == "unix", open: func() (*sql.DB, error) {
			conn, err := mysql.NewConnector(c)
			if err != nil {
				return nil, err
			}
			return sql.OpenDB(mysqlConnector{conn}), nil
		}})
	}
	return t, nil
}

// mysqlHost is one entry of "hosts".
type mysqlHost struct {
	name, net, addr string
}

// mysqlHosts reads "hosts" as dict_mysql.c's host_init() does:
// "unix:/path", "inet:host:port", "host:port" or "host" (port 3306), and
// "localhost", even with "inet:", is the server's UNIX-domain socket.
// No hosts is "localhost".
func mysqlHosts(f *cfFile) ([]mysqlHost, error) {
	fields := strings.FieldsFunc(f.str("hosts", ""), func(r rune) bool { return r == ',' || r == ' ' || r == '\t' })
	if len(fields) == 0 {
		fields = []string{"localhost"}
	}
	var out []mysqlHost
	var errs []error
	for _, name := range fields {
		if path, ok := strings.CutPrefix(name, "unix:"); ok {
			if path == "" {
				errs = append(errs, f.errorf("hosts", "%q: missing socket path", name))
				continue
			}
			out = append(out, mysqlHost{name: name, net: "unix", addr: path})
			continue
		}
		d := strings.TrimPrefix(name, "inet:")
		host, port := d, "3306"
		if i := strings.LastIndexByte(d, ':'); i >= 0 && !strings.HasSuffix(d, "]") {
			host, port = d[:i], d[i+1:]
			p, err := net.LookupPort("tcp", port)
			if err != nil || p == 0 {
				errs = append(errs, f.errorf("hosts", "%q: bad port %q", name, port))
				continue
			}
			port = strconv.Itoa(p)
		}
		host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
		if strings.EqualFold(host, "localhost") {
			out = append(out, mysqlHost{name: name, net: "unix", addr: mysqlDefaultSocket})
			continue
		}
		if host == "" {
			errs = append(errs, f.errorf("hosts", "%q: missing host name", name))
			continue
		}
		out = append(out, mysqlHost{name: name, net: "tcp", addr: net.JoinHostPort(host, port)})
	}
	return out, errors.Join(errs...)
}

// mysqlTLS builds the TLS configuration of the tls_* parameters, as
// dict_mysql.c hands them to mysql_ssl_set(): TLS is used when any of
// tls_key_file, tls_cert_file, tls_CAfile, tls_CApath or tls_ciphers is
// set. The server's certificate is checked against tls_CAfile and
// tls_CApath when either is given, and its name too with
// tls_verify_cert = yes (the system's CAs when none is given); without
// either, the connection is encrypted but the server is not
// authenticated, as with libmariadb. tls_ciphers is not used: Go's
// cipher suites for TLS 1.2 and 1.3 are.
func mysqlTLS(f *cfFile, opts Options) (*tls.Config, error) {
	verify, err := cfBoolDefault(f, "tls_verify_cert", false)
	if err != nil {
		return nil, err
	}
	set := false
	for _, n := range []string{"tls_key_file", "tls_cert_file", "tls_CAfile", "tls_CApath", "tls_ciphers"} {
		set = set || f.str(n, "") != ""
	}
	if !set && !verify {
		return nil, nil
	}
	path := func(p string) string {
		if p != "" && !filepath.IsAbs(p) && opts.Dir != "" {
			return filepath.Join(opts.Dir, p)
		}
		return p
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if f.str("tls_ciphers", "") != "" {
		opts.Logger.Warn("table tls_ciphers is not used; Go's TLS 1.2 and 1.3 cipher suites are", "at", f.pos("tls_ciphers"))
	}
	key, cert := path(f.str("tls_key_file", "")), path(f.str("tls_cert_file", ""))
	if key != "" || cert != "" {
		if key == "" {
			key = cert
		}
		if cert == "" {
			cert = key
		}
		pair, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			return nil, f.errorf("tls_cert_file", "%v", err)
		}
		c.Certificates = []tls.Certificate{pair}
	}
	caFile, caPath := path(f.str("tls_CAfile", "")), path(f.str("tls_CApath", ""))
	if caFile != "" || caPath != "" {
		pool := x509.NewCertPool()
		if caFile != "" {
			pem, err := os.ReadFile(caFile)
			if err != nil {
				return nil, f.errorf("tls_CAfile", "%v", err)
			}
			if !pool.AppendCertsFromPEM(pem) {
				return nil, f.errorf("tls_CAfile", "%s: no PEM certificate", caFile)
			}
		}
		if caPath != "" {
			entries, err := os.ReadDir(caPath)
			if err != nil {
				return nil, f.errorf("tls_CApath", "%v", err)
			}
			for _, e := range entries {
				if pem, err := os.ReadFile(filepath.Join(caPath, e.Name())); err == nil {
					pool.AppendCertsFromPEM(pem)
				}
			}
		}
		c.RootCAs = pool
		if !verify {
			// The chain is checked, the name is not.
			c.InsecureSkipVerify = true
			c.VerifyConnection = func(cs tls.ConnectionState) error {
				if len(cs.PeerCertificates) == 0 {
					return errors.New("the server sent no certificate")
				}
				inter := x509.NewCertPool()
				for _, ic := range cs.PeerCertificates[1:] {
					inter.AddCert(ic)
				}
				_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter})
				return err
			}
		}
	} else if !verify {
		c.InsecureSkipVerify = true
	}
	return c, nil
}

// cfBoolDefault reads a yes/no setting (cfg_get_bool: "yes", "true", "1"
// or "no", "false", "0", any case), def when it is not set.
func cfBoolDefault(f *cfFile, name string, def bool) (bool, error) {
	p, ok := f.params[name]
	if !ok {
		return def, nil
	}
	switch strings.ToLower(p.value) {
	case "yes", "true", "1":
		return true, nil
	case "no", "false", "0":
		return false, nil
	}
	return false, f.errorf(name, "%q: want yes or no", p.value)
}

// mysqlQuote escapes s for a '...' literal as mysql_real_escape_string()
// does on a connection whose character set is utf8mb4. noBackslash is
// the session's NO_BACKSLASH_ESCAPES sql_mode: backslash is then an
// ordinary character, and only the quote is escaped, by doubling it.
// Otherwise NUL, LF, CR, backslash, both quotes and Ctrl-Z are escaped
// with a backslash. Valid UTF-8 sequences have no byte below 0x80
// after the first, so the bytes of multibyte characters are copied.
func mysqlQuote(s string, noBackslash bool) string {
	if noBackslash {
		return strings.ReplaceAll(s, "'", "''")
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case 0:
			b.WriteString(`\0`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\\':
			b.WriteString(`\\`)
		case '\'':
			b.WriteString(`\'`)
		case '"':
			b.WriteString(`\"`)
		case 0x1a:
			b.WriteString(`\Z`)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// mysqlConnQuote returns the quoting of one connection.
func mysqlConnQuote(_ context.Context, c *sql.Conn) (func(string) string, error) {
	var noBackslash bool
	err := c.Raw(func(dc any) error {
		mc, ok := dc.(*mysqlConn)
		if !ok {
			return fmt.Errorf("unexpected MySQL connection %T", dc)
		}
		noBackslash = mc.noBackslash
		return nil
	})
	if err != nil {
		return nil, err
	}
	return func(s string) string { return mysqlQuote(s, noBackslash) }, nil
}

// mysqlConnector opens connections that know their session's sql_mode:
// mysql_real_escape_string() reads NO_BACKSLASH_ESCAPES from the
// server's status; the driver keeps that to itself.
type mysqlConnector struct{ driver.Connector }

func (c mysqlConnector) Connect(ctx context.Context) (driver.Conn, error) {
	dc, err := c.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	mode, err := mysqlSQLMode(ctx, dc)
	if err != nil {
		dc.Close()
		return nil, fmt.Errorf("read sql_mode: %w", err)
	}
	return newMySQLConn(dc, strings.Contains(strings.ToUpper(mode), "NO_BACKSLASH_ESCAPES"))
}

func mysqlSQLMode(ctx context.Context, dc driver.Conn) (string, error) {
	q, ok := dc.(driver.QueryerContext)
	if !ok {
		return "", fmt.Errorf("unexpected MySQL connection %T", dc)
	}
	rows, err := q.QueryContext(ctx, "SELECT @@SESSION.sql_mode", nil)
	if err != nil {
		return "", err
	}
	defer rows.Close()
	v := make([]driver.Value, len(rows.Columns()))
	if len(v) != 1 {
		return "", fmt.Errorf("%d columns", len(v))
	}
	if err := rows.Next(v); err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	switch m := v[0].(type) {
	case []byte:
		return string(m), nil
	case string:
		return m, nil
	case nil:
		return "", nil
	}
	return "", fmt.Errorf("sql_mode of type %T", v[0])
}

// mysqlConn is a connection of the MySQL driver with its session's
// NO_BACKSLASH_ESCAPES. It passes on the interfaces database/sql uses,
// so that queries still go as text (COM_QUERY) on the connection, and
// broken connections are still noticed and replaced.
type mysqlConn struct {
	driver.Conn
	noBackslash bool
	q           driver.QueryerContext
	e           driver.ExecerContext
	p           driver.ConnPrepareContext
	b           driver.ConnBeginTx
	r           driver.SessionResetter
	v           driver.Validator
	ping        driver.Pinger
	nv          driver.NamedValueChecker
}

func newMySQLConn(dc driver.Conn, noBackslash bool) (*mysqlConn, error) {
	c := &mysqlConn{Conn: dc, noBackslash: noBackslash}
	var ok [8]bool
	c.q, ok[0] = dc.(driver.QueryerContext)
	c.e, ok[1] = dc.(driver.ExecerContext)
	c.p, ok[2] = dc.(driver.ConnPrepareContext)
	c.b, ok[3] = dc.(driver.ConnBeginTx)
	c.r, ok[4] = dc.(driver.SessionResetter)
	c.v, ok[5] = dc.(driver.Validator)
	c.ping, ok[6] = dc.(driver.Pinger)
	c.nv, ok[7] = dc.(driver.NamedValueChecker)
	for _, o := range ok {
		if !o {
			dc.Close()
			return nil, fmt.Errorf("unexpected MySQL connection %T", dc)
		}
	}
	return c, nil
}

func (c *mysqlConn) QueryContext(ctx context.Context, q string, args []driver.NamedValue) (driver.Rows, error) {
	return c.q.QueryContext(ctx, q, args)
}

func (c *mysqlConn) ExecContext(ctx context.Context, q string, args []driver.NamedValue) (driver.Result, error) {
	return c.e.ExecContext(ctx, q, args)
}

func (c *mysqlConn) PrepareContext(ctx context.Context, q string) (driver.Stmt, error) {
	return c.p.PrepareContext(ctx, q)
}

func (c *mysqlConn) BeginTx(ctx context.Context, o driver.TxOptions) (driver.Tx, error) {
	return c.b.BeginTx(ctx, o)
}

func (c *mysqlConn) ResetSession(ctx context.Context) error      { return c.r.ResetSession(ctx) }
func (c *mysqlConn) IsValid() bool                               { return c.v.IsValid() }
func (c *mysqlConn) Ping(ctx context.Context) error              { return c.ping.Ping(ctx) }
func (c *mysqlConn) CheckNamedValue(nv *driver.NamedValue) error { return c.nv.CheckNamedValue(nv) }

// mysqlLogger drops the driver's own log lines ("[mysql] ... unexpected
// EOF"): every failure reaches the lookup as an error, which is logged
// there with the table's name.
type mysqlLogger struct{}

func (mysqlLogger) Print(...any) {}
