package smtpd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	smtp "github.com/emersion/go-smtp"
	"github.com/rs/zerolog"

	"github.com/kumogo/kumogo/internal/config"
	"github.com/kumogo/kumogo/internal/event"
	"github.com/kumogo/kumogo/internal/logrecord"
	"github.com/kumogo/kumogo/internal/message"
)

// Enqueuer takes accepted messages whose queue is not "null", in KumoMTA's
// order (docs/flow.md): Spool (queue resolution and the durable write), then the
// listener logs the Reception record, then Insert into the scheduled
// queue; only then does the client get its 250. Insert may finish the
// durable write (the queue commits the message with its Reception record):
// an error with a SpoolFailure() bool method is answered as a failed spool
// write. If Insert fails the listener calls Unspool.
type Enqueuer interface {
	Spool(ctx context.Context, msg *message.Message, deferred bool) error
	Insert(ctx context.Context, msg *message.Message) error
	Unspool(ctx context.Context, msg *message.Message)
}

// RecordLogger receives log records (Reception, Rejection, ...). msg, when
// not nil, is the message the record is about; the logger must not keep it
// after Log returns.
type RecordLogger interface {
	// Enabled reports whether any log is configured, so that records
	// nobody will write are not built.
	Enabled() bool
	// Log writes rec. It must not keep rec, or anything rec points to,
	// once it returns: the listener reuses them. A record whose ID is
	// empty takes its id, sender and (when Recipient is nil) recipients
	// from msg, which may also be reused once Log returns.
	Log(rec *logrecord.Record, msg *message.Message)
}

// Deps are the collaborators of a listener.
type Deps struct {
	Policy   Policy
	Logger   RecordLogger // may be nil: no records
	Enqueuer Enqueuer     // may be nil: only queue "null" is accepted
	IDs      *message.IDGenerator
	Log      zerolog.Logger
	// NodeID is copied into records.
	NodeID string
}

// Server is one ESMTP listener.
type Server struct {
	cfg  config.ESMTPListener
	deps Deps
	log  zerolog.Logger

	tlsConfig *tls.Config
	// variantTLS holds the TLS configuration of every peer/via variant
	// of cfg (nil without variants).
	variantTLS map[*config.ESMTPListener]*tls.Config
	gs         *smtp.Server
	ln         net.Listener
	addr       net.Addr
	localIP    string

	// handler presence, computed once
	hasEhlo, hasConnAccepted, hasMail, hasRcpt, hasData, hasSplit, hasReceived, hasRewrite, hasListenerDomain, hasAuth bool

	health   atomic.Pointer[func() (bool, string)]
	active   atomic.Int64
	shutting atomic.Bool
	mu       sync.Mutex
	conns    map[*session]struct{}
	served   chan struct{}
	sessSeq  atomic.Uint64

	fdLimit fdReserve   // accept at the fd limit (accept.go)
	budget  *bodyBudget // bodies in flight (budget.go)
}

// New validates cfg and prepares a listener; call Listen to bind.
func New(cfg config.ESMTPListener, deps Deps) (*Server, error) {
	if deps.Policy == nil {
		return nil, errors.New("smtpd: a policy is required")
	}
	if deps.IDs == nil {
		deps.IDs = message.NewIDGenerator()
	}
	if cfg.Hostname == "" {
		return nil, errors.New("smtpd: hostname is empty")
	}
	tc, err := loadTLS(cfg)
	if err != nil {
		return nil, fmt.Errorf("smtpd: listener %s: %w", cfg.Listen, err)
	}
	s := &Server{
		cfg:       cfg,
		deps:      deps,
		log:       deps.Log,
		tlsConfig: tc,
		conns:     make(map[*session]struct{}),
		served:    make(chan struct{}),
		budget:    newBodyBudget(cfg.MaxBodyMemory, cfg.MaxMessageSize),
	}
	if v := cfg.Variants; v != nil {
		// every peer/via variant with its own TLS configuration, made now
		// so that a bad certificate in a block fails the start
		s.variantTLS = map[*config.ESMTPListener]*tls.Config{}
		for _, row := range v.Configs {
			for _, c := range row {
				if _, done := s.variantTLS[c]; done {
					continue
				}
				if s.variantTLS[c], err = loadTLS(*c); err != nil {
					return nil, fmt.Errorf("smtpd: listener %s: peer/via block: %w", cfg.Listen, err)
				}
			}
		}
	}
	p := deps.Policy
	s.hasEhlo = p.HasHandler(event.Ehlo)
	s.hasConnAccepted = p.HasHandler(event.ConnectionAccepted)
	s.hasMail = p.HasHandler(event.MailFrom)
	s.hasRcpt = p.HasHandler(event.RcptTo)
	s.hasData = p.HasHandler(event.Data)
	s.hasSplit = p.HasHandler(event.SplitTransaction)
	s.hasReceived = p.HasHandler(event.MessageReceived)
	s.hasRewrite = p.HasHandler(event.RewriteResponse)
	s.hasListenerDomain = p.HasHandler(event.ListenerDomain)
	s.hasAuth = p.HasHandler(event.AuthPlain)

	gs := smtp.NewServer(backend{s})
	gs.Domain = cfg.Hostname
	gs.MaxLineLength = 0        // the session enforces line_length_hard_limit
	gs.MaxMessageBytes = 0      // the session enforces max_message_size
	gs.MaxRecipients = 0        // the session enforces max_recipients_per_message
	gs.AllowInsecureAuth = true // AUTH is answered by the session
	gs.EnableSMTPUTF8 = true
	gs.ErrorLog = zlogAdapter{deps.Log}
	s.gs = gs
	return s, nil
}

// configFor returns the listener configuration for a session from peer
// to local, and its TLS configuration.
func (s *Server) configFor(peer, local netip.Addr) (*config.ESMTPListener, *tls.Config) {
	if s.cfg.Variants == nil {
		return &s.cfg, s.tlsConfig
	}
	c := s.cfg.Variants.For(peer, local)
	return c, s.variantTLS[c]
}

// ListenAddr normalises KumoMTA listen strings: "0:25" means all IPv4
// addresses.
func ListenAddr(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	if host == "0" {
		host = "0.0.0.0"
	}
	return net.JoinHostPort(strings.Trim(host, "[]"), port)
}

// Network picks "tcp4" for an IPv4 listen address (so "0.0.0.0:25" means
// all IPv4 addresses, as in KumoMTA, and is reported as such), "tcp6" for an
// IPv6 literal and "tcp" for anything else.
func Network(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return "tcp"
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		if ip.Is4() {
			return "tcp4"
		}
		return "tcp6"
	}
	return "tcp"
}

// Listen binds the listening socket.
func (s *Server) Listen() error {
	addr := ListenAddr(s.cfg.Listen)
	ln, err := net.Listen(Network(addr), addr)
	if err != nil {
		return fmt.Errorf("smtpd: listen on %s: %w", s.cfg.Listen, err)
	}
	s.ln = ln
	s.addr = ln.Addr()
	s.fdLimit.init()
	return nil
}

// Addr is the bound address (valid after Listen).
func (s *Server) Addr() net.Addr { return s.addr }

// Config returns the listener's configuration.
func (s *Server) Config() *config.ESMTPListener { return &s.cfg }

// Serve accepts connections until Shutdown. It returns nil after a
// shutdown.
func (s *Server) Serve() error {
	defer close(s.served)
	defer s.fdLimit.release()
	err := s.gs.Serve(&acceptor{Listener: s.ln, s: s})
	if s.shutting.Load() {
		return nil
	}
	return err
}

// Shutdown stops accepting, answers idle sessions with
// "421 4.3.2 <host> shutting down", lets sessions in a transaction finish
// until ctx ends, then closes what is left.
func (s *Server) Shutdown(ctx context.Context) error {
	s.shutting.Store(true)
	if s.ln != nil {
		s.ln.Close()
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		s.mu.Lock()
		n := len(s.conns)
		for ss := range s.conns {
			if ss.idle.Load() {
				ss.raw.SetReadDeadline(time.Now())
			}
		}
		s.mu.Unlock()
		if n == 0 {
			break
		}
		select {
		case <-ctx.Done():
			// Only the sockets are closed here: each session's own
			// goroutine then fails its read and ends the session. go-smtp's
			// Server.Close would call session.Close from this goroutine,
			// racing with the session's state (reply buffer, flags).
			s.mu.Lock()
			for ss := range s.conns {
				ss.raw.Close()
			}
			s.mu.Unlock()
			return ctx.Err()
		case <-tick.C:
		}
	}
	if s.ln != nil {
		select {
		case <-s.served:
		case <-ctx.Done():
		}
	}
	return nil
}

// SetEnqueuer sets where non-null messages go and the storage health check
// consulted before each banner; call it before Serve (the delivery engine
// starts after the policy's init has created listeners). health may be nil.
func (s *Server) SetEnqueuer(e Enqueuer, health func() (ok bool, reason string)) {
	s.deps.Enqueuer = e
	if health != nil {
		s.health.Store(&health)
	}
}

// ActiveConnections returns the number of open sessions.
func (s *Server) ActiveConnections() int { return int(s.active.Load()) }

func (s *Server) track(ss *session, add bool) {
	s.mu.Lock()
	if add {
		s.conns[ss] = struct{}{}
	} else {
		delete(s.conns, ss)
	}
	s.mu.Unlock()
}

type backend struct{ s *Server }

// NewSession returns the session that go-smtp's connection reads from:
// the one type that owns the connection's state is both its net.Conn and
// its smtp.Session.
func (b backend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	ss, ok := c.Conn().(*session)
	if !ok {
		return nil, errors.New("smtpd: connection was not accepted by the listener")
	}
	return ss, nil
}

type zlogAdapter struct{ l zerolog.Logger }

func (z zlogAdapter) Printf(format string, v ...interface{}) {
	z.l.Debug().Msgf("go-smtp: "+format, v...)
}
func (z zlogAdapter) Println(v ...interface{}) { z.l.Debug().Msg("go-smtp: " + fmt.Sprint(v...)) }
