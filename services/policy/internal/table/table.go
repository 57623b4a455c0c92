// Package table implements the Postfix lookup tables that access
// restrictions and table-valued parameters name as "type:name": cidr:,
// regexp:, pcre: (with Go's RE2 engine), hash:, texthash:, lmdb:, btree:,
// cdb:, dbm: and sdbm: (read from the text source file that postmap
// would compile), inline:{...} and static:, the database tables sqlite:,
// mysql: and pgsql: (sqlite_table(5), mysql_table(5), pgsql_table(5),
// configured by Postfix's own .cf files; see sql.go, sqlite.go, mysql.go,
// pgsql.go and query.go for the query expansion of db_common.c), the
// directory table ldap: (ldap_table(5), ldap.go), and the server
// tables socketmap: and tcp: (socketmap.go, tcp.go, netpool.go), and
// smtpgate's own redis: (redis.go), shared live by every replica. The
// configuration, the table files and the databases are trusted; the keys
// looked up come from SMTP clients and are not: they reach a database
// only quoted as Postfix quotes them, and a database that fails makes
// the lookup fail (ErrLookup), never "not found".
//
// The reference is Postfix 3.7: https://www.postfix.org/DATABASE_README.html,
// cidr_table(5), regexp_table(5), pcre_table(5) and postmap(1).
//
// # Differences from Postfix
//
// Postfix skips a bad table line with a warning; smtpgate refuses to
// open (or reload) the table and names the file and line. This includes
// a fixed-string table line without a value, a cidr: pattern with
// non-null host bits, an unknown regexp option, an "if" without "endif"
// or an "endif" without "if", a bad $n in a result and any pattern that
// does not compile. A line longer than 64 KiB is an error too.
// Warnings that Postfix also only warns about (a duplicate key in a
// fixed-string table, which keeps the first value as postmap does; a
// regexp rule without a result, which returns the empty string) are
// logged.
//
// hash:, btree:, lmdb:, cdb:, dbm: and sdbm: read the source text file,
// not the .db/.lmdb/.cdb file that postmap builds, so "postmap" need not
// be run, and all of them are reread when the file changes (Postfix
// reads texthash: only at startup). Keys are case-folded with Unicode
// rules (strings.ToLower).
//
// cidr: looks up an IPv4-mapped IPv6 key (::ffff:192.0.2.1) as the IPv4
// address, and treats an IPv4-mapped pattern with a prefix length of 96
// or more as the IPv4 network.
//
// regexp: patterns are POSIX regular expressions in Postfix; smtpgate
// translates them to Go's RE2 syntax (https://github.com/google/re2/wiki/Syntax)
// and matches leftmost-longest as POSIX does:
//
//   - backreferences ( .. \9) and GNU's word boundaries \< and \> are
//     refused (use );
//   - other backslash escapes have Go's meaning: \d, \w, \s and  work
//     as in Perl, where glibc would match a plain "d";
//   - collating elements and equivalence classes in brackets ([[.a.]],
//     [[=a=]]) are supported only for one character;
//   - Perl syntax that Go accepts and glibc does not, such as (?i) and
//     non-greedy quantifiers, is accepted;
//   - which text a group captures can differ from glibc's choice in
//     ambiguous patterns.
//
// pcre: patterns are PCRE in Postfix; smtpgate translates them to RE2.
// The flags i, m, s, x, A, E, U and X are supported; x is done by
// dropping blanks and #-comments outside character classes, A by
// wrapping the pattern in \A(?:...). These are refused when the table is
// loaded, with the file:line and the construct:
//
//   - backreferences: \1 .. \9, \g, \k, (?P=name);
//   - lookahead and lookbehind: (?=, (?!, (?<=, (?<!;
//   - atomic groups (?> and possessive quantifiers *+, ++, ?+, {n}+;
//   - recursion and subroutine calls: (?R), (?1), (?+1), (?&name), (?P>name);
//   - conditional groups (?(, branch reset groups (?|, callouts (?C;
//   - backtracking control verbs and start-of-pattern options: (*...);
//   - \K, \G, \X and \C.
//
// Also: (?#...) comments are removed; (?'name'...) becomes (?P<name>...);
// \R, \h, \H, \v, \V, \N, \e and \Z are rewritten to RE2 equivalents;
// inline options other than i, m, s and U (e.g. (?x)) are refused by RE2;
// \s does not match a vertical tab; the key is matched as UTF-8 text.
package table

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Table is an opened lookup table, safe for concurrent use.
type Table interface {
	// Lookup returns the value of key. ok is false when the table has no
	// entry for it. err is set only when the table could not be consulted
	// at all; the caller then fails closed.
	Lookup(ctx context.Context, key string) (value string, ok bool, err error)
	// Pattern reports a table that matches patterns against the whole key
	// (cidr:, regexp:, pcre:): callers skip the partial-key lookups
	// (parent domains, "user@", address octets) that Postfix only does
	// with fixed-string tables.
	Pattern() bool
	// Name is the table as configured, e.g. "hash:/etc/postfix/access".
	Name() string
	// Entries lists the table's entries in file order, for static
	// analysis (e.g. the open-relay check) and for explaining a lookup.
	// For cidr:, regexp: and pcre: tables the list includes the "if"
	// and "endif" lines (Key "if PATTERN" or "endif", empty Value), so
	// that a rule's conditions can be told from it. static: has one
	// entry with an empty Key.
	Entries() []Entry
}

// At is where an entry is, as Entry.Pos says it ("file:line", or the
// table's name for inline: and static:), made into a string only when
// asked: visiting a million entries then makes no string for each.
type At struct {
	file string
	line int
	pos  string
}

func (a At) String() string {
	if a.file == "" {
		return a.pos
	}
	return a.file + ":" + strconv.Itoa(a.line)
}

// Ranger is a Table that visits its entries one at a time, in file
// order, without listing them all at once: checking a million-entry file
// then holds one entry at a time, not a million.
type Ranger interface {
	// Range calls fn with each entry's key, value and place, in file
	// order, until it returns false.
	Range(fn func(key, value string, at At) bool)
}

// Range calls fn with each entry of t, as Entries lists them, until fn
// returns false.
func Range(t Table, fn func(key, value string, at At) bool) {
	if r, ok := t.(Ranger); ok {
		r.Range(fn)
		return
	}
	for _, e := range t.Entries() {
		if !fn(e.Key, e.Value, At{pos: e.Pos}) {
			return
		}
	}
}

// Prober is a Connected table that can say whether its database or
// server answers. check calls it and reports a failure as a warning: the
// server may be down while the configuration is checked, and lookups
// then fail temporarily (ErrLookup), as in Postfix.
type Prober interface {
	Probe(ctx context.Context) error
}

// Entry is one rule of a table.
type Entry struct {
	// Pos is where the entry is, "file:line", or the table name for
	// inline: and static:.
	Pos string
	// Key is the key or pattern as written ("example.com",
	// "/^localhost$/", "192.0.2.0/24").
	Key string
	// Value is the result as written (before any $1 substitution).
	Value string
}

// Options says how tables are opened. The zero value works.
type Options struct {
	// Dir resolves relative file names (the configuration directory).
	Dir string
	// Logger gets load warnings (e.g. postmap's "duplicate entry") and
	// reload failures; nil discards them.
	Logger *slog.Logger
	// ReloadCheck is how often, at most, a lookup stats a table's file to
	// see whether it changed (default 1s). A change is seen when the
	// file's mtime or size differs. Replace table files atomically
	// (write a new file, then rename it over the old one): a file read
	// while an editor rewrites it in place can be seen half written.
	ReloadCheck time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// QueryTimeout bounds each lookup in a database or server table
	// (sqlite:, socketmap:, tcp:), on top of the caller's deadline
	// (default 5s, below the edge's smtpgate_policy_timeout of 10s, so
	// that the policy says which table failed).
	QueryTimeout time.Duration
	// PoolSize is the most connections a database or server table keeps
	// open (default 8).
	PoolSize int
}

func (o Options) poolSize() int {
	if o.PoolSize <= 0 {
		return 8
	}
	return o.PoolSize
}

func (o Options) withDefaults() Options {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.ReloadCheck <= 0 {
		o.ReloadCheck = time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.QueryTimeout <= 0 {
		o.QueryTimeout = 5 * time.Second
	}
	return o
}

// ErrUnsupported is wrapped by the error Open returns for a table type
// that smtpgate does not implement (mysql:, ldap:, ...).
var ErrUnsupported = errors.New("table type is not supported")

// Supported lists the table types Open reads from a text file or from
// main.cf itself, besides the proxy: prefix, which it strips.
var Supported = []string{"cidr", "regexp", "pcre", "hash", "texthash", "btree", "lmdb", "cdb", "dbm", "sdbm", "inline", "static"}

// Connected lists the table types Open accepts that look keys up in a
// database or a server, with Postfix's configuration: "sqlite:",
// "mysql:" and "pgsql:" name a sqlite_table(5), mysql_table(5) or
// pgsql_table(5) .cf file, "ldap:" an ldap_table(5) one; "socketmap:" and "tcp:" name a server's
// address; "redis:" (smtpgate's own) names a .cf file with the Redis URL
// and key prefix. Their lookups can fail (a temporary failure, ErrLookup), and
// their tables hold connections: they implement io.Closer.
var Connected = []string{"sqlite", "mysql", "pgsql", "ldap", "socketmap", "tcp", "redis"}

type unsupportedError struct{ typ string }

func (e unsupportedError) Error() string {
	return fmt.Sprintf("table type %q is not supported; supported: %s", e.typ, strings.Join(append(slices.Clone(Supported), Connected...), ", "))
}

func (e unsupportedError) Unwrap() error { return ErrUnsupported }

// Open opens the table spec "type:name", e.g.
// "cidr:/etc/postfix/client.cidr", "inline:{ a=b, { c = d e } }",
// "static:OK", "sqlite:/etc/postfix/mailboxes.cf". "proxy:hash:/x" is
// the same as "hash:/x": there is no proxymap service to go through; the
// process opens the table itself. Database tables connect on their
// first lookup, not here. File-backed tables read the text file
// (for hash: and the other indexed types, the source that postmap(1)
// would compile) and reread it when it changes; see Options.ReloadCheck.
// Errors name the file:line of the bad entry.
func Open(spec string, opts Options) (Table, error) {
	opts = opts.withDefaults()
	typ, name, err := splitSpec(spec)
	if err != nil {
		return nil, err
	}
	switch typ {
	case "inline":
		return openInline(spec, name)
	case "static":
		return openStatic(spec, name)
	case "sqlite":
		path, err := cfPath(spec, name, opts)
		if err != nil {
			return nil, err
		}
		return openSQLite(spec, path, opts)
	case "ldap", "mysql", "pgsql":
		path, err := cfPath(spec, name, opts)
		if err != nil {
			return nil, err
		}
		switch typ {
		case "mysql":
			return openMySQL(spec, path, opts)
		case "pgsql":
			return openPgSQL(spec, path, opts)
		}
		return openLDAP(spec, path, opts)
	case "redis":
		path, err := cfPath(spec, name, opts)
		if err != nil {
			return nil, err
		}
		return openRedis(spec, path, opts)
	case "socketmap":
		return openSocketmap(spec, name, opts)
	case "tcp":
		return openTCP(spec, name, opts)
	}
	parse, pattern := parserFor(typ)
	if parse == nil {
		return nil, unsupportedError{typ}
	}
	if name == "" {
		return nil, fmt.Errorf("table %q: missing file name after %q", spec, typ+":")
	}
	path := name
	if !filepath.IsAbs(path) && opts.Dir != "" {
		path = filepath.Join(opts.Dir, path)
	}
	t, err := openFile(spec, typ, path, pattern, parse, opts)
	if err != nil {
		return nil, err
	}
	return t, nil
}

// cfPath is the .cf file of a database table: Postfix reads a name that
// starts with "/" or "." as a file (cfg_parser_alloc()), and any other
// name as main.cf parameters "name_query"..., which smtpgate does not.
// A relative file name is resolved in Options.Dir.
func cfPath(spec, name string, opts Options) (string, error) {
	if !strings.HasPrefix(name, "/") && !strings.HasPrefix(name, ".") {
		return "", fmt.Errorf("table %q: name the configuration file (e.g. /etc/postfix/%s.cf); "+
			"configuring the table with main.cf parameters %s_* is not supported", spec, name, name)
	}
	if !filepath.IsAbs(name) && opts.Dir != "" {
		name = filepath.Join(opts.Dir, name)
	}
	return name, nil
}

// splitSpec splits "type:name", dropping any "proxy:" prefixes.
func splitSpec(spec string) (typ, name string, err error) {
	rest := spec
	for {
		t, n, ok := strings.Cut(rest, ":")
		if !ok || t == "" {
			return "", "", fmt.Errorf("table %q: expected type:name", spec)
		}
		if t == "proxy" {
			rest = n
			continue
		}
		return t, n, nil
	}
}

// parserFor returns the parser of a file-backed table type, or nil.
func parserFor(typ string) (parse parseFunc, pattern bool) {
	switch typ {
	case "cidr":
		return parseCIDR, true
	case "regexp":
		return parseRegexp, true
	case "pcre":
		return parsePCRE, true
	case "hash", "texthash", "btree", "lmdb", "cdb", "dbm", "sdbm":
		return parseHash, false
	}
	return nil, false
}
