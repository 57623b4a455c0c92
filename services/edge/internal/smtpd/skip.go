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
