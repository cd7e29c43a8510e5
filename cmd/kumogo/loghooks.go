package main

import (
	"context"

	"github.com/kumogo/kumogo/internal/config"
	"github.com/kumogo/kumogo/internal/logrecord"
	"github.com/kumogo/kumogo/internal/message"
	"github.com/kumogo/kumogo/queue/loghook"
	"github.com/kumogo/kumogo/runtime"
)

var _ runtime.LogHookHost = (*daemon)(nil)

// recordHook receives every log record next to the local logs.
type recordHook interface {
	Log(rec *logrecord.Record, msg *message.Message)
}

// ConfigureLogHook adds a kumo.configure_log_hook: its records are
// queued once the delivery engine runs (startHooks).
func (d *daemon) ConfigureLogHook(ctx context.Context, h *config.LogHook) error {
	hook, err := loghook.New(*h, d.rt, d.ids, d.nodeID, d.log)
	if err != nil {
		return err
	}
	d.mu.Lock()
	d.loggers.hooks = append(d.loggers.hooks, hook)
	d.mu.Unlock()
	return nil
}

// ConfigureLogDispositionHook adds a kumo.configure_log_disposition_hook.
func (d *daemon) ConfigureLogDispositionHook(ctx context.Context, h *config.LogHook) error {
	hook := loghook.NewDisposition(*h, d.rt, d.nodeID, d.log)
	d.mu.Lock()
	d.loggers.hooks = append(d.loggers.hooks, hook)
	d.mu.Unlock()
	return nil
}

// startHooks hands the log hooks the queue they put records into.
func (m *multiLogger) startHooks(q loghook.Queue) {
	for _, h := range m.hooks {
		if lh, ok := h.(*loghook.Hook); ok {
			lh.Start(q)
		}
	}
}

// closeHooks queues the records still waiting in the log hooks; it runs
// after delivery has stopped and before the spool closes, so that those
// records are in the spool for the next start.
func (m *multiLogger) closeHooks(ctx context.Context) {
	for _, h := range m.hooks {
		if lh, ok := h.(*loghook.Hook); ok {
			_ = lh.Close(ctx)
		}
	}
}
