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
	"io/fs"
	"os"
	"os/signal"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/kumogo/kumogo/internal/accounting"
	"github.com/kumogo/kumogo/internal/acctlog"
	"github.com/kumogo/kumogo/internal/bounceclass"
	"github.com/kumogo/kumogo/internal/config"
	"github.com/kumogo/kumogo/internal/event"
	"github.com/kumogo/kumogo/internal/httpapi"
	"github.com/kumogo/kumogo/internal/logrecord"
	"github.com/kumogo/kumogo/internal/memguard"
	"github.com/kumogo/kumogo/internal/message"
	"github.com/kumogo/kumogo/internal/metrics"
	"github.com/kumogo/kumogo/internal/sharedlimit"
	"github.com/kumogo/kumogo/internal/sysutil"
	"github.com/kumogo/kumogo/policies"
	"github.com/kumogo/kumogo/queue"
	"github.com/kumogo/kumogo/queue/egress/mx"
	"github.com/kumogo/kumogo/queue/spool"
	"github.com/kumogo/kumogo/runtime"
	"github.com/kumogo/kumogo/smtpd"
)

//go:generate go run . --dump-api ../../docs/compat.md

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

func run(args []string, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "tsa" {
		return runTSA(args[1:], stderr)
	}
	fs := flag.NewFlagSet("kumogo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	policyFlag := fs.String("policy", "/opt/kumomta/etc/policy/init.lua", "policy file, or the bare name of a bundled policy (sink.lua, route-to-sink.lua)")
	validate := fs.Bool("validate", false, "load the policy and run init without binding anything, then exit")
	userName := fs.String("user", "", "drop privileges to this user after binding (when started as root)")
	showVersion := fs.Bool("version", false, "print the version and exit")
	logLevel := fs.String("log-level", "", "diagnostic log level (trace, debug, info, warn, error); overrides KUMOD_LOG")
	luaMemFlag := fs.String("lua-memory-limit", "", "memory limit of each Lua state, e.g. 256MiB (the default; also KUMOGO_LUA_MEMORY_LIMIT), or off")
	pprofAddr := fs.String("pprof", "", "serve Go's pprof profiles on this loopback address (for example 127.0.0.1:6060)")
	dumpAPI := fs.String("dump-api", "", "write the KumoMTA API compatibility reference (docs/compat.md) to this file (- for stdout) and exit")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *dumpAPI != "" {
		return writeAPIDump(*dumpAPI, stderr)
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

	luaMem, err := luaMemoryLimit(*luaMemFlag)
	if err != nil {
		logger.Error().Msg(err.Error())
		return 2
	}
	path, src, err := resolvePolicy(*policyFlag)
	if err != nil {
		logger.Error().Msg(err.Error())
		return 1
	}
	if src != nil {
		logger.Info().Msg("policy: bundled " + filepath.Base(path))
	} else {
		logger.Info().Msg("policy: " + path)
	}
	node, err := nodeID()
	if err != nil {
		logger.Error().Msg(err.Error())
		return 1
	}
	var nofile uint64
	if !*validate {
		// as KumoMTA does: the soft limit goes up to the hard one
		if n, err := sysutil.RaiseFileLimit(); err != nil {
			logger.Warn().Err(err).Msg("could not raise the open file limit")
		} else {
			nofile = n
			logger.Info().Uint64("nofile", n).Msg("open file limit")
		}
	}
	d := &daemon{log: logger, ids: message.NewIDGenerator(), validating: *validate, nodeID: node, metrics: metrics.New(0)}
	d.limits = sharedlimit.New(logger)
	quietRedis(logger)
	defer d.limits.Close()
	d.registerGauges(d.metrics)
	hostname, _ := os.Hostname()
	d.hostname = hostname
	d.newMemoryGuard()
	rt, err := runtime.New(runtime.Options{
		PolicyPath: path,
		Source:     src,
		Modules:    policies.Modules(),
		Host:       d,
		Log:        logger,
		Validating: *validate,
		Hostname:   hostname,
		Version:    "kumogo " + version,
		DNS:        dnsAdapter{d: d},
		Limits:     d.limits,
		EventLatency: func(event string, took time.Duration) {
			d.metrics.ObserveLuaEvent(event, took)
		},

		LuaMemoryLimit: luaMem,
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
	d.warnFileLimit(nofile)
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
	// The config monitor starts after init, as KumoMTA's does: a changed
	// monitored file gives new Lua states within ConfigMonitorInterval.
	monCtx, stopMonitor := context.WithCancel(ctx)
	defer stopMonitor()
	go rt.RunConfigMonitor(monCtx, runtime.ConfigMonitorInterval)
	return d.serve(ctx)
}

// bundledPolicies are the policies compiled into the binary that
// --policy selects by their bare name.
var bundledPolicies = []string{"sink.lua", "route-to-sink.lua"}

// resolvePolicy finds the policy: a file on disk, or, for a bare name
// (no directory in it) that is exactly a bundled policy's name and no
// file, the bundled policy. Anything else fails with "no such file": a
// mistyped path must never start the bundled sink, an open relay that
// discards every message.
func resolvePolicy(name string) (path string, src []byte, err error) {
	st, err := os.Stat(name)
	switch {
	case err == nil && st.IsDir():
		return "", nil, fmt.Errorf("policy %s: is a directory", name)
	case err == nil:
		abs, err := filepath.Abs(name)
		if err != nil {
			abs = name
		}
		return abs, nil, nil
	case !errors.Is(err, fs.ErrNotExist):
		return "", nil, fmt.Errorf("policy %s: %w", name, err)
	}
	if slices.Contains(bundledPolicies, name) {
		if src, ok := policies.Lookup(name); ok {
			return "policies/" + name, src, nil
		}
	}
	if strings.ContainsRune(name, os.PathSeparator) || strings.ContainsRune(name, '/') {
		return "", nil, fmt.Errorf("policy %s: no such file", name)
	}
	return "", nil, fmt.Errorf("policy %s: no such file, and not the name of a bundled policy (%s)", name, strings.Join(bundledPolicies, ", "))
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
	limits     *sharedlimit.Store // throttles and connection limits, maybe shared through Redis

	hostname string
	res      *mx.Resolver
	spool    *spool.Spools
	// sweeps runs the spool's orphan sweep after a start (engine.go);
	// stopSweeps ends it before the spool closes
	sweeps     sync.WaitGroup
	stopSweeps context.CancelFunc
	queue      *queue.Manager

	shutting atomic.Bool

	mem        *memguard.Guard // process memory (memory.go)
	memSoftSet atomic.Bool
	memHard    atomic.Int64

	mu        sync.Mutex
	https     []*httpapi.Server
	listeners []*smtpd.Server
	maxConns  uint64 // the listeners' max_connections, summed

	classifier *bounceclass.Classifier // nil without configure_bounce_classifier
	spools     map[string]*config.Spool
	loggers    multiLogger
	logDirs    []string
	metrics    *metrics.Registry
	acct       atomic.Pointer[acctlog.Logger] // kumo.aaa.configure_acct_log
	noted      map[string]bool
	sts        stsSource // MTA-STS policies of delivery (authdns.go)
}

var _ runtime.Host = (*daemon)(nil)
var _ runtime.BounceClassifierHost = (*daemon)(nil)
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
		Policy: smtpPolicy{d.rt, d},
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
	d.maxConns += uint64(max(l.MaxConnections, 0))
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
	if ok, reason := d.mem.Health(); !ok {
		return false, reason
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

// SetBounceClassifier keeps the classifier of
// kumo.configure_bounce_classifier for the queue manager and the logging
// layer (which classifies OOB, Feedback, Rejection and the other records
// the queue does not).
func (d *daemon) SetBounceClassifier(c *bounceclass.Classifier) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.classifier = c
	d.loggers.classify = c
	return nil
}

// ConfigureAccountingDBPath opens the accounting database (not when
// validating); every Reception and Delivery record is counted in it.
func (d *daemon) ConfigureAccountingDBPath(ctx context.Context, path string) error {
	if d.validating {
		return nil
	}
	db, err := accounting.Open(path, 0, d.log)
	if err != nil {
		return fmt.Errorf("configure_accounting_db_path: %w", err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.loggers.acct != nil {
		db.Close(ctx)
		return errors.New("configure_accounting_db_path: called more than once")
	}
	d.loggers.acct = db
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
			h.SetQueueAdmin(d.queue)
		}
		go func(h *httpapi.Server) {
			if err := h.Serve(); err != nil {
				d.log.Error().Err(err).Msg("http listener failed")
			}
		}(h)
	}
	gctx, stopGuard := context.WithCancel(ctx)
	defer stopGuard()
	go d.runMemoryGuard(gctx)
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
		d.loggers.closeHooks(sctx)
	}
	if d.stopSweeps != nil {
		d.stopSweeps()
	}
	d.sweeps.Wait()
	if d.spool != nil {
		if err := d.spool.Close(); err != nil {
			d.log.Error().Err(err).Msg("closing the spool")
		}
	}
	if _, err := d.rt.Call(sctx, event.ShutdownLogging); err != nil && d.rt.HasHandler(event.ShutdownLogging) {
		d.log.Warn().Err(err).Msg("shutdown_logging failed")
	}
	for _, h := range d.https {
		h.Shutdown(sctx)
	}
	d.closeAcct(sctx)
	if err := d.loggers.Close(sctx); err != nil {
		d.log.Error().Err(err).Msg("closing logs")
	}
	d.log.Info().Msg("shutdown complete")
	return code
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
