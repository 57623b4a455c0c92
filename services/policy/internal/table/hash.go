package table

import (
	"bytes"
	"fmt"
	"hash/maphash"
	"math"
	"strings"
	"unicode/utf8"
	"unsafe"
)

// hashTable is a fixed-string table: hash:, texthash:, btree:, lmdb:,
// cdb:, dbm: and sdbm: read from the text source file, and inline:.
// Keys are case-folded when loaded and when looked up, as postmap(1)
// and Postfix's lookups of fixed-string tables do.
//
// A table of a million entries must fit in a small process, so the
// entries are not a Go map of strings: every folded key and value (and
// a key as written, where it differs) lies in one string, text; ents
// hold their offsets and lines in file order (16 bytes an entry), and
// slots is an open-addressing index into ents (4 bytes a slot, at most
// three quarters full). A lookup hashes the folded key once and
// compares it with one or two candidates: its cost does not grow with
// the table.
type hashTable struct {
	// file names the source for Entry.Pos ("file:line"); pos is the
	// fixed Pos of every entry instead (inline: gives its spec).
	file, pos string

	text  string
	ents  []hashEntry
	slots []uint32 // index+1 into ents; 0 is an empty slot
	seed  maphash.Seed

	// buf is text while entries are added; text replaces it at seal.
	buf []byte
}

// hashEntry is one entry: at off in text, the folded key, the value and,
// when origLen > 0, the key as written.
type hashEntry struct {
	off     uint32
	line    uint32
	keyLen  uint16
	valLen  uint16
	origLen uint16
}

func newHashTable(file, pos string, sizeHint int) *hashTable {
	h := &hashTable{file: file, pos: pos, seed: maphash.MakeSeed(), buf: make([]byte, 0, sizeHint)}
	h.slots = make([]uint32, 8)
	return h
}

func (h *hashTable) key(e hashEntry) string {
	return h.text[e.off : e.off+uint32(e.keyLen)]
}

func (h *hashTable) value(e hashEntry) string {
	at := e.off + uint32(e.keyLen)
	return h.text[at : at+uint32(e.valLen)]
}

func (h *hashTable) lookup(key string) (string, bool) {
	k := strings.ToLower(key)
	mask := uint64(len(h.slots) - 1)
	for i := maphash.String(h.seed, k) & mask; ; i = (i + 1) & mask {
		s := h.slots[i]
		if s == 0 {
			return "", false
		}
		if e := h.ents[s-1]; int(e.keyLen) == len(k) && h.key(e) == k {
			return h.value(e), true
		}
	}
}

func (h *hashTable) entries() []Entry {
	out := make([]Entry, 0, len(h.ents))
	h.rangeEntries(func(key, value string, at At) bool {
		out = append(out, Entry{Pos: at.String(), Key: key, Value: value})
		return true
	})
	return out
}

// rangeEntries calls fn with each entry in file order until it returns
// false; nothing is allocated for an entry.
func (h *hashTable) rangeEntries(fn func(key, value string, at At) bool) {
	for _, e := range h.ents {
		key := h.key(e)
		if e.origLen > 0 {
			at := e.off + uint32(e.keyLen) + uint32(e.valLen)
			key = h.text[at : at+uint32(e.origLen)]
		}
		at := At{pos: h.pos}
		if h.file != "" {
			at = At{file: h.file, line: int(e.line)}
		}
		if !fn(key, h.value(e), at) {
			return
		}
	}
}

// foldKey appends key, case-folded as strings.ToLower folds it, to dst.
func foldKey(dst, key []byte) []byte {
	for _, c := range key {
		if c >= utf8.RuneSelf {
			return append(dst, strings.ToLower(string(key))...)
		}
	}
	for _, c := range key {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst
}

// add adds an entry unless its folded key is already there; it reports
// whether it did. The table must not be sealed.
func (h *hashTable) add(line int, key, value []byte) (bool, error) {
	off := len(h.buf)
	h.buf = foldKey(h.buf, key)
	folded := h.buf[off:]
	if len(folded) > math.MaxUint16 || len(value) > math.MaxUint16 || len(key) > math.MaxUint16 {
		h.buf = h.buf[:off]
		return false, fmt.Errorf("key or value longer than %d bytes", math.MaxUint16)
	}
	mask := uint64(len(h.slots) - 1)
	i := maphash.Bytes(h.seed, folded) & mask
	for ; h.slots[i] != 0; i = (i + 1) & mask {
		e := h.ents[h.slots[i]-1]
		if int(e.keyLen) == len(folded) && bytes.Equal(h.buf[e.off:e.off+uint32(e.keyLen)], folded) {
			h.buf = h.buf[:off]
			return false, nil
		}
	}
	e := hashEntry{off: uint32(off), line: uint32(line), keyLen: uint16(len(folded)), valLen: uint16(len(value))}
	h.buf = append(h.buf, value...)
	if !bytes.Equal(folded, key) {
		e.origLen = uint16(len(key))
		h.buf = append(h.buf, key...)
	}
	if len(h.buf) > math.MaxUint32 {
		return false, fmt.Errorf("table larger than %d bytes", uint64(math.MaxUint32))
	}
	h.ents = append(h.ents, e)
	h.slots[i] = uint32(len(h.ents))
	if len(h.ents)*4 > len(h.slots)*3 {
		h.grow()
	}
	return true, nil
}

// grow doubles the index.
func (h *hashTable) grow() {
	slots := make([]uint32, 2*len(h.slots))
	mask := uint64(len(slots) - 1)
	for n, e := range h.ents {
		i := maphash.Bytes(h.seed, h.buf[e.off:e.off+uint32(e.keyLen)]) & mask
		for slots[i] != 0 {
			i = (i + 1) & mask
		}
		slots[i] = uint32(n + 1)
	}
	h.slots = slots
}

// seal ends the adding: the entries' bytes become text, without a copy
// (buf is never written again), and the slack of the entries goes.
func (h *hashTable) seal() *hashTable {
	if len(h.buf) > 0 {
		h.text = unsafe.String(&h.buf[0], len(h.buf))
	}
	h.buf = nil
	if cap(h.ents) > len(h.ents) {
		h.ents = append([]hashEntry(nil), h.ents...)
	}
	return h
}

// parseHash reads the postmap(1) input format: "key whitespace value".
// A duplicate key keeps the first value with a warning, as postmap does
// by default (https://www.postfix.org/postmap.1.html, "duplicate
// entry"). postmap only warns about a key without a value; here it is an
// error, so that a typo is not silently a missing rule.
func parseHash(s *source) (matcher, error) {
	h := newHashTable(s.file, "", len(s.data))
	err := s.eachLine(func(line int, text []byte) error {
		key, value := text, []byte(nil)
		if i := bytes.IndexAny(text, " \t"); i >= 0 {
			key, value = text[:i], bytes.TrimSpace(text[i+1:])
		}
		if len(value) == 0 {
			return s.errorf(line, "expected format: key whitespace value")
		}
		if bytes.HasSuffix(key, []byte(":")) {
			s.warnf(line, "record is in \"key: value\" format; is this an alias file?")
		}
		added, err := h.add(line, key, value)
		if err != nil {
			return s.errorf(line, "%v", err)
		}
		if !added {
			s.warnf(line, "duplicate entry: %q; keeping the first", strings.ToLower(string(key)))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return h.seal(), nil
}
