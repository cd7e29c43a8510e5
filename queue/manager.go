package queue

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/kumogo/kumogo/internal/config"
	"github.com/kumogo/kumogo/internal/message"
	"github.com/kumogo/kumogo/internal/sharedlimit"
	"github.com/kumogo/kumogo/internal/throttle"
)

// Options configure a Manager.
type Options struct {
	Policy    Policy
	Spool     Spool
	Logger    Logger // may be nil
	Router    Router
	Connector Connector
	Log       zerolog.Logger
	NodeID    string
	// NoSync turns off the fsync of spooled messages before they are
	// acknowledged (KumoMTA's flush=false default). kumogo syncs by default.
	NoSync bool
	// ConfigTTL is how long a scheduled queue's config is reused before
	// get_queue_config is asked again (default 1 minute).
	ConfigTTL time.Duration
	// Classifier fills bounce_classification in Bounce and
	// TransientFailure records (kumo.configure_bounce_classifier); nil
	// leaves them "Uncategorized".
	Classifier Classifier
	// Limits holds the named throttles and connection limits, local or
	// shared through Redis (kumo.configure_redis_throttles). nil gives
	// the Manager a local store of its own.
	Limits *sharedlimit.Store
	// AdminStatePath is the file that keeps the admin bounces and
	// suspensions across restarts (adminstore.go); empty keeps them in
	// memory only.
	AdminStatePath string
	// ReadyQueueReapInterval is how long a ready queue must stay empty,
	// with no connection open, before it is reaped (reap.go). KumoMTA
	// reaps its ready queues after 10 minutes idle, the default.
	ReadyQueueReapInterval time.Duration
	// ReadyQueueReaped, when set, is called with the name of each ready
	// queue that was reaped (the daemon drops its metrics series).
	ReadyQueueReaped func(name string)
	// SourceConnectionFailed, when set, is called for each connection
	// that failed because of its egress source, with the kind of failure
	// ("Unplumbed", "ProxyUnhealthy"); SourceSuspended when a source's
	// suspend_when_* rule suspends it (true) and when that ends (false).
	// The daemon keeps KumoMTA's egress_source_* metrics with them.
	SourceConnectionFailed func(source, kind string)
	SourceSuspended        func(source, reason string, suspended bool)
}

// Classifier sorts a response, given as "<code> <x.y.z> <text>", into a
// bounce class (implemented by internal/bounceclass).
type Classifier interface {
	Classify(response string) string
}

// Manager owns the scheduled and ready queues.
type Manager struct {
	o   Options
	log zerolog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	sched  map[string]*schedQueue
	ready  map[string]*readyQueue
	timers entryHeap
	wake   chan struct{}
	rnd    *rand.Rand
	closed bool

	// waiting counts the messages in the timer heap per scheduled queue
	// name, so that the reaper and the queue sizes need no pass over
	// the heap (reap.go); guarded by mu
	waiting map[string]int
	// waitHead heads the list of each scheduled queue's messages in the
	// timer heap (waitindex.go); guarded by mu
	waitHead map[string]*entry
	// resumeLooked counts the heap's messages that resumes have looked
	// at (its tests check that a resume looks at its own queues' only);
	// guarded by mu
	resumeLooked uint64

	// deferred holds messages accepted with deferred_spool: in memory only
	// until their first delay or a graceful shutdown.
	defMu    sync.Mutex
	deferred map[string]*message.Message

	noted sync.Map // option names already reported as not implemented

	limits *sharedlimit.Store // throttles and connection limits (shaping.go)

	// durable records (durable.go)
	syncer      RecordSyncer // nil when the logger cannot sync
	syncErrAt   atomic.Int64 // unix ns of the last reported Sync failure
	removals    chan string  // finished messages waiting for their Sync
	stopRemover chan struct{}
	removerDone chan struct{}
	stopOnce    sync.Once
	started     atomic.Bool

	// one commit for the mail and its records (commit.go)
	staged  StagedSpool // nil when the spool cannot stage
	commits groupCommit

	admin adminRules // bounces and suspensions (admin.go)

	health sourceHealth // egress source health suspensions (sourcehealth.go)

	// short tasks handed to idle workers (workers.go)
	tasks chan func()

	// memory back to the OS after a large reap (scavenge.go)
	scavenge     chan struct{}
	freeOSMemory func()
}

// noteUnimplemented logs, once per option, that a policy asked for
// something the engine does not do yet.
func (m *Manager) noteUnimplemented(kind string, opts []string) {
	for _, o := range opts {
		if _, seen := m.noted.LoadOrStore(kind+"."+o, true); !seen {
			m.log.Warn().Msgf("%s option %q is accepted but not implemented yet", kind, o)
		}
	}
}

// entry is one queued message. While it waits for a later attempt its
// message lives only in the spool (compact.go): msg is nil and id and
// attempts stand for it.
type entry struct {
	msg   *message.Message
	queue string
	due   time.Time
	index int // heap index, -1 when not in the heap
	// id is the spool id and attempts the attempt count while msg is nil
	id       [16]byte
	attempts int32
	// held is set while a suspension delays the message (admin.go)
	held bool
	// dirty is set when msg differs from its stored meta record
	dirty bool
	// windowed is set on a compactly held message whose set_scheduling
	// constrains its times (resume.go)
	windowed bool
	// qprev and qnext link the messages of one scheduled queue in the
	// timer heap (waitindex.go)
	qprev, qnext *entry
}

// schedQueue is a scheduled queue: its config, refreshed by TTL, and its
// destination, resolved when messages are promoted (never at reception).
type schedQueue struct {
	name   string
	parts  message.QueueNameParts
	cfg    config.QueueConfig
	loaded time.Time
	pool   config.EgressPool
	rr     int            // weighted round robin position
	rate   *throttle.Spec // max_message_rate for scheduled → ready

	// Guarded by Manager.mu: the resolved destination (nil until the
	// first lookup succeeded) and when it was resolved, the messages due
	// while a lookup runs, and whether one runs.
	route     Route
	routed    time.Time
	parked    []*entry
	resolving bool
	// used is when the queue was last looked up for a message (guarded
	// by Manager.mu): the reaper removes it once it has been empty and
	// unused for its reap_interval (reap.go)
	used time.Time
}

// New builds a Manager. Call Start to run its scheduler.
func New(o Options) (*Manager, error) {
	if o.Policy == nil || o.Spool == nil || o.Router == nil || o.Connector == nil {
		return nil, errors.New("queue: Policy, Spool, Router and Connector are required")
	}
	if o.ConfigTTL == 0 {
		o.ConfigTTL = time.Minute
	}
	if o.Limits == nil {
		o.Limits = sharedlimit.New(o.Log)
	}
	if o.ReadyQueueReapInterval <= 0 {
		o.ReadyQueueReapInterval = DefaultReadyQueueReapInterval
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &Manager{
		o: o, log: o.Log, ctx: ctx, cancel: cancel, limits: o.Limits,
		sched:        map[string]*schedQueue{},
		ready:        map[string]*readyQueue{},
		waiting:      map[string]int{},
		waitHead:     map[string]*entry{},
		wake:         make(chan struct{}, 1),
		deferred:     map[string]*message.Message{},
		rnd:          rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7)),
		removals:     make(chan string, 4096),
		stopRemover:  make(chan struct{}),
		removerDone:  make(chan struct{}),
		scavenge:     make(chan struct{}, 1),
		tasks:        make(chan func()),
		freeOSMemory: defaultFreeOSMemory,
	}
	if o.Logger != nil {
		m.syncer, _ = o.Logger.(RecordSyncer)
	}
	m.staged, _ = o.Spool.(StagedSpool)
	m.admin.path, m.admin.log = o.AdminStatePath, o.Log
	if err := m.admin.load(); err != nil {
		return nil, err
	}
	return m, nil
}

// Start runs the scheduler loop, the reaper (with its scavenger) and the
// remover of finished messages.
func (m *Manager) Start() {
	m.wg.Add(3)
	go m.timerLoop()
	go m.reaper()
	go m.scavenger()
	if m.started.CompareAndSwap(false, true) {
		go m.remover()
	}
}

// Shutdown stops the scheduler and the dispatchers. Messages stay in the
// spool for the next start. In-flight deliveries are given until ctx ends.
func (m *Manager) Shutdown(ctx context.Context) error {
	m.mu.Lock()
	m.closed = true
	m.mu.Unlock()
	m.cancel()
	done := make(chan struct{})
	go func() { m.wg.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = ctx.Err()
	}
	// finished messages leave the spool before it closes
	m.stopOnce.Do(func() { close(m.stopRemover) })
	if m.started.Load() {
		select {
		case <-m.removerDone:
		case <-ctx.Done():
			err = ctx.Err()
		}
	}
	// deferred_spool messages still in memory are written now
	m.defMu.Lock()
	pending := make([]*message.Message, 0, len(m.deferred))
	for _, msg := range m.deferred {
		pending = append(pending, msg)
	}
	m.deferred = map[string]*message.Message{}
	m.defMu.Unlock()
	for _, msg := range pending {
		if serr := m.o.Spool.Save(context.Background(), msg, !m.o.NoSync); serr != nil {
			m.log.Error().Err(serr).Str("id", msg.ID()).Msg("writing a deferred-spool message at shutdown")
			err = errors.Join(err, serr)
		}
	}
	return err
}

// schedQueue returns the scheduled queue, creating or refreshing its
// config as needed.
func (m *Manager) schedQueue(ctx context.Context, name string) (*schedQueue, error) {
	if name == message.DeferredInjectQueue {
		// not a destination: only its retry interval (60 s) is used
		cfg := config.DefaultQueueConfig()
		cfg.RetryInterval = time.Minute
		return &schedQueue{name: name, parts: message.ParseQueueName(name), cfg: cfg, loaded: time.Now()}, nil
	}
	m.mu.Lock()
	sq := m.sched[name]
	if sq != nil {
		now := time.Now()
		sq.used = now
		if now.Sub(sq.loaded) < m.o.ConfigTTL {
			m.mu.Unlock()
			return sq, nil
		}
	}
	m.mu.Unlock()
	parts := message.ParseQueueName(name)
	var tenant, campaign, routing *string
	if parts.HasTenant {
		tenant = &parts.Tenant
	}
	if parts.HasCampaign {
		campaign = &parts.Campaign
	}
	if parts.HasRoutingDomain {
		routing = &parts.RoutingDomain
	}
	cfg, err := m.o.Policy.GetQueueConfig(ctx, parts.Domain, tenant, campaign, routing)
	if err != nil {
		return nil, err
	}
	m.noteUnimplemented("make_queue_config", cfg.Unimplemented)
	pool := config.EgressPool{Name: "unspecified", Entries: []config.EgressPoolEntry{{Name: "unspecified", Weight: 1}}}
	if cfg.EgressPool != "" && cfg.EgressPool != "unspecified" {
		if pool, err = m.o.Policy.GetEgressPool(ctx, cfg.EgressPool); err != nil {
			return nil, fmt.Errorf("egress pool %s: %w", cfg.EgressPool, err)
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	old := m.sched[name]
	now := time.Now()
	sq = &schedQueue{name: name, parts: parts, cfg: cfg, loaded: now, pool: pool, used: now}
	if old != nil {
		sq.rr = old.rr
		sq.rate = queueRate(cfg.MaxMessageRate)
		// The destination is not looked up again here: promotion does
		// that, in the background, while the old route keeps serving.
		sq.route, sq.routed, sq.parked, sq.resolving = old.route, old.routed, old.parked, old.resolving
		old.parked = nil
	} else {
		sq.rate = queueRate(cfg.MaxMessageRate)
	}
	m.sched[name] = sq
	return sq, nil
}
