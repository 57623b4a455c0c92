package table

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

// pgsqlParams are the parameters of pgsql_table(5).
var pgsqlParams = append([]string{"hosts", "user", "password", "dbname", "select_function"}, sqlParams...)

// openPgSQL opens "pgsql:/etc/postfix/x.cf" (pgsql_table(5)). Nothing
// connects until the first lookup.
func openPgSQL(spec, cfPath string, opts Options) (Table, error) {
	f, err := readCF("pgsql", cfPath, pgsqlParams)
	if err != nil {
		return nil, err
	}
	if !f.isSet("query") && f.str("select_function", "") != "" {
		// "SELECT function('%s')" (pgsql_parse_config()).
		f.params["query"] = cfParam{value: "SELECT " + f.str("select_function", "") + "('%s')", line: f.params["select_function"].line}
	}
	cfg, cerr := readSQLConfig(f)
	var errs []error
	if cerr != nil {
		errs = append(errs, cerr)
	}
	if f.str("dbname", "") == "" {
		errs = append(errs, fmt.Errorf("%s: dbname: missing; name the database", f.pos("dbname")))
	}
	t := &sqlTable{spec: spec, cfg: cfg, connQuote: pgsqlConnQuote, allColumns: true, noResultOK: true,
		timeout: opts.QueryTimeout, opts: opts}
	fields := strings.FieldsFunc(f.str("hosts", ""), func(r rune) bool { return r == ',' || r == ' ' || r == '\t' })
	if len(fields) == 0 {
		fields = []string{"localhost"}
	}
	for _, name := range fields {
		c, unix, err := pgsqlConfig(name, f, opts)
		if err != nil {
			errs = append(errs, f.errorf("hosts", "%q: %v", name, err))
			continue
		}
		t.hosts = append(t.hosts, &sqlHost{name: name, unix: unix, open: func() (*sql.DB, error) {
			return stdlib.OpenDB(*c), nil
		}})
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("table %s: %w", spec, errors.Join(errs...))
	}
	if u := unquotedExpansions(cfg.tmpl.query); len(u) > 0 {
		opts.Logger.Warn("table query expands the key without the recommended '' quotes", "table", spec,
			"at", f.pos("query"), "expansions", strings.Join(u, " "))
	}
	return t, nil
}

// pgsqlConfig is the connection to one entry of "hosts", read as
// dict_pgsql.c's host_init() does: "postgresql://..." is a libpq
// connection URI, used as it is (user, password and dbname of the .cf
// file are not added to it); otherwise an optional "unix:" or "inet:"
// is dropped, a name that starts with "/" is the directory of a
// UNIX-domain socket, and any other is "host" or "host:port" over TCP.
// The rest comes from the .cf file, and what it does not say from
// libpq's PG* environment variables, as in Postfix.
func pgsqlConfig(name string, f *cfFile, opts Options) (*pgx.ConnConfig, bool, error) {
	var c *pgx.ConnConfig
	var err error
	unix := false
	if strings.HasPrefix(name, "postgresql:") {
		if c, err = pgx.ParseConfig(name); err != nil {
			// The error may quote the password: say only which host.
			return nil, false, errors.New("bad postgresql:// URI")
		}
		unix = strings.HasPrefix(c.Host, "/")
	} else {
		d := name
		if rest, ok := strings.CutPrefix(d, "unix:"); ok {
			d = rest
		} else if rest, ok := strings.CutPrefix(d, "inet:"); ok {
			d = rest
		}
		kv := map[string]string{"host": d}
		if d == "" || d[0] == '/' {
			unix = true
			if d == "" {
				kv["host"] = "/run/postgresql"
			}
		} else if i := strings.LastIndexByte(d, ':'); i >= 0 {
			p, err := strconv.ParseUint(d[i+1:], 10, 16)
			if err != nil || p == 0 {
				return nil, false, fmt.Errorf("bad port %q", d[i+1:])
			}
			kv["host"], kv["port"] = d[:i], strconv.FormatUint(p, 10)
		}
		kv["dbname"] = f.str("dbname", "")
		if u := f.str("user", ""); u != "" {
			kv["user"] = u
		}
		if p := f.str("password", ""); p != "" {
			kv["password"] = p
		}
		var dsn []string
		for _, k := range []string{"host", "port", "dbname", "user", "password"} {
			if v, ok := kv[k]; ok {
				dsn = append(dsn, k+"='"+strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v)+"'")
			}
		}
		if c, err = pgx.ParseConfig(strings.Join(dsn, " ")); err != nil {
			// The error may quote the password: say only where it is.
			return nil, false, errors.New("bad host, user, password or dbname")
		}
	}
	c.ConnectTimeout = opts.QueryTimeout
	// The query is Postfix's text with the key quoted in, sent as it
	// is, without parameters and without a named prepared statement
	// (the unnamed one of the extended protocol; pgx's simple protocol
	// refuses to run with standard_conforming_strings = off).
	c.DefaultQueryExecMode = pgx.QueryExecModeExec
	c.RuntimeParams["client_encoding"] = "UTF8"
	return c, unix, nil
}

// pgsqlQuote escapes s for a '...' literal as PQescapeStringConn() does
// for a UTF-8 connection: each quote is doubled, and each backslash too
// when the server's standard_conforming_strings is off (backslash then
// escapes in ordinary literals). The key is valid UTF-8, which
// PQescapeStringConn() would otherwise refuse.
func pgsqlQuote(s string, standard bool) string {
	s = strings.ReplaceAll(s, "'", "''")
	if !standard {
		s = strings.ReplaceAll(s, `\`, `\\`)
	}
	return s
}

// pgsqlConnQuote returns the quoting of one connection, from the
// standard_conforming_strings the server reported on it.
func pgsqlConnQuote(_ context.Context, c *sql.Conn) (func(string) string, error) {
	standard := true
	err := c.Raw(func(dc any) error {
		sc, ok := dc.(*stdlib.Conn)
		if !ok {
			return fmt.Errorf("unexpected PostgreSQL connection %T", dc)
		}
		// libpq assumes "off" when the server does not say (before 8.1).
		standard = sc.Conn().PgConn().ParameterStatus("standard_conforming_strings") == "on"
		return nil
	})
	if err != nil {
		return nil, err
	}
	return func(s string) string { return pgsqlQuote(s, standard) }, nil
}
