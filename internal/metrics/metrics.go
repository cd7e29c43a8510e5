// Package metrics holds kumogo's Prometheus metrics under KumoMTA's names
// and labels (KumoMTA's "kumod Metrics" reference pages): message counts
// per service, queue sizes per scheduled and ready queue, connection
// counts, Lua event latencies, disk and memory figures. It serves them as
// Prometheus text (GET /metrics, with KumoMTA's optional ?prefix=) and as
// KumoMTA's JSON shape (GET /metrics.json). Per-queue and per-service
// series are dropped once their queue has been idle for a while, so that
// cardinality stays bounded with many queues, as in KumoMTA.
package metrics

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kumogo/kumogo/internal/logrecord"
)

// DefaultIdleTTL is how long a per-queue service series lives without
// activity before it is dropped.
const DefaultIdleTTL = 10 * time.Minute

// QueueSizes is a snapshot of the queues: messages per scheduled queue
// and per ready queue (by ready queue name).
type QueueSizes struct {
	Scheduled map[string]int
	Ready     map[string]int
}

// Registry is the metric set of one daemon.
type Registry struct {
	reg     *prometheus.Registry
	idleTTL time.Duration
	now     func() time.Time

	mu       sync.Mutex
	services map[string]*serviceCounts

	luaLatency *prometheus.HistogramVec
	luaStarted *prometheus.CounterVec

	queuesMu sync.Mutex
	queues   func() QueueSizes
}

type serviceCounts struct {
	received, delivered, transfail, fail atomic.Uint64
	last                                 atomic.Int64 // unix nanos of the last update
	permanent                            bool         // aggregate services are never dropped
}

// New builds a registry. idleTTL <= 0 means DefaultIdleTTL.
func New(idleTTL time.Duration) *Registry {
	if idleTTL <= 0 {
		idleTTL = DefaultIdleTTL
	}
	r := &Registry{
		reg:      prometheus.NewRegistry(),
		idleTTL:  idleTTL,
		now:      time.Now,
		services: map[string]*serviceCounts{},
		luaLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "lua_event_latency",
			Help:    "how long a given lua event callback took",
			Buckets: []float64{0.000005, 0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10},
		}, []string{"event"}),
		luaStarted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lua_event_started",
			Help: "Incremented each time we start to call a lua event",
		}, []string{"event"}),
	}
	r.reg.MustRegister(r.luaLatency, r.luaStarted)
	return r
}

// MustRegister adds collectors (gauge functions of the daemon).
func (r *Registry) MustRegister(cs ...prometheus.Collector) { r.reg.MustRegister(cs...) }

// GaugeFunc registers an unlabelled gauge read at scrape time.
func (r *Registry) GaugeFunc(name, help string, fn func() float64) {
	r.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, fn))
}

// SetQueueSource sets where queue sizes come from.
func (r *Registry) SetQueueSource(fn func() QueueSizes) {
	r.queuesMu.Lock()
	r.queues = fn
	r.queuesMu.Unlock()
}

// ObserveLuaEvent records one Lua event call.
func (r *Registry) ObserveLuaEvent(event string, d time.Duration) {
	r.luaStarted.WithLabelValues(event).Inc()
	r.luaLatency.WithLabelValues(event).Observe(d.Seconds())
}

// aggregate services, which KumoMTA keeps for the process lifetime
var aggregates = map[string]bool{"esmtp_listener": true, "http_listener": true, "smtp_client": true, "lua": true}

func (r *Registry) service(name string) *serviceCounts {
	r.mu.Lock()
	s := r.services[name]
	if s == nil {
		s = &serviceCounts{permanent: aggregates[name]}
		r.services[name] = s
	}
	r.mu.Unlock()
	s.last.Store(r.now().UnixNano())
	return s
}

// ForgetReadyQueue drops the delivery counters of a ready queue that was
// reaped, at once rather than after the idle TTL (KumoMTA's kcli
// queue-summary page: a ready queue's counters reset when it is reaped).
func (r *Registry) ForgetReadyQueue(name string) {
	r.mu.Lock()
	delete(r.services, "smtp_client:"+name)
	delete(r.services, "lua:"+name)
	r.mu.Unlock()
}

// ObserveRecord counts a log record: receptions per listener kind,
// deliveries, transient and permanent failures per delivery protocol and
// per ready queue ("smtp_client:<ready queue>").
func (r *Registry) ObserveRecord(rec *logrecord.Record) {
	switch rec.Type {
	case logrecord.Reception:
		svc := "esmtp_listener"
		if rec.ReceptionProtocol == "HTTP" {
			svc = "http_listener"
		}
		r.service(svc).received.Add(1)
		return
	case logrecord.Delivery, logrecord.TransientFailure, logrecord.Bounce:
	default:
		return
	}
	if rec.Site == "" || rec.Site == rec.Queue {
		// not a delivery attempt (reception-time bounce, suspension)
		return
	}
	proto := "smtp_client"
	switch rec.DeliveryProtocol {
	case "Lua":
		proto = "lua"
	case "", "ESMTP":
	default:
		return
	}
	for _, s := range []*serviceCounts{r.service(proto), r.service(proto + ":" + rec.Site)} {
		switch rec.Type {
		case logrecord.Delivery:
			s.delivered.Add(1)
		case logrecord.TransientFailure:
			s.transfail.Add(1)
		case logrecord.Bounce:
			s.fail.Add(1)
		}
	}
}

// family is one metric family produced without the client library's
// per-sample bookkeeping: the per-queue families are large (tens of
// thousands of samples with 10,000 queues) and are written straight from
// these snapshots.
type family struct {
	name, help, typ string
	label           string // "" for an unlabelled sample
	points          []point
}

type point struct {
	label string
	value float64
}

// bigFamilies snapshots the per-service counters (dropping idle ones) and
// the queue sizes. Every queue in the snapshot has its series, 0 when
// empty, until the queue is reaped and leaves the snapshot (KumoMTA's
// make_queue_config reap_interval page: reaping frees the queue's
// metrics).
func (r *Registry) bigFamilies() []family {
	received := family{name: "total_messages_received", help: "total number of messages received", typ: "counter", label: "service"}
	delivered := family{name: "total_messages_delivered", help: "total number of messages ever delivered", typ: "counter", label: "service"}
	transfail := family{name: "total_messages_transfail", help: "total number of message delivery attempts that transiently failed", typ: "counter", label: "service"}
	fail := family{name: "total_messages_fail", help: "total number of message delivery attempts that permanently failed", typ: "counter", label: "service"}
	cutoff := r.now().Add(-r.idleTTL).UnixNano()
	r.mu.Lock()
	for name, s := range r.services {
		if !s.permanent && s.last.Load() < cutoff {
			delete(r.services, name)
			continue
		}
		if name == "esmtp_listener" || name == "http_listener" {
			received.points = append(received.points, point{name, float64(s.received.Load())})
			continue
		}
		delivered.points = append(delivered.points, point{name, float64(s.delivered.Load())})
		transfail.points = append(transfail.points, point{name, float64(s.transfail.Load())})
		fail.points = append(fail.points, point{name, float64(s.fail.Load())})
	}
	r.mu.Unlock()
	out := []family{received, delivered, transfail, fail}

	r.queuesMu.Lock()
	fn := r.queues
	r.queuesMu.Unlock()
	if fn == nil {
		return out
	}
	qs := fn()
	sched := family{name: "scheduled_count", help: "number of messages in the scheduled queue", typ: "gauge", label: "queue"}
	ready := family{name: "ready_count", help: "number of messages in the ready queue", typ: "gauge", label: "service"}
	total, readyTotal := 0, 0
	for name, n := range qs.Scheduled {
		total += n
		sched.points = append(sched.points, point{name, float64(n)})
	}
	nready := len(qs.Ready)
	for name, n := range qs.Ready {
		readyTotal += n
		ready.points = append(ready.points, point{"smtp_client:" + name, float64(n)})
	}
	ready.points = append(ready.points, point{"smtp_client", float64(readyTotal)})
	single := func(name, help string, v int) family {
		return family{name: name, help: help, typ: "gauge", points: []point{{"", float64(v)}}}
	}
	return append(out, sched, ready,
		single("scheduled_count_total", "total number of messages across all scheduled queues", total),
		single("scheduled_queue_count", "number of scheduled queues", len(sched.points)),
		single("ready_queue_count", "number of ready queues", nready),
		single("message_count", "total number of messages queued (scheduled and ready)", total+readyTotal))
}
