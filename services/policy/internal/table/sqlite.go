package table

import (
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"

	// The pure-Go SQLite driver, registered as "sqlite".
	_ "modernc.org/sqlite"
)

// sqliteParams are the parameters of sqlite_table(5).
var sqliteParams = append([]string{"dbpath"}, sqlParams...)

// sqliteBusyTimeout is how long a query waits for a writer's lock
// before it fails (and the lookup with it, temporarily).
const sqliteBusyTimeout = "1000"

// openSQLite opens "sqlite:/etc/postfix/x.cf" (sqlite_table(5)). The
// database (dbpath) is opened read-only, and only when it is first
// queried: a missing or locked database fails lookups (a temporary
// failure), not the start.
func openSQLite(spec, cfPath string, opts Options) (Table, error) {
	f, err := readCF("sqlite", cfPath, sqliteParams)
	if err != nil {
		return nil, err
	}
	cfg, cerr := readSQLConfig(f)
	dbpath := f.str("dbpath", "")
	if dbpath == "" {
		cerr = errors.Join(cerr, fmt.Errorf("%s: dbpath: missing; name the SQLite database file", f.pos("dbpath")))
	}
	if cerr != nil {
		return nil, fmt.Errorf("table %s: %w", spec, cerr)
	}
	if u := unquotedExpansions(cfg.tmpl.query); len(u) > 0 {
		opts.Logger.Warn("table query expands the key without the recommended '' quotes", "table", spec,
			"at", f.pos("query"), "expansions", strings.Join(u, " "))
	}
	if !filepath.IsAbs(dbpath) && opts.Dir != "" {
		dbpath = filepath.Join(opts.Dir, dbpath)
	}
	// mode=ro is SQLITE_OPEN_READONLY, as Postfix opens it; query_only
	// refuses writes even through a statement the query could name.
	dsn := (&url.URL{Scheme: "file", OmitHost: true, Path: dbpath,
		RawQuery: "mode=ro&_pragma=query_only(1)&_pragma=busy_timeout(" + sqliteBusyTimeout + ")"}).String()
	open := func() (*sql.DB, error) { return sql.Open("sqlite", dsn) }
	return &sqlTable{spec: spec, hosts: []*sqlHost{{name: dbpath, unix: true, open: open}}, cfg: cfg, quote: sqliteQuote, timeout: opts.QueryTimeout, opts: opts,
		probe: "SELECT 1 FROM sqlite_master LIMIT 1"}, nil
}

// sqliteQuote escapes text for a query's '...' string literal as
// Postfix's dict_sqlite_quote() does with sqlite3_mprintf("%q"): each
// single quote doubled, nothing else touched (% and _ are no wildcards
// in "=" comparisons; a query that uses LIKE must say so itself).
func sqliteQuote(s string) string {
	return strings.ReplaceAll(s, "'", "''")
}

// unquotedExpansions returns the %x of a query that are outside '...'
// quotes, which Postfix warns about (flag_non_recommended_query() in
// dict_sqlite.c): the quoting only makes a key safe inside quotes.
func unquotedExpansions(query string) []string {
	var out []string
	var in byte
	for i := 0; i < len(query); i++ {
		c := query[i]
		if in == 0 {
			if c == '\'' || c == '"' {
				in = c
			}
		} else if c == in {
			in = 0
		}
		if in == '\'' || c != '%' || i+1 == len(query) {
			continue
		}
		n := query[i+1]
		switch {
		case n == '%':
			i++
		case n >= 'a' && n <= 'z' || n >= 'A' && n <= 'Z' || n >= '0' && n <= '9':
			out = append(out, query[i:i+2])
			i++
		}
	}
	return out
}
