// Package loghook turns log records into messages, as KumoMTA's
// configure_log_hook and should_enqueue_log_record pages describe: each
// record becomes a message whose sender and recipients are those of the
// record, whose body is the record's JSON and whose meta holds the record
// (log_record) and reception_protocol "LogRecord". The policy's
// should_enqueue_log_record decides whether it is queued; a queued record
// is spooled and scheduled like any message (retries, max_age, restart),
// so a webhook that is down loses nothing. Records of log-record messages
// are never hooked again.
//
// Records wait in a queue of back_pressure entries between the logging
// call and the workers that run the policy and spool them; a full queue
// makes logging wait, as in KumoMTA. With a queue that takes groups
// (GroupQueue), a worker takes every record waiting, runs the policy for
// each and spools those kept with one write and one commit (group.go).
// Records still waiting there are
// spooled at shutdown (Close); a crash loses them (KumoMTA's hook queue is
// in memory too).
package loghook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/kumogo/kumogo/internal/config"
	"github.com/kumogo/kumogo/internal/jinja"
	"github.com/kumogo/kumogo/internal/logrecord"
	"github.com/kumogo/kumogo/internal/message"
)

// ReceptionProtocol marks messages made from log records.
const ReceptionProtocol = "LogRecord"

// Policy runs should_enqueue_log_record (implemented by runtime.Runtime).
type Policy interface {
	ShouldEnqueueLogRecord(ctx context.Context, msg *message.Message, hookName string) (bool, error)
}

// Queue is where queued records go (implemented by queue.Manager).
type Queue interface {
	Spool(ctx context.Context, msg *message.Message, deferred bool) error
	Insert(ctx context.Context, msg *message.Message) error
}

// workers run the policy and the spool writes of one hook in parallel, so
// that the spool's group commit covers several records.
const workers = 16

// job is one encoded record waiting for the policy.
type job struct {
	typ        logrecord.Type
	data       []byte
	sender     string
	recipients []string
}

// Hook is one kumo.configure_log_hook.
type Hook struct {
	cfg    config.LogHook
	enc    *logrecord.Encoder
	policy Policy
	ids    *message.IDGenerator
	log    zerolog.Logger
	off    [16]bool            // record types turned off by per_record
	tpl    [16]*jinja.Template // per_record templates: the message body

	jobs    chan job
	mu      sync.RWMutex // held for reading by Log while it sends on jobs
	closed  bool
	q       Queue
	started sync.Once
	wg      sync.WaitGroup
	ctx     context.Context
	cancel  context.CancelFunc

	// Counters, for tests and diagnostics.
	Queued, Dropped, Failed atomic.Int64
}

// New builds a hook; records are accepted at once and handled once Start
// has given it the queue.
func New(cfg config.LogHook, policy Policy, ids *message.IDGenerator, nodeID string, log zerolog.Logger) (*Hook, error) {
	bp := cfg.BackPressure
	if bp <= 0 {
		bp = config.DefaultLogHook().BackPressure
	}
	h := &Hook{
		cfg: cfg, enc: logrecord.NewEncoder(cfg.Meta, cfg.Headers, nodeID), policy: policy, ids: ids,
		log: log.With().Str("log_hook", cfg.Name).Logger(), jobs: make(chan job, bp),
	}
	h.ctx, h.cancel = context.WithCancel(context.Background())
	for t := logrecord.Type(0); int(t) < len(h.off); t++ {
		pr, ok := cfg.PerRecord[t.String()]
		if !ok {
			pr, ok = cfg.PerRecord[logrecord.AnyName]
		}
		if ok {
			h.off[t] = !pr.Enable
			if pr.Template != "" {
				tpl, err := jinja.Compile(pr.Template)
				if err != nil {
					return nil, fmt.Errorf("configure_log_hook %s: per_record %s: %w", cfg.Name, t, err)
				}
				h.tpl[t] = tpl
			}
		}
	}
	return h, nil
}

// Name is the hook's name.
func (h *Hook) Name() string { return h.cfg.Name }

// isLogRecord reports whether rec describes a message made from a record.
func isLogRecord(rec *logrecord.Record, msg *message.Message) bool {
	if rec.ReceptionProtocol == ReceptionProtocol {
		return true
	}
	if msg != nil {
		if rp, _ := msg.MetaString("reception_protocol"); rp == ReceptionProtocol {
			return true
		}
	}
	return false
}

// Log takes a record (msg, when non-nil, is read before Log returns). It
// waits while back_pressure records are already waiting.
func (h *Hook) Log(rec *logrecord.Record, msg *message.Message) {
	if int(rec.Type) < len(h.off) && h.off[rec.Type] {
		return
	}
	if isLogRecord(rec, msg) {
		return
	}
	j := job{typ: rec.Type, data: h.enc.Append(make([]byte, 0, 512), rec, msg), sender: rec.Sender, recipients: rec.Recipient}
	if j.sender == "" && msg != nil {
		j.sender = msg.Sender().String()
	}
	if j.recipients == nil && msg != nil {
		for _, r := range msg.Recipients() {
			j.recipients = append(j.recipients, r.String())
		}
	}
	h.mu.RLock()
	defer h.mu.RUnlock()
	if h.closed {
		h.Failed.Add(1)
		return
	}
	h.jobs <- j
}

// Start hands the hook its queue and starts the workers.
func (h *Hook) Start(q Queue) {
	h.started.Do(func() {
		h.q = q
		n := workers
		if _, ok := q.(GroupQueue); ok && !h.cfg.DeferredSpool {
			n = groupWorkers
		}
		for range n {
			h.wg.Add(1)
			go h.work()
		}
	})
}

func (h *Hook) work() {
	defer h.wg.Done()
	if gq, ok := h.q.(GroupQueue); ok && !h.cfg.DeferredSpool {
		h.workGroups(gq)
		return
	}
	for j := range h.jobs {
		h.handle(h.ctx, j)
	}
}

// Close stops taking records and queues those still waiting (the
// workers finish them), within ctx.
func (h *Hook) Close(ctx context.Context) error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil
	}
	h.closed = true
	close(h.jobs)
	h.mu.Unlock()
	if h.q == nil {
		// never started (init failed): nothing can be queued
		n := len(h.jobs)
		h.Failed.Add(int64(n))
		return nil
	}
	done := make(chan struct{})
	go func() {
		h.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		h.cancel()
		<-done
		return errors.New("log hook " + h.cfg.Name + ": records left unqueued at shutdown")
	}
}

// handle turns one record into a message and queues it when the policy
// says so.
func (h *Hook) handle(ctx context.Context, j job) {
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	msg := h.decide(cctx, j)
	if msg == nil {
		return
	}
	if err := h.q.Spool(cctx, msg, h.cfg.DeferredSpool); err != nil {
		h.Failed.Add(1)
		h.log.Error().Err(err).Str("queue", msg.QueueName()).Msg("spooling a log record failed; the record is dropped")
		return
	}
	h.Queued.Add(1)
	if err := h.q.Insert(cctx, msg); err != nil {
		// shutting down: the record stays in the spool for the next start
		h.log.Debug().Err(err).Str("id", msg.ID()).Msg("log record left in the spool")
	}
}

// decide builds the message of j and runs the policy's
// should_enqueue_log_record for it: it returns the message, its queue
// set, when the record is to be queued, and nil (counted) otherwise.
func (h *Hook) decide(ctx context.Context, j job) *message.Message {
	msg, err := h.message(j)
	if err != nil {
		h.Failed.Add(1)
		h.log.Error().Err(err).Msg("building the message of a log record")
		return nil
	}
	ok, err := h.policy.ShouldEnqueueLogRecord(ctx, msg, h.cfg.Name)
	if err != nil {
		h.Failed.Add(1)
		h.log.Error().Err(err).Msg("should_enqueue_log_record failed; the record is dropped")
		return nil
	}
	if !ok {
		h.Dropped.Add(1)
		return nil
	}
	if _, set := msg.MetaString("queue"); !set {
		msg.SetMeta("queue", h.cfg.Name)
	}
	return msg
}

// message builds the log-record message of j.
func (h *Hook) message(j job) (*message.Message, error) {
	sender, err := message.ParseAddress(j.sender)
	if err != nil {
		sender = message.Address{}
	}
	rcpts := make([]message.Address, 0, len(j.recipients))
	for _, r := range j.recipients {
		a, err := message.ParseAddress(r)
		if err != nil {
			continue
		}
		rcpts = append(rcpts, a)
	}
	if len(rcpts) == 0 {
		// a message needs a recipient to be queued; the hook's name
		// stands in for records without one
		rcpts = append(rcpts, message.Address{User: "log-record", Domain: h.cfg.Name})
	}
	body := j.data
	if int(j.typ) < len(h.tpl) && h.tpl[j.typ] != nil {
		rec, err := decodeRecord(j.data)
		if err != nil {
			return nil, err
		}
		out, err := h.tpl[j.typ].Render(templateVars(rec))
		if err != nil {
			return nil, fmt.Errorf("per_record %s template: %w", j.typ, err)
		}
		body = []byte(out)
	}
	msg := message.New(h.ids, sender, rcpts, body)
	// the record stays encoded: the spool writes it as it is and the
	// policy decodes it only when it reads it (msg:get_meta)
	msg.SetMeta("log_record", json.RawMessage(j.data))
	msg.SetMeta("reception_protocol", ReceptionProtocol)
	return msg, nil
}
