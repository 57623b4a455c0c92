// Package table implements the Postfix lookup tables that access
// restrictions and table-valued parameters name as "type:name": cidr:,
// regexp:, pcre: (with Go's RE2 engine), hash:, texthash:, lmdb:, btree:
// and cdb: (read from the text source file that postmap would compile),
// inline:{...} and static:. The configuration and the table files are
// trusted; the keys looked up come from SMTP clients and are not.
package table

import "context"

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
	Entries() []Entry
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
