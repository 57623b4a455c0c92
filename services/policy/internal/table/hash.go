package table

import (
	"strings"
)

// hashTable is a fixed-string table: hash:, texthash:, btree:, lmdb:,
// cdb:, dbm: and sdbm: read from the text source file, and inline:.
// Keys are case-folded when loaded and when looked up, as postmap(1)
// and Postfix's lookups of fixed-string tables do.
type hashTable struct {
	m    map[string]string
	ents []Entry
}

func (h *hashTable) lookup(key string) (string, bool) {
	v, ok := h.m[strings.ToLower(key)]
	return v, ok
}

func (h *hashTable) entries() []Entry { return h.ents }

// add adds an entry unless its folded key is already there; it reports
// whether it did.
func (h *hashTable) add(e Entry) bool {
	k := strings.ToLower(e.Key)
	if _, dup := h.m[k]; dup {
		return false
	}
	h.m[k] = e.Value
	h.ents = append(h.ents, e)
	return true
}

// parseHash reads the postmap(1) input format: "key whitespace value".
// A duplicate key keeps the first value with a warning, as postmap does
// by default (https://www.postfix.org/postmap.1.html, "duplicate
// entry"). postmap only warns about a key without a value; here it is an
// error, so that a typo is not silently a missing rule.
func parseHash(s *source) (matcher, error) {
	lines, err := s.lines()
	if err != nil {
		return nil, err
	}
	h := &hashTable{m: make(map[string]string, len(lines))}
	for _, l := range lines {
		key, value := l.text, ""
		if i := strings.IndexAny(l.text, " \t"); i >= 0 {
			key, value = l.text[:i], strings.TrimSpace(l.text[i+1:])
		}
		if value == "" {
			return nil, s.errorf(l.line, "expected format: key whitespace value")
		}
		if strings.HasSuffix(key, ":") {
			s.warnf(l.line, "record is in \"key: value\" format; is this an alias file?")
		}
		if !h.add(Entry{Pos: s.pos(l.line), Key: key, Value: value}) {
			s.warnf(l.line, "duplicate entry: %q; keeping the first", strings.ToLower(key))
		}
	}
	return h, nil
}
