package edge

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/smtpgate/smtpgate/services/edge/internal/listener"
)

// handoffGrace is how long a drain waits past smtpgate_shutdown_timeout
// for sessions busy on the server side (a hand-off to the next hop, a
// policy check) before it closes their connections.
const handoffGrace = 5 * time.Second

// Run listens on every listener and serves until ctx ends, then drains:
// every listener stops accepting at once, sessions between transactions
// get "421 4.3.2" at once, sessions inside a transaction go on until
// smtpgate_shutdown_timeout and then get the 421 while they wait for
// their client, and hand-offs under way finish (smtpd.Drain). Reload
// meanwhile applies a new configuration. The listeners it opens it
// closes; the caller closes the Server.
func (s *Server) Run(ctx context.Context) error {
	s.mu.Lock()
	sockets := map[string]*socket{}
	for _, b := range s.current.bindings {
		k, err := listen(ctx, b)
		if err != nil {
			s.mu.Unlock()
			for _, o := range sockets {
				o.close()
			}
			return err
		}
		sockets[k.name] = k
	}
	sessCtx, abort := context.WithCancel(context.WithoutCancel(ctx))
	defer abort()
	s.sockets, s.sessCtx, s.errc = sockets, sessCtx, make(chan error, 1)
	for _, k := range sockets {
		s.startAccepting(ctx, k)
	}
	s.mu.Unlock()
	var err error
	select {
	case <-ctx.Done():
	case err = <-s.errc:
	}
	s.shutdown(ctx, abort)
	return err
}

// listen opens b's listener.
func listen(ctx context.Context, b *binding) (*socket, error) {
	ln, err := listener.Listen(ctx, b.l.Name)
	if err != nil {
		return nil, err
	}
	k := &socket{name: b.l.Name, ln: ln}
	k.cur.Store(b)
	return k, nil
}

// startAccepting runs k's accept loop; the caller holds s.mu.
func (s *Server) startAccepting(ctx context.Context, k *socket) {
	s.log.InfoContext(ctx, "listening", "addr", k.ln.Addr().String(), "listener", k.name, "proxy_protocol", k.cur.Load().proxy != nil)
	s.accepting.Add(1)
	go func() {
		defer s.accepting.Done()
		for {
			conn, err := k.ln.Accept()
			if err != nil {
				if !k.closed.Load() {
					select {
					case s.errc <- fmt.Errorf("accept %s: %w", k.name, err):
					default:
					}
				}
				return
			}
			// The configuration in use when the connection came is
			// the session's for its whole life.
			b := k.cur.Load()
			if p := b.proxy; p != nil {
				// A PROXY header is required, from smtpgate_proxy_networks
				// only; the header is read in the session's goroutine.
				var ok bool
				if conn, ok = listener.ProxyConn(conn, p.trusted, p.timeout, s.log); !ok {
					continue
				}
			}
			s.sessions.Add(1)
			go func() {
				defer s.sessions.Done()
				b.engine.Serve(s.sessCtx, conn, b.l)
			}()
		}
	}()
}

// shutdown is the drain (see Run); abort cancels the sessions' context.
func (s *Server) shutdown(ctx context.Context, abort context.CancelFunc) {
	s.mu.Lock()
	s.stopping = true
	sockets := s.sockets
	s.sockets = nil
	timeout := s.current.set.shutdownTimeout
	s.mu.Unlock()
	for _, k := range sockets {
		k.close()
	}
	s.accepting.Wait()
	begin := time.Now()
	s.log.InfoContext(ctx, "drain: started; listeners closed", "listeners", len(sockets), "sessions", s.drain.Stats().Live, shutdownTimeoutParam, timeout.String())
	s.drain.Start()
	done := make(chan struct{})
	go func() { s.sessions.Wait(); close(done) }()
	wait := func(d time.Duration) bool {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-done:
			return true
		case <-t.C:
			return false
		}
	}
	aborted := 0
	if !wait(timeout) {
		s.log.InfoContext(ctx, "drain: smtpgate_shutdown_timeout reached; closing the sessions that wait for their client", "sessions", s.drain.Stats().Live)
		s.drain.Close()
		if !wait(handoffGrace) {
			aborted = s.drain.Stats().Live
			s.log.WarnContext(ctx, "drain: sessions still busy after the hand-off grace; closing their connections", "sessions", aborted, "grace", handoffGrace.String())
			abort()
			s.drain.Abort()
			if !wait(time.Second) {
				s.log.WarnContext(ctx, "drain: sessions did not end after their connections were closed", "sessions", s.drain.Stats().Live)
			}
		}
	}
	s.mu.Lock()
	s.current.closeNextHops()
	s.mu.Unlock()
	st := s.drain.Stats()
	s.log.InfoContext(ctx, "drain: done",
		"finished", st.Finished, "closed_between_transactions", st.ClosedIdle, "closed_at_deadline", st.ClosedAtDeadline,
		"aborted", aborted, "took", time.Since(begin).Round(time.Millisecond).String())
}

// Reload makes set, from Load, the configuration of new connections: a
// new generation built from it as New builds the first, with the banner,
// limits, timeouts, next hop, every listener's -o overrides and TLS
// certificate (read again from their files by Load). Live sessions keep
// the configuration they started with. Listeners that are new in
// master.cf open, those that are gone close (their live sessions go on);
// one whose address cannot be opened fails the whole reload. On any
// error the configuration in use stays. The parameters in restartOnly
// keep their values until a restart; a change to one is logged.
func (s *Server) Reload(ctx context.Context, set Settings) error {
	g := s.generation(set)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopping {
		return errors.New("reload: the edge is stopping")
	}
	var opened, closed []string
	if s.sockets != nil {
		var err error
		if opened, closed, err = s.rebind(ctx, g); err != nil {
			return err
		}
	}
	// No values: some are secrets (a Redis URL's password).
	for _, name := range set.changedAtStart(s.current.set) {
		s.log.WarnContext(ctx, "reload: a parameter read only at start changed; it takes effect at the next restart", "name", name)
	}
	old := s.current
	s.current = g
	s.engine.Limits.SetReserves(g.reserves())
	old.closeNextHops()
	s.log.InfoContext(ctx, "configuration reloaded", "listeners", len(g.bindings), "opened", opened, "closed", closed)
	return nil
}

// rebind opens g's new listeners, gives the kept ones g's settings and
// closes those g has not; the caller holds s.mu. Nothing changes when a
// new listener cannot be opened.
func (s *Server) rebind(ctx context.Context, g *generation) (opened, closed []string, err error) {
	want := map[string]*binding{}
	var fresh []*socket
	for _, b := range g.bindings {
		want[b.l.Name] = b
		if s.sockets[b.l.Name] != nil {
			continue
		}
		k, err := listen(ctx, b)
		if err != nil {
			for _, o := range fresh {
				o.close()
			}
			return nil, nil, err
		}
		fresh = append(fresh, k)
	}
	for name, k := range s.sockets {
		if b := want[name]; b != nil {
			k.cur.Store(b)
			continue
		}
		k.close()
		delete(s.sockets, name)
		closed = append(closed, name)
	}
	for _, k := range fresh {
		s.sockets[k.name] = k
		s.startAccepting(ctx, k)
		opened = append(opened, k.name)
	}
	return opened, closed, nil
}
