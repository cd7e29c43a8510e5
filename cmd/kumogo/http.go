package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/kumogo/kumogo/internal/config"
	"github.com/kumogo/kumogo/internal/event"
	"github.com/kumogo/kumogo/internal/httpapi"
	"github.com/kumogo/kumogo/internal/logrecord"
	"github.com/kumogo/kumogo/internal/message"
	"github.com/kumogo/kumogo/queue"
)

// StartHTTPListener binds an HTTP listener during init; it is served, with
// injection wired to the queue, once the spool is up (serve).
func (d *daemon) StartHTTPListener(ctx context.Context, l *config.HTTPListener) error {
	srv, err := httpapi.New(*l, httpapi.Deps{
		Log:         d.log,
		Auth:        httpAuth{d},
		Metrics:     d.metrics.TextHandler(),
		MetricsJSON: d.metrics.JSONHandler(),
		Admin:       d,
		Acct:        d.acctLog,
	})
	if err != nil {
		return err
	}
	if err := srv.Listen(); err != nil {
		return err
	}
	d.mu.Lock()
	d.https = append(d.https, srv)
	d.loggers.observe = d.metrics.ObserveRecord
	d.mu.Unlock()
	d.log.Info().Msg(srv.Scheme() + " listener on " + srv.Addr().String())
	return nil
}

// httpAuth runs the http_server_validate_auth_* events. A handler returns
// a boolean or an AuthInfo table (success).
type httpAuth struct{ d *daemon }

func (a httpAuth) ValidateBasic(ctx context.Context, user, password string) (bool, error) {
	return a.call(ctx, event.HTTPValidateAuthBasic, user, password)
}

func (a httpAuth) ValidateBearer(ctx context.Context, token string) (bool, error) {
	return a.call(ctx, event.HTTPValidateAuthBearer, token)
}

func (a httpAuth) call(ctx context.Context, event string, args ...any) (bool, error) {
	out, err := a.d.rt.Call(ctx, event, args...)
	if err != nil || len(out) == 0 {
		return false, err
	}
	switch v := out[0].(type) {
	case bool:
		return v, nil
	case map[string]any, []any:
		return true, nil
	case nil:
		return false, nil
	default:
		return false, fmt.Errorf("%s must return a boolean or an AuthInfo table, got %T", event, v)
	}
}

// httpInjector connects POST /api/inject/v1 to the policy, the queue and
// the logs.
type httpInjector struct{ d *daemon }

func (h httpInjector) Generated(ctx context.Context, msg *message.Message, auth map[string]any) error {
	_, err := h.d.rt.Call(ctx, event.HTTPMessageGenerated, msg, auth)
	return err
}

func (h httpInjector) Spool(ctx context.Context, msg *message.Message, deferred bool) error {
	return h.d.queue.Spool(ctx, msg, deferred)
}

func (h httpInjector) Insert(ctx context.Context, msg *message.Message) error {
	return h.d.queue.Insert(ctx, msg)
}

func (h httpInjector) Unspool(ctx context.Context, msg *message.Message) {
	h.d.queue.Unspool(ctx, msg)
}

func (h httpInjector) Log(rec *logrecord.Record, msg *message.Message) {
	if h.d.loggers.Enabled() {
		h.d.loggers.Log(rec, msg)
	}
}

func (h httpInjector) IDs() *message.IDGenerator { return h.d.ids }
func (h httpInjector) NodeID() string            { return h.d.nodeID }

// InjectMessage serves kumo.inject_message: a message the policy made
// with kumo.make_message is spooled, logged as received and queued, and
// taken out of the spool again when it cannot be queued.
func (d *daemon) InjectMessage(ctx context.Context, msg *message.Message) error {
	if err := d.injecting(); err != nil {
		return err
	}
	return httpapi.QueueMessage(ctx, httpInjector{d}, msg, httpapi.Reception{})
}

// injecting reports why injection from the policy cannot be taken now:
// the spool is not open yet, or the daemon is not live (full spool).
func (d *daemon) injecting() error {
	if d.queue == nil {
		return errors.New("waiting for spool startup")
	}
	if ok, reason := d.liveness(); !ok {
		return errors.New(reason)
	}
	return nil
}

// InjectV1 serves kumo.api.inject.inject_v1: the request is handled as
// POST /api/inject/v1 from a trusted caller.
func (d *daemon) InjectV1(ctx context.Context, request []byte) ([]byte, error) {
	if err := d.injecting(); err != nil {
		return nil, err
	}
	resp, _, err := httpapi.Inject(ctx, httpInjector{d}, request, httpapi.Origin{Hostname: d.hostname, Identity: httpapi.Identity{Trusted: true}})
	if err != nil {
		return nil, err
	}
	return json.Marshal(resp)
}

// InspectMessage serves GET /api/admin/inspect-message/v1.
func (d *daemon) InspectMessage(ctx context.Context, id string, wantBody bool) (httpapi.MessageInfo, bool, error) {
	if d.queue == nil {
		return httpapi.MessageInfo{}, false, errors.New("waiting for spool startup")
	}
	mi, ok, err := d.queue.InspectMessage(ctx, id, wantBody)
	return adminInfo(mi), ok, err
}

// InspectScheduledQueue serves GET /api/admin/inspect-sched-q/v1.
func (d *daemon) InspectScheduledQueue(ctx context.Context, name string, wantBody bool, limit int) ([]httpapi.MessageInfo, int, error) {
	if d.queue == nil {
		return nil, 0, errors.New("waiting for spool startup")
	}
	list, total, err := d.queue.InspectScheduledQueue(ctx, name, wantBody, limit)
	out := make([]httpapi.MessageInfo, len(list))
	for i, mi := range list {
		out[i] = adminInfo(mi)
	}
	return out, total, err
}

func adminInfo(mi queue.MessageInfo) httpapi.MessageInfo {
	out := httpapi.MessageInfo{ID: mi.ID, Sender: mi.Sender, Meta: mi.Meta, NumAttempts: mi.Attempts}
	if len(mi.Recipients) == 1 {
		out.Recipient = mi.Recipients[0]
	} else {
		out.Recipient = mi.Recipients
	}
	if !mi.Due.IsZero() {
		due := mi.Due.UTC()
		out.Due = &due
	}
	if mi.Data != nil {
		data := string(mi.Data)
		out.Data = &data
	}
	return out
}
