package resolver

import (
	"container/list"
	"encoding/binary"
	"errors"
	"slices"
	"sync"
	"time"
)

// kind is the outcome an entry records.
type kind uint8

const (
	positive  kind = iota + 1 // records of the asked type
	notFound                  // NXDOMAIN
	noData                    // NOERROR, no records of the type
	temporary                 // SERVFAIL, timeout, network error...
)

// key is a cache key: the canonical (lower-cased, fully qualified) name
// and the type.
type key struct {
	name  string
	qtype uint16
}

// entry is one cached outcome. Entries are never changed once built, so
// they are shared between the cache and every caller reading them.
type entry struct {
	kind    kind
	rcode   int
	final   string   // name at the end of the CNAME chain
	records []string // presentation form, only for positive
	expires time.Time
	cause   string // for temporary: what went wrong
	// err is the error every answer from this entry returns, for
	// notFound and noData; set by withErr before the entry is shared.
	err error
}

// lru is the bounded in-process cache: least recently used entries are
// dropped first, expired ones when met.
type lru struct {
	mu    sync.Mutex
	max   int
	order *list.List // of *lruItem, most recent first
	items map[key]*list.Element
}

type lruItem struct {
	k key
	e *entry
}

func newLRU(max int) *lru {
	return &lru{max: max, order: list.New(), items: make(map[key]*list.Element)}
}

// get returns k's entry unless it is missing or expired at now.
func (c *lru) get(k key, now time.Time) (*entry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[k]
	if !ok {
		return nil, false
	}
	it := el.Value.(*lruItem)
	if !now.Before(it.e.expires) {
		c.order.Remove(el)
		delete(c.items, k)
		return nil, false
	}
	c.order.MoveToFront(el)
	return it.e, true
}

// put stores e under k, dropping the least recently used entry when full.
func (c *lru) put(k key, e *entry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[k]; ok {
		el.Value.(*lruItem).e = e
		c.order.MoveToFront(el)
		return
	}
	c.items[k] = c.order.PushFront(&lruItem{k: k, e: e})
	for c.order.Len() > c.max {
		last := c.order.Back()
		c.order.Remove(last)
		delete(c.items, last.Value.(*lruItem).k)
	}
}

// len is the number of entries held, expired ones included.
func (c *lru) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}

// The Redis encoding of an entry, version 1:
//
//	byte    version (1)
//	byte    kind (positive, notFound or noData; temporary is never shared)
//	uvarint rcode
//	uvarint expiry, milliseconds since the Unix epoch
//	string  final name
//	uvarint number of records, then each record as a string
//
// where a string is a uvarint length and that many bytes.
const encodingVersion = 1

// Decoding limits: far above what a DNS message can carry (64 KiB), so that
// garbage cannot make the decoder allocate much.
const (
	maxEncodedLen = 1 << 17
	maxRecords    = 1 << 12
)

var errBadEncoding = errors.New("malformed cache entry")

func encodeEntry(e *entry) []byte {
	n := 2 + 3*binary.MaxVarintLen64 + len(e.final)
	for _, r := range e.records {
		n += binary.MaxVarintLen64 + len(r)
	}
	b := make([]byte, 0, n)
	b = append(b, encodingVersion, byte(e.kind))
	b = binary.AppendUvarint(b, uint64(e.rcode))
	b = binary.AppendUvarint(b, uint64(e.expires.UnixMilli()))
	b = appendString(b, e.final)
	b = binary.AppendUvarint(b, uint64(len(e.records)))
	for _, r := range e.records {
		b = appendString(b, r)
	}
	return b
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// decodeEntry parses what encodeEntry wrote. It refuses anything else,
// including trailing bytes and entries that could not have been written
// (a temporary kind, a positive entry without records).
func decodeEntry(b []byte) (*entry, error) {
	if len(b) > maxEncodedLen || len(b) < 2 || b[0] != encodingVersion {
		return nil, errBadEncoding
	}
	e := &entry{kind: kind(b[1])}
	if e.kind != positive && e.kind != notFound && e.kind != noData {
		return nil, errBadEncoding
	}
	d := decoder{b: b[2:]}
	rcode := d.uvarint()
	ms := d.uvarint()
	e.final = d.string()
	n := d.uvarint()
	if d.err || rcode > 0xfff || ms > 1<<53 || n > maxRecords || n > uint64(len(d.b)) {
		return nil, errBadEncoding
	}
	e.rcode = int(rcode)
	e.expires = time.UnixMilli(int64(ms))
	if n > 0 {
		e.records = make([]string, 0, n)
	}
	for range n {
		e.records = append(e.records, d.string())
	}
	if d.err || len(d.b) != 0 || (e.kind == positive) != (len(e.records) > 0) {
		return nil, errBadEncoding
	}
	return e, nil
}

type decoder struct {
	b   []byte
	err bool
}

func (d *decoder) uvarint() uint64 {
	if d.err {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = true
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) string() string {
	n := d.uvarint()
	if d.err || n > uint64(len(d.b)) {
		d.err = true
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

// equal reports whether two entries say the same (for tests and fuzzing).
func (e *entry) equal(o *entry) bool {
	return e.kind == o.kind && e.rcode == o.rcode && e.final == o.final &&
		e.expires.Equal(o.expires) && e.cause == o.cause && slices.Equal(e.records, o.records)
}
