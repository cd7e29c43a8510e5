package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/kumogo/kumogo/internal/config"
	"github.com/kumogo/kumogo/internal/message"
	"github.com/kumogo/kumogo/internal/metrics"
	"github.com/kumogo/kumogo/internal/shaping"
	"github.com/kumogo/kumogo/internal/tsa"
	"github.com/kumogo/kumogo/policies"
	"github.com/kumogo/kumogo/runtime"
)

// defaultTSAPolicy is where KumoMTA's tsa-daemon reads its policy.
const defaultTSAPolicy = "/opt/kumomta/etc/policy/tsa_init.lua"

// tsaDaemon is `kumogo tsa`: KumoMTA's tsa-daemon. Its policy has the
// tsa_init event (tsa.configure_tsa_db_path, tsa.start_http_listener) and
// the tsa_load_shaping_data event, called for each published record
// (KumoMTA's reference, events tsa_init and tsa_load_shaping_data).
type tsaDaemon struct {
	log     zerolog.Logger
	rt      *runtime.Runtime
	mu      sync.Mutex
	dbPath  string
	store   *tsa.Store
	servers []*http.Server
	d       *tsa.Daemon
	lns     []net.Listener
	trusted []func(netip.Addr) bool
}

func (t *tsaDaemon) ConfigureTSADBPath(_ context.Context, path string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.dbPath = path
	return nil
}

// StartTSAHTTPListener binds the listener; it is served once tsa_init has
// returned and the database is open, so that the database path may be set
// before or after the listener (KumoMTA's own tests set it after).
func (t *tsaDaemon) StartTSAHTTPListener(ctx context.Context, l *config.HTTPListener) error {
	if l.UseTLS {
		return errors.New("use_tls is not supported by kumogo's TSA listener yet")
	}
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", l.Listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", l.Listen, err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	var trusted func(netip.Addr) bool
	if len(l.TrustedHosts) > 0 {
		trusted = l.TrustedHosts.Contains
	}
	t.lns = append(t.lns, ln)
	t.trusted = append(t.trusted, trusted)
	t.log.Info().Msg("tsa http listener on " + ln.Addr().String())
	return nil
}

// serveAll opens the database and serves the bound listeners.
func (t *tsaDaemon) serveAll(ctx context.Context, errc chan<- error) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	s, err := tsa.OpenStore(ctx, t.dbPath)
	if err != nil {
		return err
	}
	t.store = s
	d := tsa.New(s, t.loadShaping, nil)
	t.d = d
	for i, ln := range t.lns {
		srv := &http.Server{Handler: d.Handler(t.trusted[i]), ReadHeaderTimeout: 10 * time.Second}
		t.servers = append(t.servers, srv)
		go func() { errc <- srv.Serve(ln) }()
	}
	return nil
}

// loadShaping runs tsa_load_shaping_data.
func (t *tsaDaemon) loadShaping(ctx context.Context) (*shaping.Shaping, error) {
	out, err := t.rt.Call(ctx, "tsa_load_shaping_data")
	if err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, errors.New("tsa_load_shaping_data: no handler, or it returned nothing")
	}
	sh, ok := runtime.ShapingOf(out[0])
	if !ok {
		return nil, errors.New("tsa_load_shaping_data: expected a Shaping object (kumo.shaping.load)")
	}
	return sh, nil
}

// runTSA is `kumogo tsa [--policy FILE]`.
func runTSA(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("kumogo tsa", flag.ContinueOnError)
	fs.SetOutput(stderr)
	policyFlag := fs.String("policy", defaultTSAPolicy, "TSA policy file (tsa_init and tsa_load_shaping_data events)")
	logLevel := fs.String("log-level", "", "diagnostic log level (trace, debug, info, warn, error); overrides KUMOD_LOG")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	logger := newLogger(stderr, *logLevel, false)
	src, err := os.ReadFile(*policyFlag)
	if err != nil {
		logger.Error().Msg(err.Error())
		return 1
	}
	t := &tsaDaemon{log: logger, dbPath: tsa.DefaultDBPath}
	// kumo.shaping.load resolves the MX of rolled-up domains: the daemon
	// struct here only serves DNS (kumo.dns.configure_resolver, test zones).
	dnsHost := &daemon{log: logger, ids: message.NewIDGenerator(), metrics: metrics.New(0)}
	hostname, _ := os.Hostname()
	rt, err := runtime.New(runtime.Options{
		PolicyPath: *policyFlag,
		Source:     src,
		Modules:    policies.Modules(),
		Host:       nil,
		TSA:        t,
		Log:        logger,
		Hostname:   hostname,
		Version:    "kumogo " + version,
		DNS:        dnsAdapter{d: dnsHost},
	})
	if err != nil {
		logger.Error().Msg(err.Error())
		return 1
	}
	defer rt.Close()
	t.rt = rt
	ctx := context.Background()
	if err := rt.Init(ctx); err != nil {
		logger.Error().Msg(err.Error())
		return 1
	}
	if _, err := rt.Call(ctx, "tsa_init"); err != nil {
		logger.Error().Msg(err.Error())
		t.close()
		return 1
	}
	if len(t.lns) == 0 {
		logger.Warn().Msg("tsa_init started no listener (tsa.start_http_listener)")
	}
	errc := make(chan error, len(t.lns))
	if err := t.serveAll(ctx, errc); err != nil {
		logger.Error().Msg(err.Error())
		t.close()
		return 1
	}
	logger.Info().Msg("initialization complete")
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	// Expired effects are pruned hourly; queries already ignore them.
	tick := time.NewTicker(time.Hour)
	defer tick.Stop()
	for {
		select {
		case <-sig:
			t.close()
			return 0
		case err := <-errc:
			logger.Error().Err(err).Msg("tsa http listener failed")
			t.close()
			return 1
		case <-tick.C:
			if t.store != nil {
				if err := t.store.Prune(ctx, time.Now()); err != nil {
					logger.Warn().Err(err).Msg("pruning the tsa database")
				}
			}
		}
	}
}

func (t *tsaDaemon) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if t.d != nil {
		t.d.Close() // websocket subscriptions, which Shutdown does not wait for
	}
	for _, s := range t.servers {
		_ = s.Shutdown(ctx)
	}
	for _, ln := range t.lns {
		_ = ln.Close()
	}
	if t.store != nil {
		_ = t.store.Close()
	}
}
