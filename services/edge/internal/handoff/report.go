package handoff

import (
	"net"
	"net/netip"
)

// Report is what a transaction's next hop is and answered, for the mail
// log's delivery lines (Postfix's smtp, lmtp and virtual agents'
// "to=<...>, relay=..., status=sent (...)").
type Report struct {
	// Agent is the Postfix delivery agent the next hop stands for:
	// "smtp", "lmtp" or "virtual".
	Agent string
	// Relay is Postfix's relay= value: "host[addr]:port" for TCP,
	// "host[path]" for a Unix socket, "virtual" for a Maildir.
	Relay string
	// Reply is the next hop's reply to the content ("250 2.0.0 Ok:
	// queued as X"), once Data succeeded; Replies the LMTP next hop's
	// replies per recipient.
	Reply   string
	Replies map[string]string
}

// Reporter is a Tx that reports its next hop (Relay's and Maildir's
// do).
type Reporter interface {
	Report() Report
}

// Report names the next hop as Postfix's relay= does. The name is the
// one in smtpgate_next_hop, not looked up: for an address, the address
// ("192.0.2.1[192.0.2.1]:25").
func (r *Relay) Report() Report {
	rep := Report{Agent: "smtp"}
	if r.LMTP {
		rep.Agent = "lmtp"
	}
	if r.Network == "unix" {
		host := r.Opts.Hostname
		if host == "" {
			host = "localhost"
		}
		rep.Relay = host + "[" + r.Addr + "]"
		return rep
	}
	host, port, err := net.SplitHostPort(r.Addr)
	if err != nil {
		rep.Relay = r.Addr
		return rep
	}
	addr := host
	if a, err := netip.ParseAddr(host); err == nil {
		addr = a.Unmap().String()
	}
	rep.Relay = host + "[" + addr + "]:" + port
	return rep
}

// Report implements Reporter.
func (t *relayTx) Report() Report {
	rep := t.r.Report()
	rep.Reply, rep.Replies = t.reply, t.replies
	return rep
}

// Report names a Maildir as Postfix's virtual(8) is named in the log.
func (m *Maildir) Report() Report { return Report{Agent: "virtual", Relay: "virtual"} }

// Report implements Reporter: virtual(8)'s words once the message is
// written.
func (t *maildirTx) Report() Report {
	rep := t.m.Report()
	if t.done {
		rep.Reply = "delivered to maildir"
	}
	return rep
}
