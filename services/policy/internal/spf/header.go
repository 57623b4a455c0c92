package spf

import (
	"strings"
)

// ReceivedSPF returns the value of a Received-SPF header field (RFC 7208
// §9.1) for the check of req's identity (identity=mailfrom or helo): the result, a comment for people,
// and the key-value pairs client-ip, envelope-from, helo, receiver (when
// known), identity, and mechanism or problem. The value has no line
// breaks; the caller adds "Received-SPF: " and folds it if it wants to.
func ReceivedSPF(req Request, resp Response) string {
	result := resp.Result
	if result == "" {
		result = None
	}
	identity := req.Sender
	if identity == "" {
		identity = "postmaster@" + req.HELO
	}
	name := "mailfrom"
	if req.Identity == HELO {
		identity, name = req.HELO, "helo"
	}
	ip := req.IP.Unmap()

	var b strings.Builder
	b.WriteString(string(result))
	b.WriteString(" (")
	if req.Receiver != "" {
		b.WriteString(commentText(req.Receiver))
		b.WriteString(": ")
	}
	b.WriteString(commentText(comment(result, identity, ip.String(), resp)))
	b.WriteString(")")

	pairs := [][2]string{
		{"client-ip", ip.String()},
		{"envelope-from", req.Sender},
		{"helo", req.HELO},
	}
	if req.Receiver != "" {
		pairs = append(pairs, [2]string{"receiver", req.Receiver})
	}
	pairs = append(pairs, [2]string{"identity", name})
	switch {
	case result == TempError || result == PermError:
		if resp.Problem != "" {
			pairs = append(pairs, [2]string{"problem", resp.Problem})
		}
	case resp.Mechanism != "":
		pairs = append(pairs, [2]string{"mechanism", resp.Mechanism})
	case result == Neutral || result == None:
		// §9.1: "default" when no mechanism matched.
		pairs = append(pairs, [2]string{"mechanism", "default"})
	}
	for i, p := range pairs {
		if i == 0 {
			b.WriteByte(' ')
		} else {
			b.WriteString("; ")
		}
		b.WriteString(p[0])
		b.WriteByte('=')
		b.WriteString(headerValue(p[1]))
	}
	b.WriteByte(';')
	return b.String()
}

func comment(result Result, identity, ip string, resp Response) string {
	of := "domain of " + identity
	switch result {
	case Pass:
		return of + " designates " + ip + " as permitted sender"
	case Fail:
		return of + " does not designate " + ip + " as permitted sender"
	case SoftFail:
		return of + " discourages use of " + ip + " as sender"
	case Neutral:
		return of + " neither permits nor denies " + ip
	case TempError:
		return "temporary error checking " + of + ": " + resp.Problem
	case PermError:
		return "permanent error in the SPF policy of " + of + ": " + resp.Problem
	}
	return of + " publishes no SPF policy"
}

// commentText makes untrusted text safe inside a comment: control
// characters become "?", and "(", ")" and "\" are quoted (RFC 5322 §3.2.2).
func commentText(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c < 0x20 || c == 0x7f:
			b.WriteByte('?')
		case c == '(' || c == ')' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// headerValue writes v as a dot-atom when it is one and as a
// quoted-string otherwise (RFC 5322 §3.2.3, §3.2.4).
func headerValue(v string) string {
	if isDotAtom(v) {
		return v
	}
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c < 0x20 || c == 0x7f:
			b.WriteByte('?')
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

func isDotAtom(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if isAlpha(c) || isDigit(c) || c == '.' || strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0 {
			continue
		}
		return false
	}
	return true
}
