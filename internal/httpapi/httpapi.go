// Package httpapi is kumogo's HTTP listener (kumo.start_http_listener).
// It serves KumoMTA's liveness endpoint now; injection, admin and metrics
// endpoints come with the HTTP API issue and answer 501 until then.
package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/kumogo/kumogo/internal/config"
)

// Health reports whether the node accepts work, and why not.
type Health func() (ok bool, reason string)

// Server is one HTTP listener.
type Server struct {
	cfg    config.HTTPListener
	log    zerolog.Logger
	ln     net.Listener
	srv    *http.Server
	health Health
}

// New prepares a listener; Listen binds it.
func New(cfg config.HTTPListener, log zerolog.Logger) *Server {
	s := &Server{cfg: cfg, log: log}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/check-liveness/v1", s.liveness)
	mux.HandleFunc("/", s.notYet)
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	return s
}

// SetHealth sets the liveness check; call it before Serve.
func (s *Server) SetHealth(h Health) { s.health = h }

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
	s.ln = ln
	return nil
}

// Addr is the bound address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

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

// liveness answers 200 "OK", or 503 with the reason the node is not taking
// work (shutting down, storage too full).
func (s *Server) liveness(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if s.health != nil {
		if ok, reason := s.health(); !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprint(w, reason)
			return
		}
	}
	fmt.Fprint(w, "OK")
}

func (s *Server) notYet(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusNotImplemented)
	fmt.Fprintf(w, "Error: %s is not implemented by kumogo yet", strings.TrimSpace(r.URL.Path))
}
