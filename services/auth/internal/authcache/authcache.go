// Package authcache remembers successful password verifications for a
// bounded time, like Dovecot's auth cache (auth_cache_size,
// auth_cache_ttl), so that a client which authenticates for every message
// does not pay SHA512-CRYPT or bcrypt each time.
//
// What it keeps is a keyed hash: HMAC-SHA256 under a key drawn at random
// for each process (never written anywhere) of the mechanism family, the
// user name, a version of the user's stored credentials and the password.
// Neither the password nor a plain hash of it is kept, and an entry is
// only ever found again by presenting the same four values. Only a
// success is remembered: a failed verification is never cached, as a
// success or otherwise. An entry lives for the TTL from the moment it was
// added (a hit does not extend it), and the least recently used entry
// makes room for a new one when the cache is full.
//
// Trust: the cache trusts its caller to call Remember only after a real
// verification succeeded, and to pass a version that changes whenever the
// user's credentials change (then the old entries are simply never found
// again); a backend that cannot tell its version passes "" and relies on
// the TTL.
package authcache

import (
	"container/list"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash"
	"sync"
	"time"
)

// Password is the family of the plaintext-password mechanisms (PLAIN,
// LOGIN): they hand the password itself to the verifier.
const Password = "password"

// EntryBytes bounds what one entry costs in memory: the 32-byte MAC
// (twice: in the entry and as the map key), its expiry, the list element
// and the map's share (TestMemoryPerEntry measures it).
const EntryBytes = 200

// Options configure a Cache.
type Options struct {
	// Size is the most entries kept; 0 turns the cache off.
	Size int
	// TTL is how long an entry lives; 0 turns the cache off.
	TTL time.Duration
	// Now is the clock; nil: time.Now.
	Now func() time.Time
}

// Cache is a bounded, expiring set of successful verifications. A nil or
// disabled Cache remembers nothing. It is safe for concurrent use.
type Cache struct {
	size  int
	ttl   time.Duration
	now   func() time.Time
	start time.Time
	// macs hands out HMACs under the process's key.
	macs sync.Pool

	mu      sync.Mutex
	entries map[[sha256.Size]byte]*list.Element
	lru     *list.List // of *entry, most recently used first
}

type entry struct {
	mac [sha256.Size]byte
	// expires is when the entry dies, on the monotonic clock since start.
	expires time.Duration
}

// New returns a cache with a fresh random key; with Size or TTL 0 it
// returns nil, a cache that remembers nothing.
func New(opts Options) (*Cache, error) {
	if opts.Size <= 0 || opts.TTL <= 0 {
		return nil, nil
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("auth cache key: %w", err)
	}
	c := &Cache{size: opts.Size, ttl: opts.TTL, now: opts.Now, entries: map[[sha256.Size]byte]*list.Element{}, lru: list.New()}
	if c.now == nil {
		c.now = time.Now
	}
	c.start = c.now()
	c.macs.New = func() any { return hmac.New(sha256.New, key) }
	return c, nil
}

// mac is the entry's name: HMAC(key, family, user, version, password),
// each field length-prefixed so that no two tuples share an encoding.
func (c *Cache) mac(family, user, version string, password []byte) [sha256.Size]byte {
	m := c.macs.Get().(hash.Hash)
	defer c.macs.Put(m)
	m.Reset()
	var n [4]byte
	for _, f := range [][]byte{[]byte(family), []byte(user), []byte(version), password} {
		binary.BigEndian.PutUint32(n[:], uint32(len(f)))
		m.Write(n[:])
		m.Write(f)
	}
	var out [sha256.Size]byte
	m.Sum(out[:0])
	return out
}

// Known reports whether the same family, user, version and password
// verified within the TTL.
func (c *Cache) Known(family, user, version string, password []byte) bool {
	if c == nil {
		return false
	}
	k := c.mac(family, user, version, password)
	now := c.now().Sub(c.start)
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.entries[k]
	if !ok {
		return false
	}
	if e := el.Value.(*entry); now >= e.expires {
		c.lru.Remove(el)
		delete(c.entries, k)
		return false
	}
	c.lru.MoveToFront(el)
	return true
}

// Remember records a successful verification of password for user.
func (c *Cache) Remember(family, user, version string, password []byte) {
	if c == nil {
		return
	}
	k := c.mac(family, user, version, password)
	expires := c.now().Sub(c.start) + c.ttl
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.entries[k]; ok {
		el.Value.(*entry).expires = expires
		c.lru.MoveToFront(el)
		return
	}
	for c.lru.Len() >= c.size {
		old := c.lru.Back()
		c.lru.Remove(old)
		delete(c.entries, old.Value.(*entry).mac)
	}
	c.entries[k] = c.lru.PushFront(&entry{mac: k, expires: expires})
}

// Verify answers from the cache when it can, and otherwise asks verify,
// remembering its answer only when it is a success without error.
func (c *Cache) Verify(family, user, version string, password []byte, verify func() (bool, error)) (ok, hit bool, err error) {
	if c.Known(family, user, version, password) {
		return true, true, nil
	}
	ok, err = verify()
	if ok && err == nil {
		c.Remember(family, user, version, password)
	}
	return ok, false, err
}

// Len returns the number of entries, expired ones not yet dropped
// included.
func (c *Cache) Len() int {
	if c == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}
