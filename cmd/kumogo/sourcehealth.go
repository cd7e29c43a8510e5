package main

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kumogo/kumogo/internal/metrics"
	"github.com/kumogo/kumogo/queue"
)

// sourceHealthMetrics registers KumoMTA's egress source health metrics
// (the egress_source_health_suspended, egress_source_health_suspensions_total
// and egress_source_connection_failures_total pages) and points the queue's
// source health callbacks at them.
func sourceHealthMetrics(reg *metrics.Registry, opts *queue.Options) {
	suspended := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "egress_source_health_suspended",
		Help: "1 while an egress source is auto-suspended by one of its suspend_when_* rules, 0 otherwise",
	}, []string{"source", "reason"})
	suspensions := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "egress_source_health_suspensions_total",
		Help: "Number of times an egress source entered the auto-suspended state",
	}, []string{"source", "reason"})
	failures := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "egress_source_connection_failures_total",
		Help: "Number of connection failures classified as the egress source's own (unplumbed address, unhealthy proxy)",
	}, []string{"source", "kind"})
	reg.MustRegister(suspended, suspensions, failures)
	opts.SourceConnectionFailed = func(source, kind string) { failures.WithLabelValues(source, kind).Inc() }
	opts.SourceSuspended = func(source, reason string, on bool) {
		if on {
			suspensions.WithLabelValues(source, reason).Inc()
			suspended.WithLabelValues(source, reason).Set(1)
			return
		}
		suspended.WithLabelValues(source, reason).Set(0)
	}
}
