package loghook

import (
	"context"
	"encoding/json"
	"time"

	"github.com/rs/zerolog"

	"github.com/kumogo/kumogo/internal/config"
	"github.com/kumogo/kumogo/internal/logrecord"
	"github.com/kumogo/kumogo/internal/message"
)

// DispositionPolicy runs log_disposition_<name> (implemented by
// runtime.Runtime).
type DispositionPolicy interface {
	LogDisposition(ctx context.Context, name string, msg *message.Message, record map[string]any) error
}

// DispositionHook is one kumo.configure_log_disposition_hook: unlike a
// log hook it runs its event synchronously, while the message is still in
// the spool (KumoMTA's configure_log_disposition_hook page).
type DispositionHook struct {
	name   string
	enc    *logrecord.Encoder
	policy DispositionPolicy
	log    zerolog.Logger
	off    [16]bool
}

// NewDisposition builds a disposition hook.
func NewDisposition(cfg config.LogHook, policy DispositionPolicy, nodeID string, log zerolog.Logger) *DispositionHook {
	d := &DispositionHook{name: cfg.Name, enc: logrecord.NewEncoder(cfg.Meta, cfg.Headers, nodeID), policy: policy,
		log: log.With().Str("log_disposition_hook", cfg.Name).Logger()}
	for t := logrecord.Type(0); int(t) < len(d.off); t++ {
		pr, ok := cfg.PerRecord[t.String()]
		if !ok {
			pr, ok = cfg.PerRecord[logrecord.AnyName]
		}
		d.off[t] = ok && !pr.Enable
	}
	return d
}

// Log runs the event for rec; msg is the message the record describes
// (the event is skipped for records without one).
func (d *DispositionHook) Log(rec *logrecord.Record, msg *message.Message) {
	if msg == nil || (int(rec.Type) < len(d.off) && d.off[rec.Type]) || isLogRecord(rec, msg) {
		return
	}
	var m map[string]any
	if err := json.Unmarshal(d.enc.Append(nil, rec, msg), &m); err != nil {
		d.log.Error().Err(err).Msg("decoding a log record")
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := d.policy.LogDisposition(ctx, d.name, msg, m); err != nil {
		d.log.Error().Err(err).Str("id", msg.ID()).Msg("log disposition hook failed")
	}
}
