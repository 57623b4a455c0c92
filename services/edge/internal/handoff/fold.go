package handoff

import (
	"bytes"
	"io"
)

// foldLines writes message content (CRLF line ends, not dot-stuffed) to
// w with every line longer than limit bytes broken as Postfix's smtp(8)
// breaks it for smtp_line_length_limit (smtp_proto.c, smtp_text_out):
// after limit bytes, "<CR><LF><SPACE>" is inserted and the line goes on,
// the space counting towards the next piece's limit. Header and body
// lines are treated alike, bytes are counted (a multi-byte character may
// be split), and the CRLF at the end of a line does not count: a line of
// exactly limit bytes is left whole. Since every piece after the first
// starts with a space, none can start with a dot, and none can make an
// end-of-data line.
type foldLines struct {
	w     io.Writer
	limit int
	// col counts the bytes of the current output line.
	col int
	// broke: a line was broken.
	broke bool
}

var foldBreak = []byte("\r\n ")

func (f *foldLines) Write(p []byte) (int, error) {
	// A limit of 1 would leave no room after the space.
	f.limit = max(f.limit, 2)
	start := 0 // p[start:] is not written yet
	for i := 0; i < len(p); {
		j := bytes.IndexByte(p[i:], '\n')
		end := len(p)
		if j >= 0 {
			end = i + j
		}
		// The line's bytes are p[i:end]. A CR takes no room and is
		// never broken before: it is the CRLF's (the edge's content has
		// no other), also when its LF comes in the next Write.
		seg := p[i:end]
		if n := len(seg) - bytes.Count(seg, []byte{'\r'}); f.col+n <= f.limit {
			f.col += n
		} else {
			for k := i; k < end; k++ {
				if p[k] == '\r' {
					continue
				}
				if f.col == f.limit {
					if _, err := f.w.Write(p[start:k]); err != nil {
						return start, err
					}
					if _, err := f.w.Write(foldBreak); err != nil {
						return k, err
					}
					start, f.col, f.broke = k, 1, true
				}
				f.col++
			}
		}
		if j < 0 {
			break
		}
		f.col = 0
		i = end + 1
	}
	if _, err := f.w.Write(p[start:]); err != nil {
		return start, err
	}
	return len(p), nil
}
