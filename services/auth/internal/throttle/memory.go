package throttle

import (
	"context"
	"sync"
	"time"
)

// DefaultMaxEntries bounds a Memory store when MaxEntries is zero.
const DefaultMaxEntries = 100_000

// Memory counts failures in process memory: one replica's view only. It is
// safe for concurrent use; each call holds one mutex, so a reservation is
// atomic.
type Memory struct {
	params Params
	// Now is the clock (time.Now when nil); tests set it.
	Now func() time.Time
	// MaxEntries bounds the keys remembered, and separately the known
	// sources (DefaultMaxEntries when zero). When the keys are full,
	// expired ones are dropped, then counts that are neither lockouts nor
	// in flight; lockouts are kept, so new keys are not counted until some
	// expire. When the known sources are full, expired ones are dropped,
	// then the one that expires first (only successes add them).
	MaxEntries int

	mu      sync.Mutex
	entries map[string]*entry
	known   map[string]time.Time // knownID → expiry
}

// entry is one key's state.
type entry struct {
	count       int64     // failures
	windowEnd   time.Time // the failures' expiry
	inflight    int64     // reserved attempts not yet ended
	inflightEnd time.Time // their expiry (a forgotten reservation)
	lockEnd     time.Time // zero unless locked
}

// NewMemory returns an empty in-process store.
func NewMemory(p Params) *Memory {
	return &Memory{params: p, entries: map[string]*entry{}, known: map[string]time.Time{}}
}

func (m *Memory) now() time.Time {
	if m.Now != nil {
		return m.Now()
	}
	return time.Now()
}

func (m *Memory) limit() int {
	if m.MaxEntries <= 0 {
		return DefaultMaxEntries
	}
	return m.MaxEntries
}

// live returns the entry of id with its expired parts cleared, or nil.
func (m *Memory) live(id string, now time.Time) *entry {
	e := m.entries[id]
	if e == nil {
		return nil
	}
	if !e.lockEnd.IsZero() && !now.Before(e.lockEnd) {
		e.lockEnd = time.Time{}
	}
	if e.count > 0 && !now.Before(e.windowEnd) {
		e.count = 0
	}
	if e.inflight > 0 && !now.Before(e.inflightEnd) {
		e.inflight = 0
	}
	if e.count == 0 && e.inflight == 0 && e.lockEnd.IsZero() {
		delete(m.entries, id)
		return nil
	}
	return e
}

// Known reports whether k's client address is a known source of k's user
// in this process.
func (m *Memory) Known(k Keys) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.isKnown(k, m.now())
}

func (m *Memory) isKnown(k Keys, now time.Time) bool {
	id := k.knownID()
	if id == "" || m.params.KnownSource <= 0 {
		return false
	}
	end, ok := m.known[id]
	if ok && !now.Before(end) {
		delete(m.known, id)
		return false
	}
	return ok
}

// Reserve implements Store.
func (m *Memory) Reserve(_ context.Context, k Keys, known bool) (Reservation, Decision, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	r := Reservation{Keys: k, Known: k.knownID() != "" && m.params.KnownSource > 0 && (known || m.isKnown(k, now))}
	keys := k.list(m.params, r.Known)
	for _, key := range keys {
		if e := m.live(key.kind+":"+key.id, now); e != nil && !e.lockEnd.IsZero() {
			return r, Decision{Locked: true, Kind: key.kind, Key: key.name, RetryAfter: e.lockEnd.Sub(now)}, nil
		}
	}
	for _, key := range keys {
		if e := m.entries[key.kind+":"+key.id]; e != nil && key.limit > 0 && e.count+e.inflight >= key.limit {
			return r, Decision{Locked: true, Full: true, Kind: key.kind, Key: key.name}, nil
		}
	}
	var held []*entry
	for _, key := range keys {
		id := key.kind + ":" + key.id
		e := m.entries[id]
		if e == nil {
			if !m.makeRoom(now) {
				// Full of lockouts: what cannot be counted is refused.
				for _, e := range held {
					e.inflight--
				}
				return r, Decision{Locked: true, Full: true, Kind: key.kind, Key: key.name}, nil
			}
			e = &entry{}
			m.entries[id] = e
		}
		// An entry in flight is never evicted by makeRoom.
		e.inflight++
		e.inflightEnd = now.Add(m.params.maxHold())
		held = append(held, e)
	}
	return r, Decision{}, nil
}

// release gives back r's places (those it holds).
func (m *Memory) release(r Reservation, now time.Time) {
	for _, key := range r.list(m.params, r.Known) {
		if e := m.live(key.kind+":"+key.id, now); e != nil && e.inflight > 0 {
			e.inflight--
			m.live(key.kind+":"+key.id, now)
		}
	}
}

// Fail implements Store.
func (m *Memory) Fail(_ context.Context, r Reservation) (Decision, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	var d Decision
	var worst int64
	for _, key := range r.list(m.params, r.Known) {
		id := key.kind + ":" + key.id
		e := m.live(id, now)
		if e == nil {
			if !m.makeRoom(now) {
				continue
			}
			e = &entry{}
			m.entries[id] = e
		}
		if e.inflight > 0 {
			e.inflight--
		}
		if e.count == 0 {
			e.windowEnd = now.Add(m.params.Window)
		}
		e.count++
		if key.kind != "network" {
			worst = max(worst, e.count)
		}
		if key.limit > 0 && e.count >= key.limit {
			e.count = 0
			e.lockEnd = now.Add(m.params.Lockout)
			if !d.Tripped {
				d = Decision{Locked: true, Tripped: true, Kind: key.kind, Key: key.name, RetryAfter: m.params.Lockout}
			}
		}
		m.live(id, now)
	}
	d.Delay = m.params.delay(worst)
	return d, nil
}

// makeRoom reports whether a new entry fits, evicting if needed.
func (m *Memory) makeRoom(now time.Time) bool {
	limit := m.limit()
	if len(m.entries) < limit {
		return true
	}
	for id := range m.entries {
		m.live(id, now)
	}
	if len(m.entries) < limit {
		return true
	}
	// Map order is random: a random count goes.
	for id, e := range m.entries {
		if e.lockEnd.IsZero() && e.inflight == 0 {
			delete(m.entries, id)
			return true
		}
	}
	return false
}

// Succeed implements Store.
func (m *Memory) Succeed(_ context.Context, r Reservation) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	m.release(r, now)
	if r.client.IsValid() {
		id := "client:" + r.client.String()
		if e := m.entries[id]; e != nil {
			e.count = 0
			m.live(id, now)
		}
	}
	if id := r.knownID(); id != "" && m.params.KnownSource > 0 {
		if _, ok := m.known[id]; !ok && len(m.known) >= m.limit() {
			m.evictKnown(now)
		}
		m.known[id] = now.Add(m.params.KnownSource)
	}
	return nil
}

// evictKnown drops the expired known sources, or else the one that
// expires first.
func (m *Memory) evictKnown(now time.Time) {
	var first string
	var firstEnd time.Time
	for id, end := range m.known {
		if !now.Before(end) {
			delete(m.known, id)
			continue
		}
		if first == "" || end.Before(firstEnd) {
			first, firstEnd = id, end
		}
	}
	if len(m.known) >= m.limit() && first != "" {
		delete(m.known, first)
	}
}

// Release implements Store.
func (m *Memory) Release(_ context.Context, r Reservation) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.release(r, m.now())
	return nil
}

// Len is the number of keys remembered.
func (m *Memory) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.entries)
}
