package throttle

import (
	"context"
	"sync"
	"time"
)

// DefaultMaxEntries bounds a Memory store when MaxEntries is zero.
const DefaultMaxEntries = 100_000

// Memory counts failures in process memory: one replica's view only. It is
// safe for concurrent use.
type Memory struct {
	params Params
	// Now is the clock (time.Now when nil); tests set it.
	Now func() time.Time
	// MaxEntries bounds the keys remembered (DefaultMaxEntries when zero).
	// When full, expired keys are dropped, then counts that are not
	// lockouts; lockouts are kept, so new keys are not counted until some
	// expire.
	MaxEntries int

	mu      sync.Mutex
	entries map[string]*entry
}

// entry is one key's state.
type entry struct {
	count     int64
	windowEnd time.Time // the count's expiry
	lockEnd   time.Time // zero unless locked
}

// NewMemory returns an empty in-process store.
func NewMemory(p Params) *Memory {
	return &Memory{params: p, entries: map[string]*entry{}}
}

func (m *Memory) now() time.Time {
	if m.Now != nil {
		return m.Now()
	}
	return time.Now()
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
	if e.count == 0 && e.lockEnd.IsZero() {
		delete(m.entries, id)
		return nil
	}
	return e
}

// Check implements Store.
func (m *Memory) Check(_ context.Context, k Keys) (Decision, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	for _, key := range k.list(m.params) {
		if e := m.live(key.kind+":"+key.id, now); e != nil && !e.lockEnd.IsZero() {
			return Decision{Locked: true, Kind: key.kind, Key: key.name, RetryAfter: e.lockEnd.Sub(now)}, nil
		}
	}
	return Decision{}, nil
}

// Fail implements Store.
func (m *Memory) Fail(_ context.Context, k Keys) (Decision, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	var d Decision
	var worst int64
	for _, key := range k.list(m.params) {
		id := key.kind + ":" + key.id
		e := m.live(id, now)
		if e == nil {
			if !m.makeRoom(now) {
				continue
			}
			e = &entry{}
			m.entries[id] = e
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
	}
	d.Delay = m.params.delay(worst)
	return d, nil
}

// makeRoom reports whether a new entry fits, evicting if needed.
func (m *Memory) makeRoom(now time.Time) bool {
	limit := m.MaxEntries
	if limit <= 0 {
		limit = DefaultMaxEntries
	}
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
		if e.lockEnd.IsZero() {
			delete(m.entries, id)
			return true
		}
	}
	return false
}

// Succeed implements Store.
func (m *Memory) Succeed(_ context.Context, k Keys) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, key := range k.list(m.params) {
		if key.kind == "network" {
			continue
		}
		if e := m.entries[key.kind+":"+key.id]; e != nil {
			e.count = 0
			if e.lockEnd.IsZero() {
				delete(m.entries, key.kind+":"+key.id)
			}
		}
	}
	return nil
}

// Len is the number of keys remembered.
func (m *Memory) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.entries)
}
