package edge

import (
	"runtime/debug"

	"github.com/smtpgate/smtpgate/services/edge/internal/smtpd"
)

// memoryBudget applies smtpgate_memory_budget: the sessions' share of it
// (smtpd.Memory), and Go's soft memory limit lowered to what is left of
// it once the program's own pages are counted, so that the garbage
// collector works harder before the process passes the budget rather
// than after. Go's limit counts the memory the Go runtime maps, not the
// program's code and data mapped from its file, which are resident too:
// about 19 MB measured under attack (RssFile in /proc/PID/status);
// programPages leaves room for them. A GOMEMLIMIT that is lower stays.
// 0 or less: neither.
func memoryBudget(budget int64) *smtpd.Memory {
	if budget <= 0 {
		return nil
	}
	limit := max(budget-programPages, budget/2)
	if limit < debug.SetMemoryLimit(-1) {
		debug.SetMemoryLimit(limit)
	}
	return smtpd.NewMemory(budget)
}

// programPages is what the edge's resident memory holds besides what Go's
// memory limit counts.
const programPages = 24 << 20
