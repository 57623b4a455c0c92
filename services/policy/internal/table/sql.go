package table

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
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

// sqlTable is a table looked up with an SQL query through database/sql
// (sqlite:, and later mysql: and pgsql:). The pool of connections is
// database/sql's.
type sqlTable struct {
	spec string
	// open opens the pool; it is called on first use, so that opening
	// the table (Load, check) starts nothing and connects nowhere.
	open    func() (*sql.DB, error)
	cfg     sqlConfig
	quote   func(string) string
	timeout time.Duration
	opts    Options
	// probe is the query Probe runs (empty: a ping).
	probe string

	mu     sync.Mutex // guards db and closed
	db     *sql.DB
	closed bool
}

// errClosed is the error of a lookup in a closed table.
var errClosed = errors.New("table closed")

// pool returns the pool of connections, opening it on first use.
func (t *sqlTable) pool() (*sql.DB, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, errClosed
	}
	if t.db == nil {
		db, err := t.open()
		if err != nil {
			return nil, err
		}
		db.SetMaxOpenConns(t.opts.poolSize())
		db.SetMaxIdleConns(t.opts.poolSize())
		db.SetConnMaxIdleTime(time.Minute)
		t.db = db
	}
	return t.db, nil
}

// Lookup runs the query for key. As Postfix's SQL tables do, the key is
// case-folded; a key that is not UTF-8 (or holds a NUL, which Postfix
// cannot even pass) is not found without a query; a key the domain
// setting does not list, or that cannot fill in the query's %d, %u or
// %[1-9], is not found without a query. Each row's first column is
// expanded with result_format and the rows are joined with commas; NULL
// and empty values are skipped. A failed query, or more rows than
// expansion_limit, is an error wrapping ErrLookup.
func (t *sqlTable) Lookup(ctx context.Context, key string) (string, bool, error) {
	if !utf8.ValidString(key) || strings.IndexByte(key, 0) >= 0 {
		return "", false, nil
	}
	key = strings.ToLower(key)
	if !t.cfg.domain.allows(key) {
		return "", false, nil
	}
	q, ok := t.cfg.tmpl.expandQuery(key, t.quote)
	if !ok {
		return "", false, nil
	}
	ctx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()
	v, err := t.query(ctx, q, key)
	if err != nil {
		t.opts.Logger.WarnContext(ctx, "table lookup failed", "table", t.spec, "err", err)
		return "", false, &lookupError{table: t.spec, err: err}
	}
	return v, v != "", nil
}

func (t *sqlTable) query(ctx context.Context, q, key string) (string, error) {
	db, err := t.pool()
	if err != nil {
		return "", err
	}
	rows, err := db.QueryContext(ctx, q)
	if err != nil {
		return "", err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return "", err
	}
	if len(cols) == 0 {
		return "", errors.New("query returns no column")
	}
	var (
		b     strings.Builder
		v     sql.NullString
		n     int
		other sql.RawBytes
	)
	dest := make([]any, len(cols))
	dest[0] = &v
	for i := 1; i < len(dest); i++ {
		dest[i] = &other
	}
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return "", err
		}
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
	if err := rows.Err(); err != nil {
		return "", err
	}
	return b.String(), nil
}

func (t *sqlTable) Pattern() bool    { return false }
func (t *sqlTable) Name() string     { return t.spec }
func (t *sqlTable) Entries() []Entry { return nil }

// Probe connects to the database and runs a query that reads nothing,
// for check: a database that cannot be reached is a warning there, not
// an error (it may be down while the configuration is checked).
func (t *sqlTable) Probe(ctx context.Context) error {
	db, err := t.pool()
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

// Close closes the pool of connections; later lookups fail.
func (t *sqlTable) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closed = true
	if t.db == nil {
		return nil
	}
	return t.db.Close()
}
