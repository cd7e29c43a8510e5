// Command kumogo is the kumogo mail transfer agent daemon. It loads a Lua
// policy written for KumoMTA's event model, runs its init event, serves the
// ESMTP listeners the policy starts and stops gracefully on SIGINT/SIGTERM.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"github.com/rs/zerolog/log"

	"github.com/kumogo/kumogo/internal/config"
	"github.com/kumogo/kumogo/internal/httpapi"
	"github.com/kumogo/kumogo/internal/logrecord"
	"github.com/kumogo/kumogo/internal/message"
	"github.com/kumogo/kumogo/internal/metrics"
	"github.com/kumogo/kumogo/internal/sysutil"
	"github.com/kumogo/kumogo/policies"
	"github.com/kumogo/kumogo/queue"
	"github.com/kumogo/kumogo/queue/egress/mx"
	"github.com/kumogo/kumogo/queue/spool"
	"github.com/kumogo/kumogo/runtime"
	"github.com/kumogo/kumogo/smtpd"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

func run(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("kumogo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	policyFlag := fs.String("policy", "/opt/kumomta/etc/policy/init.lua", "policy file, or the name of a bundled policy (sink.lua)")
	validate := fs.Bool("validate", false, "load the policy and run init without binding anything, then exit")
	userName := fs.String("user", "", "drop privileges to this user after binding (when started as root)")
	showVersion := fs.Bool("version", false, "print the version and exit")
	logLevel := fs.String("log-level", "", "diagnostic log level (trace, debug, info, warn, error); overrides KUMOD_LOG")
	pprofAddr := fs.String("pprof", "", "serve Go's pprof profiles on this loopback address (for example 127.0.0.1:6060)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *showVersion {
		fmt.Fprintf(stderr, "kumogo %s\n", version)
		return 0
	}
	logger := newLogger(stderr, *logLevel, *validate)
	if *pprofAddr != "" {
		if err := startPprof(*pprofAddr); err != nil {
			logger.Error().Msg(err.Error())
			return 1
		}
		logger.Info().Msg("pprof on " + *pprofAddr)
	}

	path, src, err := resolvePolicy(*policyFlag)
	if err != nil {
		logger.Error().Msg(err.Error())
		return 1
	}
	node, err := nodeID()
	if err != nil {
		logger.Error().Msg(err.Error())
		return 1
	}
	if !*validate {
		if n, err := sysutil.RaiseFileLimit(); err != nil {
			logger.Warn().Err(err).Msg("could not raise the open file limit")
		} else {
			logger.Debug().Uint64("nofile", n).Msg("open file limit")
		}
	}
	d := &daemon{log: logger, ids: message.NewIDGenerator(), validating: *validate, nodeID: node, metrics: metrics.New(0)}
	d.registerGauges(d.metrics)
	hostname, _ := os.Hostname()
	d.hostname = hostname
	rt, err := runtime.New(runtime.Options{
		PolicyPath: path,
		Source:     src,
		Modules:    policies.Modules(),
		Host:       d,
		Log:        logger,
		Validating: *validate,
		Hostname:   hostname,
		Version:    "kumogo " + version,
		DNS:        dnsAdapter{d},
		EventLatency: func(event string, took time.Duration) {
			d.metrics.ObserveLuaEvent(event, took)
		},
	})
	if err != nil {
		logger.Error().Msg(err.Error())
		return 1
	}
	defer rt.Close()
	d.rt = rt
	ctx := context.Background()
	if err := rt.Init(ctx); err != nil {
		logger.Error().Msg(err.Error())
		d.closeListeners()
		return 1
	}
	if *validate {
		if err := rt.Validate(ctx); err != nil || rt.ValidationFailed() {
			if err != nil {
				logger.Error().Msg(err.Error())
			}
			return 1
		}
		fmt.Fprintln(stderr, "policy is valid")
		return 0
	}
	if err := d.checkSpools(); err != nil {
		logger.Error().Msg(err.Error())
		d.closeListeners()
		return 1
	}
	if err := dropPrivileges(*userName); err != nil {
		logger.Error().Msg(err.Error())
		d.closeListeners()
		return 1
	}
	if err := d.startEngine(ctx); err != nil {
		logger.Error().Msg(err.Error())
		d.closeListeners()
		if d.spool != nil {
			d.spool.Close()
		}
		return 1
	}
	return d.serve(ctx)
}

// resolvePolicy finds the policy on disk first, then among the bundled ones.
func resolvePolicy(name string) (string, []byte, error) {
	if st, err := os.Stat(name); err == nil && !st.IsDir() {
		abs, err := filepath.Abs(name)
		if err != nil {
			abs = name
		}
		return abs, nil, nil
	}
	if src, ok := policies.Lookup(name); ok {
		return "policies/" + filepath.Base(strings.TrimSuffix(name, ".lua")) + ".lua", src, nil
	}
	return "", nil, fmt.Errorf("policy %q: no such file, and no bundled policy of that name (bundled: %s)", name, strings.Join(policies.Names(), ", "))
}

// newLogger builds the stderr diagnostic logger. The level comes from
// --log-level, else KUMOD_LOG (a level, or KumoMTA's "target=level,..."
// filter, of which the most verbose level is used), else info (error when
// validating). The level is zerolog's process-wide one, so that
// set_diagnostic_log_filter can change it while the daemon runs.
func newLogger(w io.Writer, flagLevel string, validating bool) zerolog.Logger {
	level := zerolog.InfoLevel
	if validating {
		level = zerolog.ErrorLevel
	}
	spec := flagLevel
	if spec == "" {
		spec = os.Getenv("KUMOD_LOG")
	}
	if l, ok := parseLogFilter(spec); ok {
		level = l
	}
	zerolog.SetGlobalLevel(level)
	cw := zerolog.ConsoleWriter{Out: w, NoColor: true, TimeFormat: time.RFC3339Nano}
	return zerolog.New(cw).Level(zerolog.TraceLevel).With().Timestamp().Logger()
}

// parseLogFilter reads a level, or KumoMTA's "target=level,..." filter,
// of which the most verbose level is used.
func parseLogFilter(spec string) (zerolog.Level, bool) {
	best := zerolog.Disabled
	for _, part := range strings.Split(spec, ",") {
		if i := strings.IndexByte(part, '='); i >= 0 {
			part = part[i+1:]
		}
		part = strings.ToLower(strings.TrimSpace(part))
		if l, err := zerolog.ParseLevel(part); err == nil && part != "" && l < best {
			best = l
		}
	}
	return best, best != zerolog.Disabled
}

// SetDiagnosticLogFilter serves POST /api/admin/set_diagnostic_log_filter/v1.
func (d *daemon) SetDiagnosticLogFilter(filter string) error {
	l, ok := parseLogFilter(filter)
	if !ok {
		return fmt.Errorf("invalid log filter %q: no level in it", filter)
	}
	zerolog.SetGlobalLevel(l)
	d.log.WithLevel(l).Str("filter", filter).Msg("diagnostic log filter changed")
	return nil
}

// daemon implements runtime.Host: it owns the listeners and loggers the
// policy defines.
type daemon struct {
	log        zerolog.Logger
	ids        *message.IDGenerator
	rt         *runtime.Runtime
	validating bool
	nodeID     string

	hostname string
	res      *mx.Resolver
	spool    *spool.Spools
	queue    *queue.Manager

	shutting atomic.Bool

	mu        sync.Mutex
	https     []*httpapi.Server
	listeners []*smtpd.Server
	spools    map[string]*config.Spool
	loggers   multiLogger
	logDirs   []string
	metrics   *metrics.Registry
	noted     map[string]bool
}

var _ runtime.Host = (*daemon)(nil)
var _ smtpd.Policy = (*runtime.Runtime)(nil)

func (d *daemon) noteOnce(key, msg string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.noted == nil {
		d.noted = map[string]bool{}
	}
	if !d.noted[key] {
		d.noted[key] = true
		d.log.Warn().Msg(msg)
	}
}

func (d *daemon) StartESMTPListener(ctx context.Context, l *config.ESMTPListener) error {
	for _, opt := range l.Unimplemented {
		d.noteOnce("esmtp:"+opt, fmt.Sprintf("start_esmtp_listener option %q is accepted but not implemented yet", opt))
	}
	srv, err := smtpd.New(*l, smtpd.Deps{
		Policy: d.rt,
		Logger: &d.loggers,
		IDs:    d.ids,
		Log:    d.log,
		NodeID: d.nodeID,
	})
	if err != nil {
		return err
	}
	if err := srv.Listen(); err != nil {
		return err
	}
	d.mu.Lock()
	d.listeners = append(d.listeners, srv)
	d.mu.Unlock()
	d.log.Info().Msg("smtp listener on " + srv.Addr().String())
	return nil
}

// liveness is the HTTP liveness check: shutting down, or a spool below its
// free-space floor, makes the node not live.
func (d *daemon) liveness() (bool, string) {
	if d.shutting.Load() {
		return false, "shutting down"
	}
	if d.spool != nil {
		if ok, _ := d.spool.Health(); !ok {
			return false, "storage is too full"
		}
	}
	return true, ""
}

func (d *daemon) DefineSpool(ctx context.Context, s *config.Spool) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.spools == nil {
		d.spools = map[string]*config.Spool{}
	}
	d.spools[s.Name] = s
	return nil
}

func (d *daemon) ConfigureLocalLogs(ctx context.Context, l *config.LocalLogs) error {
	lg, err := logrecord.New(*l, d.nodeID, d.log)
	if err != nil {
		return fmt.Errorf("configure_local_logs: %w", err)
	}
	d.mu.Lock()
	d.loggers.list = append(d.loggers.list, lg)
	d.logDirs = append(d.logDirs, l.LogDir)
	d.mu.Unlock()
	return nil
}

func (d *daemon) ConfigureAccountingDBPath(ctx context.Context, path string) error {
	d.noteOnce("accounting", "configure_accounting_db_path is accepted but accounting is not implemented yet")
	return nil
}

func openSpools(d *daemon) (*spool.Spools, error) {
	return spool.OpenSpools(*d.spools["data"], *d.spools["meta"], d.log)
}

// checkSpools applies KumoMTA's start-up rule that the data and meta spools
// must be defined.
func (d *daemon) checkSpools() error {
	if len(d.spools) == 0 {
		return errors.New("No spools have been defined")
	}
	for _, name := range []string{"data", "meta"} {
		if d.spools[name] == nil {
			return fmt.Errorf("spool %q has not been defined", name)
		}
	}
	return nil
}

func (d *daemon) closeListeners() {
	for _, l := range d.listeners {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		l.Shutdown(ctx)
		cancel()
	}
}

// serve runs the listeners until a signal, then shuts down gracefully.
func (d *daemon) serve(ctx context.Context) int {
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	errs := make(chan error, len(d.listeners))
	for _, l := range d.listeners {
		go func(l *smtpd.Server) { errs <- l.Serve() }(l)
	}
	for _, h := range d.https {
		h.SetHealth(d.liveness)
		if d.queue != nil {
			h.SetInjector(httpInjector{d})
		}
		go func(h *httpapi.Server) {
			if err := h.Serve(); err != nil {
				d.log.Error().Err(err).Msg("http listener failed")
			}
		}(h)
	}
	d.log.Info().Msg("initialization complete")
	code := 0
	select {
	case sig := <-sigs:
		d.log.Info().Str("signal", sig.String()).Msg("shutting down")
	case err := <-errs:
		if err != nil {
			d.log.Error().Err(err).Msg("listener failed; shutting down")
			code = 1
		}
	}
	d.shutting.Store(true)
	sctx, cancel := context.WithTimeout(ctx, 25*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for _, l := range d.listeners {
		wg.Add(1)
		go func(l *smtpd.Server) {
			defer wg.Done()
			if err := l.Shutdown(sctx); err != nil {
				d.log.Warn().Err(err).Msg("listener shutdown incomplete")
			}
		}(l)
	}
	wg.Wait()
	if d.queue != nil {
		if err := d.queue.Shutdown(sctx); err != nil {
			d.log.Warn().Err(err).Msg("delivery shutdown incomplete")
		}
	}
	if d.spool != nil {
		if err := d.spool.Close(); err != nil {
			d.log.Error().Err(err).Msg("closing the spool")
		}
	}
	if _, err := d.rt.Call(sctx, "shutdown_logging"); err != nil && d.rt.HasHandler("shutdown_logging") {
		d.log.Warn().Err(err).Msg("shutdown_logging failed")
	}
	for _, h := range d.https {
		h.Shutdown(sctx)
	}
	if err := d.loggers.Close(sctx); err != nil {
		d.log.Error().Err(err).Msg("closing logs")
	}
	d.log.Info().Msg("shutdown complete")
	return code
}

// multiLogger fans records out to every configured local logger, and to
// the metrics when an HTTP listener serves them.
type multiLogger struct {
	list    []*logrecord.Logger
	observe func(rec *logrecord.Record)
}

// Enabled reports whether any logger is configured or metrics are
// served. Both are set during init, before any session starts.
func (m *multiLogger) Enabled() bool { return len(m.list) > 0 || m.observe != nil }

func (m *multiLogger) Log(rec *logrecord.Record, msg *message.Message) {
	if m.observe != nil {
		m.observe(rec)
	}
	for _, l := range m.list {
		l.Log(rec, msg)
	}
}

func (m *multiLogger) Close(ctx context.Context) error {
	var first error
	for _, l := range m.list {
		if err := l.Close(ctx); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// dropPrivileges switches to the named user when running as root.
func dropPrivileges(name string) error {
	if os.Geteuid() != 0 || name == "" {
		return nil
	}
	u, err := user.Lookup(name)
	if err != nil {
		return fmt.Errorf("--user %s: %w", name, err)
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err1 != nil || err2 != nil {
		return fmt.Errorf("--user %s: non-numeric uid/gid", name)
	}
	if uid == 0 {
		return nil
	}
	if err := syscall.Setgroups([]int{gid}); err != nil {
		return fmt.Errorf("--user %s: setgroups: %w", name, err)
	}
	if err := syscall.Setgid(gid); err != nil {
		return fmt.Errorf("--user %s: setgid: %w", name, err)
	}
	if err := syscall.Setuid(uid); err != nil {
		return fmt.Errorf("--user %s: setuid: %w", name, err)
	}
	return nil
}

var _ = log.Logger
