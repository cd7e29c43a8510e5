// Package httpapi is kumogo's HTTP listener (kumo.start_http_listener):
// KumoMTA's liveness, injection, admin and metrics endpoints behind its
// access rules (trusted hosts, the http_server_validate_auth_* events and
// the default ACL of KumoMTA's "HTTP API" reference pages).
package httpapi

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/net/netutil"

	"github.com/kumogo/kumogo/internal/acctlog"
	"github.com/kumogo/kumogo/internal/adminapi"
	"github.com/kumogo/kumogo/internal/certs"
	"github.com/kumogo/kumogo/internal/config"
)

// Health reports whether the node accepts work, and why not.
type Health func() (ok bool, reason string)

// Limits bound the connections of a listener. Zero fields take the
// defaults below.
type Limits struct {
	ReadHeaderTimeout time.Duration
	ReadTimeout       time.Duration
	WriteTimeout      time.Duration
	// IdleTimeout closes keep-alive connections that carry no request
	// for this long.
	IdleTimeout time.Duration
	// MaxConnections caps the connections open at once; further clients
	// wait in the accept backlog.
	MaxConnections int
}

// Defaults for Limits: KumoMTA documents none for its HTTP listener; these
// keep slow or idle clients from holding connections for ever.
const (
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultReadTimeout       = 60 * time.Second
	DefaultWriteTimeout      = 60 * time.Second
	DefaultIdleTimeout       = 60 * time.Second
	DefaultMaxConnections    = 4096
)

func (l Limits) withDefaults() Limits {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&l.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	def(&l.ReadTimeout, DefaultReadTimeout)
	def(&l.WriteTimeout, DefaultWriteTimeout)
	def(&l.IdleTimeout, DefaultIdleTimeout)
	if l.MaxConnections <= 0 {
		l.MaxConnections = DefaultMaxConnections
	}
	return l
}

// Deps are the collaborators of a listener. Nil members turn their
// endpoints off (501).
type Deps struct {
	Log    zerolog.Logger
	Health Health
	// Auth validates Authorization headers (the
	// http_server_validate_auth_* events).
	Auth Auth
	// Inject serves POST /api/inject/v1.
	Inject Injector
	// Admin serves /api/admin/*.
	Admin Admin
	// Metrics serves /metrics and /metrics.json.
	Metrics http.Handler
	// MetricsJSON serves /metrics.json.
	MetricsJSON http.Handler
	Limits      Limits
	// Acct, when set, returns the accounting log of
	// kumo.aaa.configure_acct_log (nil until it is configured).
	Acct func() *acctlog.Logger
}

// Server is one HTTP listener.
type Server struct {
	cfg    config.HTTPListener
	deps   Deps
	log    zerolog.Logger
	tls    *tls.Config
	ln     net.Listener
	addr   net.Addr
	srv    *http.Server
	auth   *authCache
	limits Limits
	// queueAdmin serves the queue administration endpoints (adminq.go)
	queueAdmin atomic.Pointer[adminapi.Service]
}

// New prepares a listener; Listen binds it. With use_tls the configured
// certificate (or a self-signed one for the listener's hostname) is
// loaded now, so that a bad certificate fails the start.
func New(cfg config.HTTPListener, deps Deps) (*Server, error) {
	s := &Server{cfg: cfg, deps: deps, log: deps.Log, limits: deps.Limits.withDefaults()}
	if cfg.UseTLS {
		tc, err := certs.ServerConfig(cfg.TLSCertificate, cfg.TLSPrivateKey, cfg.Hostname)
		if err != nil {
			return nil, fmt.Errorf("httpapi: listener %s: %w", cfg.Listen, err)
		}
		s.tls = tc
	}
	s.auth = newAuthCache(deps.Auth)
	s.srv = &http.Server{
		Handler:           s.routes(),
		ReadHeaderTimeout: s.limits.ReadHeaderTimeout,
		ReadTimeout:       s.limits.ReadTimeout,
		WriteTimeout:      s.limits.WriteTimeout,
		IdleTimeout:       s.limits.IdleTimeout,
		// net/http's own complaints (TLS handshakes, malformed requests)
		// go to the diagnostic log at debug level.
		ErrorLog: log.New(debugWriter{deps.Log}, "", 0),
	}
	return s, nil
}

// SetHealth sets the liveness check; call it before Serve.
func (s *Server) SetHealth(h Health) { s.deps.Health = h }

// Listen binds the socket ("0:8000" means all IPv4 addresses).
func (s *Server) Listen() error {
	addr := s.cfg.Listen
	if host, port, err := net.SplitHostPort(addr); err == nil && host == "0" {
		addr = net.JoinHostPort("0.0.0.0", port)
	}
	network := "tcp"
	if h, _, err := net.SplitHostPort(addr); err == nil {
		if ip := net.ParseIP(h); ip != nil && ip.To4() != nil {
			network = "tcp4"
		}
	}
	ln, err := net.Listen(network, addr)
	if err != nil {
		return fmt.Errorf("httpapi: listen on %s: %w", s.cfg.Listen, err)
	}
	s.addr = ln.Addr()
	ln = netutil.LimitListener(ln, s.limits.MaxConnections)
	if s.tls != nil {
		ln = tls.NewListener(ln, s.tls)
	}
	s.ln = ln
	return nil
}

// Addr is the bound address.
func (s *Server) Addr() net.Addr { return s.addr }

// Scheme is "https" with use_tls, else "http".
func (s *Server) Scheme() string {
	if s.tls != nil {
		return "https"
	}
	return "http"
}

// Serve answers requests until Shutdown.
func (s *Server) Serve() error {
	err := s.srv.Serve(s.ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown stops the listener, letting requests in flight finish.
func (s *Server) Shutdown(ctx context.Context) error { return s.srv.Shutdown(ctx) }

// routes maps KumoMTA's paths to handlers, each behind its privilege.
func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /api/check-liveness/v1", s.guard(open, http.HandlerFunc(s.liveness)))
	mux.Handle("POST /api/inject/v1", s.guard(injecting, http.HandlerFunc(s.inject)))
	if s.deps.Metrics != nil {
		mux.Handle("GET /metrics", s.guard(trustedOnly, s.deps.Metrics))
	}
	if s.deps.MetricsJSON != nil {
		mux.Handle("GET /metrics.json", s.guard(trustedOnly, s.deps.MetricsJSON))
	}
	s.adminRoutes(mux)
	s.queueAdminRoutes(mux)
	mux.Handle("/api/admin/", s.guard(trustedOnly, http.HandlerFunc(notYet)))
	mux.Handle("/", s.guard(trustedOnly, http.HandlerFunc(notYet)))
	return mux
}

// liveness answers 200 "OK", or 503 with the reason the node is not taking
// work (shutting down, storage too full).
func (s *Server) liveness(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if s.deps.Health != nil {
		if ok, reason := s.deps.Health(); !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprint(w, reason)
			return
		}
	}
	fmt.Fprint(w, "OK")
}

func notYet(w http.ResponseWriter, r *http.Request) {
	textError(w, http.StatusNotImplemented, fmt.Sprintf("%s %s is not implemented by kumogo", r.Method, r.URL.Path))
}

// textError writes KumoMTA's error body for a failed API call:
// "Error: <message>".
func textError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	fmt.Fprint(w, "Error: "+msg)
}

// SetInjector enables POST /api/inject/v1; call it before Serve.
func (s *Server) SetInjector(inj Injector) { s.deps.Inject = inj }

// debugWriter turns net/http's log lines into debug diagnostics.
type debugWriter struct{ log zerolog.Logger }

func (w debugWriter) Write(p []byte) (int, error) {
	w.log.Debug().Msg(strings.TrimSpace(string(p)))
	return len(p), nil
}
