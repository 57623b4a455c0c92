package smtpd

// spokeFirst is Postfix's check before the greeting
// (smtpd_flag_ill_pipelining in smtpd_proto): a client whose bytes are
// already there when the 220 is about to go out talked before it was
// greeted, which RFC 5321 §4.3.1 does not allow; it is unauthorized
// pipelining (reject_unauth_pipelining, smtpd_forbid_unauth_pipelining).
// It does not wait (smtpgate_greet_pause is the wait, pregreet), and, as
// Postfix, never looks at an implicit-TLS connection; nor at one the
// edge cannot peek at without reading (a PROXY protocol connection).
func (s *session) spokeFirst() bool {
	if s.l.Wrapper || s.unauthPipelining {
		return false
	}
	if !s.wire.spokeFirst() {
		return false
	}
	return s.flagPregreet()
}

func (s *session) flagPregreet() bool {
	s.unauthPipelining = true
	s.log.Info("improper command pipelining after CONNECT: client talked before the greeting")
	s.mlog.Pipelining(s.peer(), "CONNECT", s.wire.peekPending(100))
	return true
}
