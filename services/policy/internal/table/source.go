package table

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
)

// MaxLineLength is the longest line, physical or logical, that a table
// file may have. Longer lines are refused rather than truncated.
const MaxLineLength = 64 << 10

// ParseError is a bad entry in a table file.
type ParseError struct {
	// Type is the table type, e.g. "pcre".
	Type string
	// File is the file name as opened (after Options.Dir).
	File string
	// Line is the 1-based line where the logical line starts.
	Line int
	// Msg says what is wrong.
	Msg string
}

func (e *ParseError) Error() string {
	return e.Type + ":" + e.File + ":" + strconv.Itoa(e.Line) + ": " + e.Msg
}

// source is the text of a table file being parsed.
type source struct {
	typ  string
	file string
	data []byte
	// warnings are problems that Postfix also only warns about, e.g.
	// postmap's duplicate entries; they are logged, not fatal.
	warnings []string
}

func (s *source) errorf(line int, format string, args ...any) error {
	return &ParseError{Type: s.typ, File: s.file, Line: line, Msg: fmt.Sprintf(format, args...)}
}

func (s *source) warnf(line int, format string, args ...any) {
	s.warnings = append(s.warnings, (&ParseError{Type: s.typ, File: s.file, Line: line, Msg: fmt.Sprintf(format, args...)}).Error())
}

// pos is the Entry.Pos of a line.
func (s *source) pos(line int) string {
	return s.file + ":" + strconv.Itoa(line)
}

// logicalLine is one entry's text and the line it starts on.
type logicalLine struct {
	line int
	text string
}

// lines splits the file into logical lines the way Postfix's readllines()
// does (https://www.postfix.org/DATABASE_README.html and the "TABLE
// FORMAT" sections of the table manual pages): empty and all-blank lines
// and lines whose first non-blank character is '#' are ignored; a line
// that starts with whitespace continues the logical line before it,
// even across ignored lines. Continuations are joined with one space.
// Trailing whitespace (including a CR of CRLF files) is removed.
func (s *source) lines() ([]logicalLine, error) {
	var out []logicalLine
	err := s.eachLine(func(line int, text []byte) error {
		out = append(out, logicalLine{line: line, text: string(text)})
		return nil
	})
	return out, err
}

// eachLine calls fn with each logical line, as lines splits them, and
// the line it starts on. text is only valid during the call: a parser
// that keeps it copies it (a big table is read without a string per
// line).
func (s *source) eachLine(fn func(line int, text []byte) error) error {
	var (
		cur  []byte
		from int
	)
	flush := func() error {
		if from == 0 {
			return nil
		}
		err := fn(from, cur)
		cur, from = cur[:0], 0
		return err
	}
	data := s.data
	for n := 1; len(data) > 0; n++ {
		raw := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			raw, data = data[:i], data[i+1:]
		} else {
			data = nil
		}
		if len(raw) > MaxLineLength {
			return s.errorf(n, "line longer than %d bytes", MaxLineLength)
		}
		text := bytes.TrimRight(raw, " \t\r\n\v\f")
		body := bytes.TrimLeft(text, " \t\r\n\v\f")
		if len(body) == 0 || body[0] == '#' {
			continue
		}
		if len(body) < len(text) {
			if from == 0 {
				s.warnf(n, "logical line must not start with whitespace")
				from = n
				cur = append(cur, body...)
				continue
			}
			if len(cur)+1+len(body) > MaxLineLength {
				return s.errorf(from, "logical line longer than %d bytes", MaxLineLength)
			}
			cur = append(cur, ' ')
			cur = append(cur, body...)
			continue
		}
		if err := flush(); err != nil {
			return err
		}
		from = n
		cur = append(cur, body...)
	}
	return flush()
}

// matcher is the parsed contents of a table.
type matcher interface {
	lookup(key string) (string, bool)
	entries() []Entry
}

// parseFunc parses a table file.
type parseFunc func(s *source) (matcher, error)

// errChanged says that a file changed while it was being read.
var errChanged = errors.New("file changed while being read")

// fileSig identifies a version of a file: what stat said about it.
type fileSig struct {
	mtime int64
	size  int64
	err   string
}

type snapshot struct {
	m   matcher
	sig fileSig
}

// fileTable is a table read from a file and reread when it changes.
type fileTable struct {
	spec    string
	typ     string
	path    string
	pattern bool
	parse   parseFunc
	opts    Options

	cur atomic.Pointer[snapshot]
	// next is when, in Options.Now's UnixNano, a lookup may next stat
	// the file.
	next atomic.Int64

	mu sync.Mutex // serialises reloads; guards failed
	// failed is the version of the file that last failed to load, so
	// that it is neither parsed nor logged again.
	failed fileSig
}

func openFile(spec, typ, path string, pattern bool, parse parseFunc, opts Options) (*fileTable, error) {
	t := &fileTable{spec: spec, typ: typ, path: path, pattern: pattern, parse: parse, opts: opts}
	snap, err := t.load()
	if err != nil {
		return nil, err
	}
	t.cur.Store(snap)
	t.next.Store(opts.Now().UnixNano() + int64(opts.ReloadCheck))
	releaseAfterLoad(snap)
	return t, nil
}

// bigTableFile is the file size from which a load gives the memory its
// parse used (the file's bytes, the buffers outgrown) back to the
// kernel at once, rather than when Go's scavenger gets to it minutes
// later: a million-entry table would otherwise keep the process's
// resident size at twice what the table holds.
const bigTableFile = 8 << 20

func releaseAfterLoad(snap *snapshot) {
	if snap.sig.size >= bigTableFile {
		debug.FreeOSMemory()
	}
}

// load stats, reads and parses the file. Stat comes first so that a
// change made while reading is seen by the next check.
func (t *fileTable) load() (*snapshot, error) {
	for try := 1; ; try++ {
		fi, err := os.Stat(t.path)
		if err != nil {
			return nil, fmt.Errorf("table %s: %w", t.spec, err)
		}
		snap, err := t.loadSig(fileSig{mtime: fi.ModTime().UnixNano(), size: fi.Size()})
		if errors.Is(err, errChanged) {
			if try < 3 {
				continue
			}
			return nil, fmt.Errorf("table %s: %w", t.spec, err)
		}
		return snap, err
	}
}

func (t *fileTable) loadSig(sig fileSig) (*snapshot, error) {
	data, err := os.ReadFile(t.path)
	if err != nil {
		return nil, fmt.Errorf("table %s: %w", t.spec, err)
	}
	if fi, err := os.Stat(t.path); err == nil && (fi.ModTime().UnixNano() != sig.mtime || fi.Size() != sig.size) {
		// Written to while we read it: try again at the next check.
		return nil, errChanged
	}
	s := &source{typ: t.typ, file: t.path, data: data}
	m, err := t.parse(s)
	if err != nil {
		return nil, err
	}
	for _, w := range s.warnings {
		t.opts.Logger.Warn("table entry", "table", t.spec, "warning", w)
	}
	return &snapshot{m: m, sig: sig}, nil
}

// maybeReload stats the file when Options.ReloadCheck has passed since
// the last check, and reloads it when its mtime or size changed. Only
// the lookup that wins the compare-and-swap starts the work, and it does
// not wait for it: a table of a million entries takes seconds to parse,
// and the lookups go on with the current contents until the new ones
// replace them whole.
func (t *fileTable) maybeReload() {
	now := t.opts.Now().UnixNano()
	next := t.next.Load()
	if now < next || !t.next.CompareAndSwap(next, now+int64(t.opts.ReloadCheck)) {
		return
	}
	if !t.mu.TryLock() {
		return // a reload is under way
	}
	go func() {
		defer t.mu.Unlock()
		t.reload()
	}()
}

// reload does maybeReload's work; t.mu is held.
func (t *fileTable) reload() {
	var sig fileSig
	fi, err := os.Stat(t.path)
	if err != nil {
		sig = fileSig{err: err.Error()}
	} else {
		sig = fileSig{mtime: fi.ModTime().UnixNano(), size: fi.Size()}
	}
	if sig == t.cur.Load().sig || sig == t.failed {
		return
	}
	var snap *snapshot
	if err == nil {
		snap, err = t.loadSig(sig)
	} else {
		err = fmt.Errorf("table %s: %w", t.spec, err)
	}
	if errors.Is(err, errChanged) {
		return
	}
	if err != nil {
		t.failed = sig
		t.opts.Logger.Warn("table reload failed; keeping the previous contents", "table", t.spec, "err", err)
		return
	}
	t.failed = fileSig{}
	t.cur.Store(snap)
	t.opts.Logger.Info("table reloaded", "table", t.spec)
	releaseAfterLoad(snap)
}

func (t *fileTable) Lookup(_ context.Context, key string) (string, bool, error) {
	t.maybeReload()
	v, ok := t.cur.Load().m.lookup(key)
	return v, ok, nil
}

func (t *fileTable) Pattern() bool { return t.pattern }

func (t *fileTable) Name() string { return t.spec }

func (t *fileTable) Entries() []Entry {
	t.maybeReload()
	return t.cur.Load().m.entries()
}

// Range is Ranger's: the contents in use, one entry at a time where the
// table type can (hash: and its kin).
func (t *fileTable) Range(fn func(key, value string, at At) bool) {
	m := t.cur.Load().m
	if r, ok := m.(interface {
		rangeEntries(func(key, value string, at At) bool)
	}); ok {
		r.rangeEntries(fn)
		return
	}
	for _, e := range m.entries() {
		if !fn(e.Key, e.Value, At{pos: e.Pos}) {
			return
		}
	}
}
