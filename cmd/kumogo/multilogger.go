package main

import (
	"context"
	"errors"
	"sync"

	"github.com/kumogo/kumogo/internal/accounting"
	"github.com/kumogo/kumogo/internal/bounceclass"
	"github.com/kumogo/kumogo/internal/logrecord"
	"github.com/kumogo/kumogo/internal/message"
	"github.com/kumogo/kumogo/queue"
)

// multiLogger fans records out to every configured local logger, counts
// receptions and deliveries in the accounting database, and feeds the
// metrics when an HTTP listener serves them.
type multiLogger struct {
	list    []*logrecord.Logger
	acct    *accounting.DB // nil without configure_accounting_db_path
	observe func(rec *logrecord.Record)
	hooks   []recordHook // log hooks and disposition hooks (loghooks.go)
	// classify fills bounce_classification of the classifiable records
	// (kumo.configure_bounce_classifier); nil without a classifier
	classify *bounceclass.Classifier
}

var _ queue.RecordSyncer = (*multiLogger)(nil)

// Enabled reports whether any logger, the accounting database or the
// metrics want records. All are set during init, before any session
// starts.
func (m *multiLogger) Enabled() bool {
	return len(m.list) > 0 || m.acct != nil || m.observe != nil || len(m.hooks) > 0
}

func (m *multiLogger) Log(rec *logrecord.Record, msg *message.Message) {
	if m.classify != nil && rec.BounceClassification == "" && rec.Type.BounceClassifiable() {
		rec.BounceClassification = m.classify.Classify(rec.Response.String())
	}
	if m.acct != nil {
		// as KumoMTA's logging layer does: one count per record
		switch rec.Type {
		case logrecord.Reception:
			m.acct.Received()
		case logrecord.Delivery:
			m.acct.Delivered()
		}
	}
	if m.observe != nil {
		m.observe(rec)
	}
	for _, l := range m.list {
		l.Log(rec, msg)
	}
	for _, h := range m.hooks {
		h.Log(rec, msg)
	}
}

// Sync makes every record logged so far durable in every logger (the
// queue calls it before a 250 and before a finished message leaves the
// spool).
func (m *multiLogger) Sync(ctx context.Context) error {
	switch len(m.list) {
	case 0:
		return nil
	case 1:
		return m.list[0].Sync(ctx)
	}
	errs := make([]error, len(m.list))
	var wg sync.WaitGroup
	for i, l := range m.list {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = l.Sync(ctx)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (m *multiLogger) Close(ctx context.Context) error {
	var first error
	if m.acct != nil {
		first = m.acct.Close(ctx)
	}
	for _, l := range m.list {
		if err := l.Close(ctx); err != nil && first == nil {
			first = err
		}
	}
	return first
}
