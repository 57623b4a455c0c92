package policy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/smtpgate/smtpgate/services/policy/internal/policyproto"
	"github.com/smtpgate/smtpgate/services/policy/internal/restriction"
)

// delegationIdle is how long a policy-delegation connection may sit idle
// between requests (Postfix's smtpd_policy_service_max_idle is 300s).
const delegationIdle = 5 * time.Minute

// ServeDelegation serves Postfix's SMTP access policy delegation protocol
// (check_policy_service) on ln until ctx is done: a Postfix that names
// this server in its restrictions gets smtpgate's verdict for the stage
// its request names, evaluated with main.cf's lists (or a master.cf
// listener's, named by policy_context). A permit answers DUNNO, so the
// rest of Postfix's list still runs. A malformed request is logged and
// the connection closed without an answer, as the protocol wants.
func (s *Server) ServeDelegation(ctx context.Context, ln net.Listener) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	s.log.InfoContext(ctx, "policy delegation listening", "addr", ln.Addr().String())
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("policy delegation accept: %w", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.delegationConn(ctx, c)
		}()
	}
}

func (s *Server) delegationConn(ctx context.Context, c net.Conn) {
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	r := bufio.NewReader(c)
	peer := c.RemoteAddr().String()
	for {
		_ = c.SetReadDeadline(time.Now().Add(delegationIdle))
		req, err := policyproto.Read(r)
		if errors.Is(err, io.EOF) || ctx.Err() != nil {
			return
		}
		if err != nil {
			s.log.WarnContext(ctx, "policy delegation request refused; closing", "peer", peer, "err", err)
			return
		}
		action, err := s.delegate(ctx, req)
		if err != nil {
			// No answer: Postfix applies its default_action (451 4.3.5
			// by default), a temporary failure.
			s.log.WarnContext(ctx, "policy delegation request not evaluated; closing", "peer", peer, "err", err)
			return
		}
		_ = c.SetWriteDeadline(time.Now().Add(time.Minute))
		if err := policyproto.Write(c, action); err != nil {
			return
		}
	}
}

// delegate evaluates one request and returns the action to answer.
func (s *Server) delegate(ctx context.Context, req policyproto.Request) (string, error) {
	f, err := delegationFacts(req)
	if err != nil {
		return "", err
	}
	e := s.set.listeners[""].engine
	if pc := req["policy_context"]; pc != "" {
		if l, ok := s.set.listeners[pc]; ok {
			e = l.engine
		}
	}
	v, err := e.Check(ctx, f)
	if err != nil {
		return "", fmt.Errorf("evaluate: %w", err)
	}
	for _, w := range v.Warnings {
		s.log.WarnContext(ctx, w, "origin", "policy delegation", "stage", f.Stage.String(), "client", f.NameAddr(), "from", f.Sender, "to", f.Recipient)
	}
	switch v.Action {
	case restriction.ActionReject, restriction.ActionDefer:
		s.log.InfoContext(ctx, "refused", "origin", "policy delegation", "stage", f.Stage.String(), "client", f.NameAddr(),
			"from", f.Sender, "to", f.Recipient, "restriction", v.Restriction, "list", v.List, "reply", v.Reply.String())
		return fmt.Sprintf("%d %s %s", v.Reply.Code, v.Reply.DSN, delegatedText(v.Reply.Text)), nil
	case restriction.ActionDiscard:
		return "DISCARD", nil
	}
	if len(v.Prepend) > 0 && f.Stage != restriction.EndOfData {
		// The protocol carries one action: the first header.
		return "PREPEND " + v.Prepend[0], nil
	}
	return "DUNNO", nil
}

// delegatedText strips the "<name>: " and "Class rejected: " that Postfix
// adds again around a policy server's text, so that the client reads
// "<x>: Recipient address rejected: Relay access denied" rather than the
// name twice.
func delegatedText(text string) string {
	if strings.HasPrefix(text, "<") {
		if i := strings.Index(text, ">: "); i > 0 {
			text = text[i+3:]
		}
	}
	if i := strings.Index(text, " rejected: "); i > 0 && !strings.Contains(text[:i], ":") {
		text = text[i+len(" rejected: "):]
	}
	return text
}

// delegationFacts turns a Postfix policy request into restriction facts.
func delegationFacts(req policyproto.Request) (*restriction.Facts, error) {
	f := &restriction.Facts{
		SessionID:         "policy-delegation",
		ClientName:        req["client_name"],
		ReverseClientName: req["reverse_client_name"],
		HELO:              req["helo_name"],
		SASLUsername:      req["sasl_username"],
		SASLMethod:        req["sasl_method"],
		ETRNDomain:        req["etrn_domain"],
	}
	switch st := strings.ToUpper(req["protocol_state"]); st {
	case "CONNECT":
		f.Stage = restriction.Connect
	case "EHLO", "HELO":
		f.Stage = restriction.HELO
	case "MAIL":
		f.Stage = restriction.Mail
	case "RCPT":
		f.Stage = restriction.Rcpt
	case "DATA", "BDAT":
		f.Stage = restriction.Data
	case "END-OF-MESSAGE":
		f.Stage = restriction.EndOfData
	case "VRFY":
		f.Stage = restriction.VRFY
	case "ETRN":
		f.Stage = restriction.ETRN
	default:
		return nil, fmt.Errorf("protocol_state %q is not a stage", st)
	}
	if a := req["client_address"]; a != "" && a != "unknown" {
		addr, err := netip.ParseAddr(a)
		if err != nil {
			return nil, fmt.Errorf("client_address %q: %w", a, err)
		}
		f.ClientAddr = addr
	}
	switch f.Stage {
	case restriction.Mail, restriction.Rcpt, restriction.Data, restriction.EndOfData:
		f.InTransaction = true
		f.Sender = req["sender"]
		f.Recipient = req["recipient"]
		if n, err := strconv.Atoi(req["recipient_count"]); err == nil && n >= 0 {
			f.RecipientCount = n
		}
	case restriction.VRFY:
		f.Recipient = req["recipient"]
	}
	switch {
	case f.Stage == restriction.Rcpt && f.Recipient == "":
		return nil, errors.New("RCPT request without a recipient")
	case f.Stage == restriction.VRFY && f.Recipient == "":
		return nil, errors.New("VRFY request without a recipient")
	case f.Stage == restriction.ETRN && f.ETRNDomain == "":
		return nil, errors.New("ETRN request without etrn_domain")
	case f.Stage == restriction.HELO && f.HELO == "":
		return nil, errors.New("HELO request without helo_name")
	}
	return f, nil
}
