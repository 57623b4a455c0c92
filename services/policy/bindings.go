package policy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/smtpgate/smtpgate/pkg/resolver"
	"github.com/smtpgate/smtpgate/services/policy/internal/greylist"
	"github.com/smtpgate/smtpgate/services/policy/internal/ratelimit"
	"github.com/smtpgate/smtpgate/services/policy/internal/table"
)

// bindings are what the lists Load compiles hold but only the process
// may open or give: the smtpgate-auth client of auth:users tables, the
// resolver's Redis and logger, the stores of check_rate_limit and
// check_greylist, and the tables' logger. Load compiles against them; New
// binds them once, before the first check.
type bindings struct {
	// users is what every auth:users table shares; New sets its client
	// and cache.
	users authUsers
	// dns is the resolver of the DNS restrictions, built unbound (nil
	// without one, Settings.dnsErr says why); New binds its logger and
	// Redis.
	dns *resolver.Resolver
	// limits and grey are the shared state the lists hold; New gives
	// them the process's stores (in memory, or in Redis).
	limits boundCounter
	grey   boundGreylist
	// tables are the database and server tables (table.Connected)
	// opened, once per spec for every listener; Server.Close closes
	// them, check probes them.
	tables openTables
	// log is the tables' logger: records wait in held until New binds it.
	log  *slog.Logger
	held *heldLog
	// taken is set by the New that bound them.
	taken atomic.Bool
}

func newBindings() *bindings {
	held := &heldLog{}
	return &bindings{log: slog.New(heldHandler{log: held}), held: held}
}

// openTables are the lookup tables, opened once per spec and shared by
// every listener's restriction lists: one copy of a million-entry file
// in memory, one connection pool per database.
type openTables struct {
	bySpec map[string]table.Table
	// order are the tables that hold connections (io.Closer), in the
	// order they were opened.
	order []table.Table
}

// open opens spec, or returns the table opened for it before.
func (c *openTables) open(spec string, opts table.Options) (table.Table, error) {
	if t, ok := c.bySpec[spec]; ok {
		return t, nil
	}
	t, err := table.Open(spec, opts)
	if err != nil {
		return nil, err
	}
	if c.bySpec == nil {
		c.bySpec = map[string]table.Table{}
	}
	c.bySpec[spec] = t
	if _, ok := t.(io.Closer); ok {
		c.order = append(c.order, t)
	}
	return t, nil
}

// probe asks each table that can whether its database or server
// answers, and returns a warning for each that does not.
func (c *openTables) probe(ctx context.Context) []string {
	var out []string
	for _, t := range c.order {
		if p, ok := t.(table.Prober); ok {
			if err := p.Probe(ctx); err != nil {
				out = append(out, fmt.Sprintf("table %s: cannot be reached now (lookups will fail temporarily, 451 4.3.0): %v", t.Name(), err))
			}
		}
	}
	return out
}

// close closes the tables, the last opened first.
func (c *openTables) close() error {
	var errs []error
	for i := len(c.order) - 1; i >= 0; i-- {
		errs = append(errs, c.order[i].(io.Closer).Close())
	}
	return errors.Join(errs...)
}

// boundCounter is the check_rate_limit counter the lists hold: the
// process's, once New set it.
type boundCounter struct{ ratelimit.Counter }

// boundGreylist is the check_greylist store the lists hold: the
// process's, once New set it.
type boundGreylist struct{ greylist.Store }

// heldLog keeps the records logged before New binds the process's
// handler (a table's load warnings), and hands them to it in order when
// bound; later records go straight through.
type heldLog struct {
	mu      sync.Mutex
	to      slog.Handler
	records []heldRecord
}

type heldRecord struct {
	ctx  context.Context
	with func(slog.Handler) slog.Handler
	r    slog.Record
}

// bind hands the held records to h, and every later one.
func (l *heldLog) bind(h slog.Handler) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.to = h
	for _, rec := range l.records {
		to := h
		if rec.with != nil {
			to = rec.with(h)
		}
		if to.Enabled(rec.ctx, rec.r.Level) {
			_ = to.Handle(rec.ctx, rec.r)
		}
	}
	l.records = nil
}

// heldHandler is the slog.Handler over a heldLog; with replays the
// WithAttrs and WithGroup calls made on it onto the bound handler.
type heldHandler struct {
	log  *heldLog
	with func(slog.Handler) slog.Handler
}

// target returns the bound handler (nil before bind).
func (h heldHandler) target() slog.Handler {
	h.log.mu.Lock()
	to := h.log.to
	h.log.mu.Unlock()
	if to != nil && h.with != nil {
		to = h.with(to)
	}
	return to
}

func (h heldHandler) Enabled(ctx context.Context, level slog.Level) bool {
	if to := h.target(); to != nil {
		return to.Enabled(ctx, level)
	}
	return true // kept: the bound handler decides
}

func (h heldHandler) Handle(ctx context.Context, r slog.Record) error {
	h.log.mu.Lock()
	if h.log.to == nil {
		h.log.records = append(h.log.records, heldRecord{ctx: ctx, with: h.with, r: r.Clone()})
		h.log.mu.Unlock()
		return nil
	}
	h.log.mu.Unlock()
	return h.target().Handle(ctx, r)
}

func (h heldHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return h.then(func(to slog.Handler) slog.Handler { return to.WithAttrs(attrs) })
}

func (h heldHandler) WithGroup(name string) slog.Handler {
	return h.then(func(to slog.Handler) slog.Handler { return to.WithGroup(name) })
}

func (h heldHandler) then(f func(slog.Handler) slog.Handler) slog.Handler {
	prev := h.with
	return heldHandler{log: h.log, with: func(to slog.Handler) slog.Handler {
		if prev != nil {
			to = prev(to)
		}
		return f(to)
	}}
}
