package table

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// ErrLookup is wrapped by the error of a lookup that could not be done
// (the database or server failed, timed out, or answered more rows than
// expansion_limit allows): Postfix's DICT_ERR_RETRY. Callers fail
// closed: the SMTP client gets "451 4.3.0 ... Temporary lookup failure",
// never "not found".
var ErrLookup = errors.New("temporary lookup failure")

// lookupError wraps a failed lookup so that it matches ErrLookup and the
// cause.
type lookupError struct {
	table string
	err   error
}

func (e *lookupError) Error() string {
	return "table " + e.table + ": temporary lookup failure: " + e.err.Error()
}

func (e *lookupError) Unwrap() []error { return []error{ErrLookup, e.err} }

// sqlConfig is what the SQL table types share (db_common.c): the query,
// result_format, domain and expansion_limit of the .cf file.
type sqlConfig struct {
	tmpl   templates
	domain *domainFilter
	limit  int
}

// sqlParams are the .cf parameters every SQL type reads besides its
// connection's.
var sqlParams = []string{"query", "result_format", "domain", "expansion_limit",
	"table", "select_field", "where_field", "additional_conditions"}

// readSQLConfig reads the query (or the old table/select_field/
// where_field/additional_conditions form), result_format, domain and
// expansion_limit of a .cf file.
func readSQLConfig(f *cfFile) (sqlConfig, error) {
	var c sqlConfig
	var errs []error
	query := f.str("query", "")
	if !f.isSet("query") {
		// The old style, "SELECT select_field FROM table WHERE
		// where_field='%s' additional_conditions"
		// (db_common_sql_build_query()).
		var missing []string
		for _, n := range []string{"table", "select_field", "where_field"} {
			if f.str(n, "") == "" {
				missing = append(missing, n)
			}
		}
		if len(missing) > 0 {
			return c, fmt.Errorf("%s: no query, and no %s for the old-style query", f.path, strings.Join(missing, ", "))
		}
		query = fmt.Sprintf("SELECT %s FROM %s WHERE %s='%%s' %s",
			f.str("select_field", ""), f.str("table", ""), f.str("where_field", ""), f.str("additional_conditions", ""))
	}
	result := f.str("result_format", "%s")
	if result == "" {
		errs = append(errs, f.errorf("result_format", "must not be empty"))
	}
	var err error
	if c.tmpl, err = parseTemplates(query, result); err != nil {
		name := "query"
		if strings.Contains(err.Error(), "result_format") {
			name = "result_format"
		}
		errs = append(errs, f.errorf(name, "%v", err))
	} else if !c.tmpl.dynamic {
		// Postfix accepts it and looks every key up as the same
		// query: almost certainly a mistake (issue 20: "a query
		// without %s").
		errs = append(errs, f.errorf("query", "%q does not use the lookup key (%%s, %%u, %%d, %%S, %%U, %%D or %%1..%%9)", query))
	}
	if c.domain, err = parseDomainFilter(f.str("domain", "")); err != nil {
		errs = append(errs, f.errorf("domain", "%v", err))
	}
	if c.limit, err = f.integer("expansion_limit", 0, 0); err != nil {
		errs = append(errs, err)
	}
	return c, errors.Join(errs...)
}

// hostRetry is how long a database host whose connection or query
// failed is left alone while another host can be tried (Postfix's
// RETRY_CONN_INTV in dict_mysql.c and dict_pgsql.c).
const hostRetry = time.Minute

// sqlHost is one database server of a table (mysql_table(5)'s and
// pgsql_table(5)'s "hosts"; the one database file of sqlite:), with its
// own pool of connections (database/sql's) and Postfix's host state.
type sqlHost struct {
	// name is the host as written in the .cf file.
	name string
	// unix is a UNIX-domain socket, which Postfix tries before TCP.
	unix bool
	// open opens the pool; it is called on first use, so that opening
	// the table (Load, check) starts nothing and connects nowhere.
	open func() (*sql.DB, error)

	// Guarded by the table's mu.
	db *sql.DB
	// active: the last query succeeded; failed: the last connection or
	// query failed, and the host is left alone until retryAt.
	active, failed bool
	retryAt        time.Time
}

// sqlTable is a table looked up with an SQL query through database/sql
// (sqlite:, mysql:, pgsql:).
type sqlTable struct {
	spec  string
	hosts []*sqlHost
	cfg   sqlConfig
	// quote escapes a key part for the query's '...' literals. When
	// connQuote is set instead, the quoting depends on the connection
	// (MySQL's NO_BACKSLASH_ESCAPES, PostgreSQL's
	// standard_conforming_strings), as mysql_real_escape_string() and
	// PQescapeStringConn() do: connQuote returns it for one connection.
	quote     func(string) string
	connQuote func(ctx context.Context, c *sql.Conn) (func(string) string, error)
	// allColumns expands every column of a row (mysql:, pgsql:); sqlite:
	// reads the first.
	allColumns bool
	// noResultOK makes a statement that returns no result set "not
	// found" (pgsql:, mysql: with require_result_set = no); otherwise it
	// is a failed lookup.
	noResultOK bool
	timeout    time.Duration
	opts       Options
	// probe is the query Probe runs (empty: a ping).
	probe string

	mu     sync.Mutex // guards closed and the hosts' state
	closed bool
}

// errClosed is the error of a lookup in a closed table.
var errClosed = errors.New("table closed")

// pool returns a host's pool of connections, opening it on first use.
func (t *sqlTable) pool(h *sqlHost) (*sql.DB, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, errClosed
	}
	if h.db == nil {
		db, err := h.open()
		if err != nil {
			return nil, err
		}
		db.SetMaxOpenConns(t.opts.poolSize())
		db.SetMaxIdleConns(t.opts.poolSize())
		// Postfix closes a connection idle for a minute (IDLE_CONN_INTV).
		db.SetConnMaxIdleTime(time.Minute)
		h.db = db
	}
	return h.db, nil
}

// order is the order in which a lookup tries the hosts, as Postfix's
// dict_mysql_get_active() and dict_pgsql_get_active() choose them: the
// hosts whose last query succeeded, UNIX-domain sockets first, each
// group in random order; then the hosts not tried yet or whose
// failure is more than a minute old, UNIX-domain sockets first, in
// random order. Postfix stops there, and fails the lookup without
// asking anyone while every host failed within the last minute;
// smtpgate then tries the failed hosts too, so that a database that
// comes back is used at once (docs/postfix-differences.md).
func (t *sqlTable) order() []*sqlHost {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.opts.Now()
	var groups [5][]*sqlHost
	for _, h := range t.hosts {
		g := 0
		switch {
		case h.active:
		case !h.failed || !now.Before(h.retryAt):
			g = 2
		default:
			g = 4
		}
		if !h.unix && g < 4 {
			g++
		}
		groups[g] = append(groups[g], h)
	}
	out := make([]*sqlHost, 0, len(t.hosts))
	for _, g := range groups {
		rand.Shuffle(len(g), func(i, j int) { g[i], g[j] = g[j], g[i] })
		out = append(out, g...)
	}
	return out
}

// mark records the outcome of a query on h.
func (t *sqlTable) mark(h *sqlHost, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	h.active, h.failed = ok, !ok
	if !ok {
		h.retryAt = t.opts.Now().Add(hostRetry)
	}
}

// Lookup runs the query for key. As Postfix's SQL tables do, the key is
// case-folded; a key that is not UTF-8 (or holds a NUL, which Postfix
// cannot even pass) is not found without a query; a key the domain
// setting does not list, or that cannot fill in the query's %d, %u or
// %[1-9], is not found without a query. Each row's first column (every
// column, for mysql: and pgsql:) is expanded with result_format and the
// results are joined with commas; NULL and empty values are skipped. The
// hosts are tried in turn (see order) until one answers. A lookup that
// no host could answer, or that returns more results than
// expansion_limit, is an error wrapping ErrLookup.
func (t *sqlTable) Lookup(ctx context.Context, key string) (string, bool, error) {
	if !utf8.ValidString(key) || strings.IndexByte(key, 0) >= 0 {
		return "", false, nil
	}
	key = strings.ToLower(key)
	if !t.cfg.domain.allows(key) {
		return "", false, nil
	}
	if _, ok := t.cfg.tmpl.expandQuery(key, t.quoteOrNone()); !ok {
		return "", false, nil
	}
	ctx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()
	var errs []error
	for _, h := range t.order() {
		values, err := t.queryHost(ctx, h, key)
		if err != nil {
			t.mark(h, false)
			t.opts.Logger.WarnContext(ctx, "table lookup failed", "table", t.spec, "host", h.name, "err", err)
			errs = append(errs, fmt.Errorf("host %s: %w", h.name, err))
			if ctx.Err() != nil {
				break
			}
			continue
		}
		t.mark(h, true)
		v, err := t.result(values, key)
		if err != nil {
			t.opts.Logger.WarnContext(ctx, "table lookup failed", "table", t.spec, "err", err)
			return "", false, &lookupError{table: t.spec, err: err}
		}
		return v, v != "", nil
	}
	if len(errs) == 0 {
		errs = append(errs, errClosed)
	}
	return "", false, &lookupError{table: t.spec, err: errors.Join(errs...)}
}

// quoteOrNone is the quoting for the check that a key can fill in the
// query at all (before a connection is chosen).
func (t *sqlTable) quoteOrNone() func(string) string {
	if t.quote != nil {
		return t.quote
	}
	return func(s string) string { return s }
}

// result expands the values of a query with result_format and joins
// them, failing when there are more than expansion_limit.
func (t *sqlTable) result(values []sql.NullString, key string) (string, error) {
	var b strings.Builder
	n := 0
	for _, v := range values {
		if !v.Valid {
			continue
		}
		if t.cfg.tmpl.appendResult(&b, v.String, key) {
			n++
			if t.cfg.limit > 0 && n > t.cfg.limit {
				return "", fmt.Errorf("expansion limit %d exceeded for key %q", t.cfg.limit, key)
			}
		}
	}
	return b.String(), nil
}

// queryHost runs the query for key on one host and returns the values
// it answered (the first column, or every column, of each row). An error
// is the host's: it could not be reached, or the query failed.
func (t *sqlTable) queryHost(ctx context.Context, h *sqlHost, key string) ([]sql.NullString, error) {
	db, err := t.pool(h)
	if err != nil {
		return nil, err
	}
	if t.connQuote == nil {
		q, _ := t.cfg.tmpl.expandQuery(key, t.quote)
		rows, err := db.QueryContext(ctx, q)
		if err != nil {
			return nil, err
		}
		defer rows.Close()
		values, err := t.readRows(rows)
		if err != nil {
			return nil, err
		}
		return values, rows.Close()
	}
	// A query that fails closes its connection, as Postfix closes a
	// failed host's, and the idle ones with it. A connection the server
	// closed while it sat in the pool (a database restarted) fails its
	// first query: that one is run once more, on a new connection,
	// before the host counts as failed.
	for attempt := 0; ; attempt++ {
		conn, err := db.Conn(ctx)
		if err != nil {
			return nil, err
		}
		values, err := t.queryConn(ctx, conn, key)
		if err != nil {
			_ = conn.Raw(func(any) error { return driver.ErrBadConn })
			conn.Close()
			db.SetMaxIdleConns(0)
			db.SetMaxIdleConns(t.opts.poolSize())
			if attempt == 0 && ctx.Err() == nil {
				continue
			}
			return nil, err
		}
		return values, conn.Close()
	}
}

// queryConn runs the query for key on one connection, quoted as the
// connection needs.
func (t *sqlTable) queryConn(ctx context.Context, conn *sql.Conn, key string) ([]sql.NullString, error) {
	quote, err := t.connQuote(ctx, conn)
	if err != nil {
		return nil, err
	}
	q, _ := t.cfg.tmpl.expandQuery(key, quote)
	rows, err := conn.QueryContext(ctx, q)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	values, err := t.readRows(rows)
	if err != nil {
		return nil, err
	}
	return values, rows.Close()
}

// readRows reads the values of the first result set; a later result set
// that returns data is an error, as in Postfix's dict_mysql.c.
func (t *sqlTable) readRows(rows *sql.Rows) ([]sql.NullString, error) {
	cols, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	if len(cols) == 0 {
		if t.noResultOK {
			return nil, nil
		}
		return nil, errors.New("query returned no result set")
	}
	n := 1
	if t.allColumns {
		n = len(cols)
	}
	row := make([]sql.NullString, len(cols))
	dest := make([]any, len(cols))
	var other sql.RawBytes
	for i := range dest {
		if i < n {
			dest[i] = &row[i]
		} else {
			dest[i] = &other
		}
	}
	var values []sql.NullString
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return nil, err
		}
		values = append(values, row[:n]...)
		if t.cfg.limit > 0 && len(values) > 64*t.cfg.limit+1024 {
			// Far beyond the limit: the lookup fails anyway.
			break
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for rows.NextResultSet() {
		if more, err := rows.Columns(); err == nil && len(more) > 0 {
			return nil, errors.New("multiple result sets returning data are not supported")
		}
	}
	return values, rows.Err()
}

func (t *sqlTable) Pattern() bool    { return false }
func (t *sqlTable) Name() string     { return t.spec }
func (t *sqlTable) Entries() []Entry { return nil }

// Probe connects to every host and runs a query that reads nothing, for
// check: a database that cannot be reached is a warning there, not an
// error (it may be down while the configuration is checked).
func (t *sqlTable) Probe(ctx context.Context) error {
	var errs []error
	for _, h := range t.hosts {
		if err := t.probeHost(ctx, h); err != nil {
			if len(t.hosts) > 1 {
				err = fmt.Errorf("host %s: %w", h.name, err)
			}
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (t *sqlTable) probeHost(ctx context.Context, h *sqlHost) error {
	db, err := t.pool(h)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()
	if t.probe == "" {
		return db.PingContext(ctx)
	}
	rows, err := db.QueryContext(ctx, t.probe)
	if err != nil {
		return err
	}
	return rows.Close()
}

// Close closes the pools of connections; later lookups fail.
func (t *sqlTable) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closed = true
	var errs []error
	for _, h := range t.hosts {
		if h.db != nil {
			errs = append(errs, h.db.Close())
			h.db = nil
		}
	}
	return errors.Join(errs...)
}
