package edge

import (
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/smtpgate/smtpgate/pkg/telemetry"
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

// memoryMetrics exports what the sessions hold of the budget
// (smtpgate_edge_memory_held_bytes); with no budget, nothing.
func memoryMetrics(r prometheus.Registerer, m *smtpd.Memory) {
	if m == nil {
		return
	}
	telemetry.Register(r, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "smtpgate_edge_memory_held_bytes",
		Help: "Bytes the SMTP sessions hold of smtpgate_memory_budget's sessions' share (recipients, headers, message content in memory).",
	}, func() float64 { return float64(m.Held()) }))
}
