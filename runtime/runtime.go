// Package runtime hosts kumogo's Lua policy engine: it compiles a
// KumoMTA-style policy once, keeps a pool of sandboxed gopher-lua states
// that have each run the policy's top level (so that every state holds the
// kumo.on registrations), exposes the kumo module and the message,
// address and connection-metadata userdata, and dispatches events with
// KumoMTA's single/multiple handler rules.
//
// Message and conn_meta handles are valid during their event only; a handle
// a policy keeps reports "no longer valid" afterwards and never shows
// another message. Handlers that only call methods on them (which is
// decided from their bytecode) share one handle per state instead of a new
// one per event (escape.go).
//
// A *Runtime implements the listener's smtpd.Policy interface (the daemon
// asserts it; runtime does not import smtpd). Side effects that belong to
// the daemon (binding listeners, defining spools, configuring logs) are
// delegated to a Host supplied by the caller.
package runtime

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	goruntime "runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	lua "github.com/yuin/gopher-lua"
	"github.com/yuin/gopher-lua/parse"

	"github.com/kumogo/kumogo/internal/amqpclient"
	"github.com/kumogo/kumogo/internal/config"
	"github.com/kumogo/kumogo/internal/event"
	"github.com/kumogo/kumogo/internal/message"
	"github.com/kumogo/kumogo/internal/sharedlimit"
	"github.com/kumogo/kumogo/internal/smtpreply"
)

// Host performs the process-wide side effects that policy functions ask
// for. The daemon implements it; every method is called from inside a Lua
// call (usually the init event) and an error becomes a Lua error there, so
// a bind failure fails Init. ctx is the context of that Lua call (Init's
// ctx): use it for the bind itself, not for the lifetime of what is
// started. Methods are not called when Options.Validating is set.
type Host interface {
	StartESMTPListener(ctx context.Context, l *config.ESMTPListener) error
	StartHTTPListener(ctx context.Context, l *config.HTTPListener) error
	DefineSpool(ctx context.Context, s *config.Spool) error
	ConfigureLocalLogs(ctx context.Context, l *config.LocalLogs) error
	ConfigureAccountingDBPath(ctx context.Context, path string) error
}

// Options configure a Runtime.
type Options struct {
	// PolicyPath is the policy file. It names the chunk in error messages
	// (file:line) and its directory is searched by require.
	PolicyPath string
	// Source is the policy text when it is bundled rather than read from
	// PolicyPath (PolicyPath is then only its display name).
	Source []byte
	// ModulePrefixes replace KumoPrefixes at the head of package.path
	// (tests point them at temporary directories).
	ModulePrefixes []string
	// Getenv reads LUA_PATH_5_4 and LUA_PATH (os.Getenv when nil).
	Getenv func(string) string
	// Modules holds bundled helper modules: "foo.lua" or "foo/init.lua"
	// answers require 'foo'; dots in module names map to slashes.
	Modules fs.FS
	// Host receives listener/spool/log definitions. nil makes them no-ops.
	Host Host
	// Log receives kumo.log_*, print and runtime diagnostics.
	Log zerolog.Logger
	// Validating sets _VALIDATING_CONFIG=true and turns Host calls into
	// no-ops (kumogo --validate).
	Validating bool
	// Hostname is the default listener host name (os.Hostname when empty).
	Hostname string
	// MaxStates caps the number of Lua states alive at once (pooled plus
	// busy). Zero means max(64, 8*GOMAXPROCS). When the cap is reached an
	// event waits for a state to come back (or for its ctx to end).
	MaxStates int
	// Version is the value of kumo.version ("kumogo-dev" when empty).
	Version string
	// DNS serves kumo.dns.lookup_mx, lookup_addr and configure_resolver.
	// When nil those functions raise "kumo.dns is not configured".
	DNS DNS
	// LuaMemoryLimit bounds the memory of each Lua state, in bytes (see
	// limits.go). Zero means DefaultLuaMemoryLimit; negative, no limit.
	LuaMemoryLimit int64
	// Limits keeps kumo.make_throttle's buckets, local or shared through
	// Redis (kumo.configure_redis_throttles); the delivery engine uses the
	// same store for the egress limits. nil gives the runtime its own.
	Limits *sharedlimit.Store
	// TSA, when set, provides the `tsa` module of the traffic shaping
	// automation daemon (kumogo tsa); nil leaves `require 'tsa'` failing
	// as in kumod.
	TSA TSAHost
	// EventLatency, when set, is told how long each event call took
	// (KumoMTA's lua_event_latency metric).
	EventLatency func(event string, d time.Duration)
}

// Defaults of KumoMTA's Lua context pool.
const (
	defaultMaxUse   = 1024
	defaultMaxAge   = 300 * time.Second
	defaultMaxSpare = 8192
)

// multipleEvents are the events whose handlers chain (KumoMTA's
// CallbackSignature "Multiple"); every other event takes one handler.
var multipleEvents = map[string]bool{
	event.PreInit:                  true,
	event.ValidateConfig:           true,
	event.GetQueueConfig:           true,
	event.ThrottleInsertReadyQueue: true,
	event.RequeueMessage:           true,
	"should_enqueue_log_record":    true,
	"get_acl_definition":           true,
}

// IsMultipleEvent reports whether event accepts several chained handlers.
func IsMultipleEvent(event string) bool { return multipleEvents[event] }

// Runtime is a compiled policy plus its pool of Lua states. It is safe for
// concurrent use.
type Runtime struct {
	opts      Options
	log       zerolog.Logger
	chunkName string
	policyDir string
	// searchPath is the initial package.path (modules.go).
	searchPath string
	hostname   string
	version    string
	protoMu    sync.Mutex
	proto      *lua.FunctionProto // the policy; replaced by BumpEpoch

	// handlers records which events have handlers; it is computed once
	// from the first state and never changes afterwards.
	handlers map[string]bool

	first *state // the state that ran the policy first; init runs on it

	pool     chan *state
	slots    chan struct{} // one token per live state (MaxStates)
	maxUse   atomic.Int64
	maxAge   atomic.Int64 // nanoseconds
	maxSpare atomic.Int64
	closed   atomic.Bool
	initDone atomic.Bool

	validationFailed atomic.Bool

	memLimit int64 // per-state Lua memory limit in bytes (limits.go), 0: none

	modMu    sync.Mutex
	modCache map[string]*lua.FunctionProto
	// searchCache: require's file searches (searchModule)
	searchCache map[string]moduleSearch

	dkim   dkimKeys   // parsed DKIM signing keys
	extras extrasData // data shared by the policy-extras helpers

	memo      memoCaches         // kumo.memoize caches, shared by all states
	limits    *sharedlimit.Store // kumo.make_throttle's buckets (kumothrottle.go)
	tasks     taskCtx            // kumo.spawn_task's context
	resolvers namedResolvers     // kumo.dns.define_resolver
	idsOnce   sync.Once
	ids       *message.IDGenerator // kumo.make_message's ids

	epochN atomic.Uint64 // configuration epoch (epoch.go)
	epoch  epochState

	hookNames sync.Map // names of the configured log hooks (loghook.go)

	amqpOnce  sync.Once
	amqpPools amqpclient.Pools // kumo.amqp.basic_publish's connections (kumoamqp.go)

	ownMu sync.Mutex
	owned []io.Closer // closed with the runtime (dnstest.go)

	connStates connStates   // spare custom_lua session states (luaconnstates.go)
	loads      atomic.Int64 // states made (newState): lua_load_count
}

// New compiles the policy and runs its top level in a first Lua state,
// which records the kumo.on registrations. It does not run init; call
// Init for that.
func New(opts Options) (*Runtime, error) {
	src := opts.Source
	if src == nil {
		if opts.PolicyPath == "" {
			return nil, errors.New("runtime: no policy: PolicyPath and Source are empty")
		}
		b, err := os.ReadFile(opts.PolicyPath)
		if err != nil {
			return nil, fmt.Errorf("runtime: reading policy: %w", err)
		}
		src = b
	}
	name := opts.PolicyPath
	if name == "" {
		name = "policy.lua"
	}
	proto, err := compileChunk(src, name)
	if err != nil {
		return nil, err
	}
	hostname := opts.Hostname
	if hostname == "" {
		hostname, _ = os.Hostname()
		if hostname == "" {
			hostname = "localhost"
		}
	}
	version := opts.Version
	if version == "" {
		version = "kumogo-dev"
	}
	maxStates := opts.MaxStates
	if maxStates <= 0 {
		maxStates = max(64, 8*goruntime.GOMAXPROCS(0))
	}
	r := &Runtime{
		opts:      opts,
		log:       opts.Log,
		chunkName: name,
		hostname:  hostname,
		version:   version,
		proto:     proto,
		pool:      make(chan *state, maxStates),
		slots:     make(chan struct{}, maxStates),
		modCache:  make(map[string]*lua.FunctionProto),
		memLimit:  memoryLimit(opts.LuaMemoryLimit),
		limits:    opts.Limits,
	}
	if r.limits == nil {
		r.limits = sharedlimit.New(opts.Log)
		r.own(storeCloser{r.limits})
	}
	if opts.PolicyPath != "" {
		if abs, err := filepath.Abs(opts.PolicyPath); err == nil {
			r.policyDir = filepath.Dir(abs)
		}
	}
	r.searchPath = r.modulePath()
	r.maxUse.Store(defaultMaxUse)
	r.maxAge.Store(int64(defaultMaxAge))
	r.maxSpare.Store(defaultMaxSpare)

	r.slots <- struct{}{}
	st, err := r.newState()
	if err != nil {
		<-r.slots
		return nil, err
	}
	r.first = st
	r.handlers = make(map[string]bool, len(st.handlers))
	for ev, fns := range st.handlers {
		if len(fns) > 0 {
			r.handlers[ev] = true
		}
	}
	r.warnUnfiredEvents()
	return r, nil
}

// compileChunk parses and compiles Lua source; syntax errors are reported
// as "name:line: ...".
func compileChunk(src []byte, name string) (*lua.FunctionProto, error) {
	chunk, err := parse.Parse(bytes.NewReader(src), name)
	if err != nil {
		var perr *parse.Error
		if errors.As(err, &perr) {
			if perr.Pos.Line == parse.EOF {
				return nil, fmt.Errorf("%s: syntax error at end of file: %s", name, perr.Message)
			}
			return nil, fmt.Errorf("%s:%d: syntax error near '%s' (column %d): %s", name, perr.Pos.Line, perr.Token, perr.Pos.Column, perr.Message)
		}
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	proto, err := lua.Compile(chunk, name)
	if err != nil {
		return nil, fmt.Errorf("%s: compile: %w", name, err)
	}
	return proto, nil
}

// Hostname returns the host name used for listener defaults.
func (r *Runtime) Hostname() string { return r.hostname }

// HasHandler reports whether event has at least one registered handler.
func (r *Runtime) HasHandler(event string) bool { return r.handlers[event] }

// ValidationFailed reports whether the policy called kumo.validation_failed.
func (r *Runtime) ValidationFailed() bool { return r.validationFailed.Load() }

// Init runs pre_init (every handler) and then init, once, on the first
// state, and puts that state into the pool. Errors carry the Lua message
// with file:line.
func (r *Runtime) Init(ctx context.Context) error {
	if r.initDone.Swap(true) {
		return errors.New("runtime: Init called twice")
	}
	st := r.first
	r.first = nil
	if st == nil {
		return errors.New("runtime: closed")
	}
	for _, ev := range [...]string{event.PreInit, event.Init} {
		if _, err := st.callEvent(ctx, ev, nil); err != nil {
			r.discard(st)
			return fmt.Errorf("runtime: %s: %w", ev, err)
		}
	}
	r.put(st, nil)
	return nil
}

// Validate runs the validate_config handlers (kumogo --validate, after
// Init) and reports a failure when a handler errored or called
// kumo.validation_failed().
func (r *Runtime) Validate(ctx context.Context) error {
	if _, err := r.Call(ctx, event.ValidateConfig); err != nil {
		return err
	}
	if r.ValidationFailed() {
		return errors.New("runtime: configuration validation failed")
	}
	return nil
}

// Close closes the pooled states. States in use are closed when they are
// returned. Close does not wait for running events.
func (r *Runtime) Close() error {
	if r.closed.Swap(true) {
		return nil
	}
	r.closeOwned()
	if st := r.first; st != nil {
		r.first = nil
		r.discard(st)
	}
	for {
		select {
		case st := <-r.pool:
			r.discard(st)
		default:
			return nil
		}
	}
}

// get borrows a state: a pooled one, a new one while under MaxStates, or
// the next one returned.
func (r *Runtime) get(ctx context.Context) (*state, error) {
	for {
		if r.closed.Load() {
			return nil, errors.New("runtime: closed")
		}
		select {
		case st := <-r.pool:
			if r.expired(st) {
				r.discard(st)
				continue
			}
			return st, nil
		default:
		}
		select {
		case st := <-r.pool:
			if r.expired(st) {
				r.discard(st)
				continue
			}
			return st, nil
		case r.slots <- struct{}{}:
			st, err := r.newState()
			if err != nil {
				<-r.slots
				return nil, err
			}
			return st, nil
		case <-ctx.Done():
			return nil, fmt.Errorf("runtime: waiting for a Lua state: %w", context.Cause(ctx))
		}
	}
}

func (r *Runtime) expired(st *state) bool {
	return st.epoch != r.epochN.Load() || st.uses >= r.maxUse.Load() || time.Since(st.created) > time.Duration(r.maxAge.Load())
}

// put returns st to the pool after a call. callErr is the raw call error:
// a state whose call failed (other than by kumo.reject/disconnect) is
// closed instead of reused.
func (r *Runtime) put(st *state, callErr error) {
	st.uses++
	if st.L.MemoryLimitExceeded() {
		r.discard(st)
		return
	}
	if callErr != nil {
		var rej *smtpreply.Rejection
		if !errors.As(callErr, &rej) {
			r.discard(st)
			return
		}
	}
	// The age limit is checked when the state is next taken (get), which
	// saves a clock read per event here.
	if r.closed.Load() || st.uses >= r.maxUse.Load() || st.epoch != r.epochN.Load() || int64(len(r.pool)) >= r.maxSpare.Load() {
		r.discard(st)
		return
	}
	select {
	case r.pool <- st:
	default:
		r.discard(st)
	}
}

// discard closes a state and frees its slot.
func (r *Runtime) discard(st *state) {
	st.L.Close()
	<-r.slots
}
