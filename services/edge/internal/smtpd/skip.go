package smtpd

import (
	"sync"
	"time"

	policyv1 "github.com/smtpgate/smtpgate/proto/smtpgate/policy/v1"
)

// skipped remembers, per listener, the stages policy said it always
// permits (CheckResponse.permit_stages), for Server.PolicySkipTime after
// the answer that said so. Asking about such a stage costs a round trip
// and gets PERMIT with the defer_if_permit the request carried, which
// the session can answer itself. Every answer refreshes the listener's
// entry, so a policy restarted with another configuration is heeded
// within PolicySkipTime.
type skipped struct {
	mu sync.Mutex
	m  map[string]skipEntry
}

type skipEntry struct {
	stages uint32 // bit n: policyv1.Stage n
	until  time.Time
}

// skip reports whether stage may go unasked on listener.
func (k *skipped) skip(listener string, stage policyv1.Stage, now time.Time) bool {
	if stage < 0 || stage >= 32 {
		return false
	}
	k.mu.Lock()
	e, ok := k.m[listener]
	k.mu.Unlock()
	return ok && now.Before(e.until) && e.stages&(1<<stage) != 0
}

// learn records the stages of an answer for listener, good for ttl.
func (k *skipped) learn(listener string, stages []policyv1.Stage, now time.Time, ttl time.Duration) {
	var bits uint32
	for _, st := range stages {
		if st > 0 && st < 32 {
			bits |= 1 << st
		}
	}
	k.mu.Lock()
	if k.m == nil {
		k.m = map[string]skipEntry{}
	}
	k.m[listener] = skipEntry{stages: bits, until: now.Add(ttl)}
	k.mu.Unlock()
}

// knownNames remembers, per listener and client address, the names
// policy resolved for a session (smtpd_peername_lookup), for
// Server.PolicySkipTime, like the skipped stages: a client that
// reconnects within it needs no connect check only to learn its names
// again when that stage is one policy always permits. A temporary
// failure is not remembered, so that the next session asks again.
type knownNames struct {
	mu sync.Mutex
	m  map[namesKey]namesEntry
}

type namesKey struct{ listener, addr string }

type namesEntry struct {
	names *policyv1.ClientNames
	until time.Time
}

// maxKnownNames bounds knownNames: past it the expired entries go, and
// if that is not enough, all of them.
const maxKnownNames = 20000

// get returns the names remembered for addr on listener, or nil.
func (k *knownNames) get(listener, addr string, now time.Time) *policyv1.ClientNames {
	k.mu.Lock()
	defer k.mu.Unlock()
	e, ok := k.m[namesKey{listener, addr}]
	if !ok || !now.Before(e.until) {
		return nil
	}
	return e.names
}

// put remembers names for addr on listener, good for ttl.
func (k *knownNames) put(listener, addr string, names *policyv1.ClientNames, now time.Time, ttl time.Duration) {
	if names.GetNameStatus() == policyv1.NameStatus_NAME_STATUS_TEMPORARY ||
		names.GetReverseNameStatus() == policyv1.NameStatus_NAME_STATUS_TEMPORARY {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.m == nil {
		k.m = map[namesKey]namesEntry{}
	}
	if len(k.m) >= maxKnownNames {
		for key, e := range k.m {
			if !now.Before(e.until) {
				delete(k.m, key)
			}
		}
		if len(k.m) >= maxKnownNames {
			clear(k.m)
		}
	}
	k.m[namesKey{listener, addr}] = namesEntry{names: names, until: now.Add(ttl)}
}
