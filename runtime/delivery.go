package runtime

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	lua "github.com/yuin/gopher-lua"

	"github.com/kumogo/kumogo/internal/config"
	"github.com/kumogo/kumogo/internal/event"
	"github.com/kumogo/kumogo/internal/message"
)

// DeferredInject runs smtp_server_message_deferred_inject(msg, conn_meta)
// — a Single event — for a message a deferred_queue listener received.
// conn_meta is rebuilt from the message's meta, which holds a copy of the
// connection's. Without a handler it does nothing.
func (r *Runtime) DeferredInject(ctx context.Context, msg *message.Message) error {
	if !r.handlers[event.DeferredInject] {
		return nil
	}
	cm := message.NewConnMeta()
	for k, v := range msg.MetaMap() {
		cm.Set(k, v)
	}
	return r.dispatch(ctx, event.DeferredInject, func(st *state) []lua.LValue {
		return []lua.LValue{st.newMessage(msg), st.newConnMeta(cm)}
	}, nil)
}

// errNoValue reports that no handler returned a value.
var errNoValue = errors.New("no value")

// dispatch runs event on a borrowed state: mkArgs builds the arguments
// (after the event has begun, so that message handles are invalidated
// when it ends), the handlers run with KumoMTA's rules (Multiple events
// chain until a handler returns a value; an explicit single nil counts as
// no value), and use receives the winning results, or nil when no
// handler returned anything, before the state is released. A Lua error is
// returned annotated with the event name (kumo.reject stays a
// *smtpreply.Rejection); an error from use is returned as is.
func (r *Runtime) dispatch(ctx context.Context, event string, mkArgs func(st *state) []lua.LValue, use func(st *state, results []lua.LValue) error) error {
	st, err := r.get(ctx)
	if err != nil {
		return err
	}
	L := st.L
	st.begin(ctx, event)
	var args []lua.LValue
	if mkArgs != nil {
		args = mkArgs(st)
	}
	var luaErr, useErr error
	var results []lua.LValue
	for _, fn := range st.handlers[event] {
		base := L.GetTop()
		L.Push(fn)
		for _, a := range args {
			L.Push(a)
		}
		if luaErr = st.pcall(len(args), lua.MultRet); luaErr != nil {
			break
		}
		n := L.GetTop() - base
		if n == 0 || (n == 1 && L.Get(-1) == lua.LNil) {
			L.SetTop(base)
			continue
		}
		results = make([]lua.LValue, n)
		for i := range n {
			results[i] = L.Get(base + 1 + i)
		}
		break
	}
	if luaErr == nil && use != nil {
		useErr = use(st, results)
	}
	st.end()
	r.put(st, luaErr)
	if luaErr != nil {
		return wrapEventErr(event, luaErr)
	}
	return useErr
}

// configResult extracts a configuration object of type *T from the first
// result of event; constructor names the kumo.make_* function in errors.
func configResult[T any](event, constructor string, results []lua.LValue) (*T, error) {
	if len(results) == 0 {
		return nil, errNoValue
	}
	v := results[0]
	if ud, ok := v.(*lua.LUserData); ok {
		if c, ok := ud.Value.(*T); ok {
			return c, nil
		}
		return nil, fmt.Errorf("%s must return kumo.%s{...}, got a %s object", event, constructor, typeName(ud))
	}
	return nil, fmt.Errorf("%s must return kumo.%s{...}, got a %s (a plain table is not accepted)", event, constructor, v.Type().String())
}

func optArg(s *string) lua.LValue {
	if s == nil {
		return lua.LNil
	}
	return lua.LString(*s)
}

// GetQueueConfig runs get_queue_config(domain, tenant, campaign,
// routing_domain) — a Multiple event; nil pointers are passed as nil. The
// first handler returning kumo.make_queue_config{...} wins; without a
// handler or a value the result is config.DefaultQueueConfig(). Returning
// anything else (a plain table included) is an error, as in KumoMTA.
func (r *Runtime) GetQueueConfig(ctx context.Context, domain string, tenant, campaign, routingDomain *string) (config.QueueConfig, error) {
	if !r.handlers[event.GetQueueConfig] {
		return config.DefaultQueueConfig(), nil
	}
	out := config.DefaultQueueConfig()
	err := r.dispatch(ctx, event.GetQueueConfig, func(*state) []lua.LValue {
		return []lua.LValue{lua.LString(domain), optArg(tenant), optArg(campaign), optArg(routingDomain)}
	}, func(_ *state, res []lua.LValue) error {
		c, err := configResult[config.QueueConfig](event.GetQueueConfig, "make_queue_config", res)
		if err == errNoValue {
			return nil
		}
		if err != nil {
			return err
		}
		out = cloneQueueConfig(c)
		return nil
	})
	if err != nil {
		return config.QueueConfig{}, err
	}
	return out, nil
}

// GetEgressPathConfig runs get_egress_path_config(routing_domain,
// egress_source, site_name) — a Single event. Without a handler the
// result is config.DefaultEgressPath(); a handler that returns nothing is
// an error.
func (r *Runtime) GetEgressPathConfig(ctx context.Context, routingDomain, source, siteName string) (config.EgressPath, error) {
	if !r.handlers[event.GetEgressPathConfig] {
		return config.DefaultEgressPath(), nil
	}
	var out config.EgressPath
	err := r.dispatch(ctx, event.GetEgressPathConfig, func(*state) []lua.LValue {
		return []lua.LValue{lua.LString(routingDomain), lua.LString(source), lua.LString(siteName)}
	}, func(_ *state, res []lua.LValue) error {
		p, err := configResult[config.EgressPath](event.GetEgressPathConfig, "make_egress_path", res)
		if err == errNoValue {
			return fmt.Errorf("%s did not return a value for routing_domain=%q source=%q site=%q: it must return kumo.make_egress_path{...}", event.GetEgressPathConfig, routingDomain, source, siteName)
		}
		if err != nil {
			return err
		}
		out = cloneEgressPath(p)
		return nil
	})
	if err != nil {
		return config.EgressPath{}, err
	}
	return out, nil
}

// GetEgressSource runs get_egress_source(name). The source "unspecified"
// needs no handler ({name="unspecified"}); any other name requires a
// handler returning kumo.make_egress_source{...}.
func (r *Runtime) GetEgressSource(ctx context.Context, name string) (config.EgressSource, error) {
	if name == "unspecified" {
		return config.UnspecifiedSource(), nil
	}
	if !r.handlers[event.GetEgressSource] {
		return config.EgressSource{}, fmt.Errorf("egress source %q: no %s event handler is defined", name, event.GetEgressSource)
	}
	var out config.EgressSource
	err := r.dispatch(ctx, event.GetEgressSource, func(*state) []lua.LValue {
		return []lua.LValue{lua.LString(name)}
	}, func(_ *state, res []lua.LValue) error {
		s, err := configResult[config.EgressSource](event.GetEgressSource, "make_egress_source", res)
		if err == errNoValue {
			return fmt.Errorf("%s did not return a value for source %q", event.GetEgressSource, name)
		}
		if err != nil {
			return err
		}
		out = *s
		out.Unimplemented = slices.Clone(s.Unimplemented)
		out.SuspendWhenUnplumbed = maps.Clone(s.SuspendWhenUnplumbed)
		out.SuspendWhenProxyUnhealthy = maps.Clone(s.SuspendWhenProxyUnhealthy)
		return nil
	})
	if err != nil {
		return config.EgressSource{}, err
	}
	return out, nil
}

// GetEgressPool runs get_egress_pool(name). The pool "unspecified" needs
// no handler (one entry: source "unspecified", weight 1); any other name
// requires a handler returning kumo.make_egress_pool{...}.
func (r *Runtime) GetEgressPool(ctx context.Context, name string) (config.EgressPool, error) {
	if name == "unspecified" {
		return config.UnspecifiedPool(), nil
	}
	if !r.handlers[event.GetEgressPool] {
		return config.EgressPool{}, fmt.Errorf("egress pool %q: no %s event handler is defined", name, event.GetEgressPool)
	}
	var out config.EgressPool
	err := r.dispatch(ctx, event.GetEgressPool, func(*state) []lua.LValue {
		return []lua.LValue{lua.LString(name)}
	}, func(_ *state, res []lua.LValue) error {
		p, err := configResult[config.EgressPool](event.GetEgressPool, "make_egress_pool", res)
		if err == errNoValue {
			return fmt.Errorf("%s did not return a value for pool %q", event.GetEgressPool, name)
		}
		if err != nil {
			return err
		}
		out = *p
		out.Entries = slices.Clone(p.Entries)
		return nil
	})
	if err != nil {
		return config.EgressPool{}, err
	}
	return out, nil
}

// RequeueMessage runs requeue_message(message, response, insert_context,
// increment_attempts, delay) — a Multiple event; delay is a TimeDelta
// object or nil. Handlers may change the message (its meta, and so its
// queue). kumo.reject becomes a *smtpreply.Rejection error (the caller
// bounces the message); other errors are annotated Lua errors.
func (r *Runtime) RequeueMessage(ctx context.Context, msg *message.Message, response string, insertContext []string, incrementAttempts bool, delay *time.Duration) error {
	if !r.handlers[event.RequeueMessage] {
		return nil
	}
	return r.dispatch(ctx, event.RequeueMessage, func(st *state) []lua.LValue {
		ic := st.L.CreateTable(len(insertContext), 0)
		for i, s := range insertContext {
			ic.RawSetInt(i+1, lua.LString(s))
		}
		var d lua.LValue = lua.LNil
		if delay != nil {
			d = st.newTimeDelta(*delay)
		}
		return []lua.LValue{st.newMessage(msg), lua.LString(response), ic, lua.LBool(incrementAttempts), d}
	}, nil)
}

// RewriteDeliveryStatus runs smtp_client_rewrite_delivery_status(response,
// domain, tenant, campaign, routing_domain) — a Single event. Empty tenant
// and campaign are passed as nil; an empty routingDomain defaults to
// domain. changed reports whether the handler returned a status code
// (code is then that code, 100..599).
func (r *Runtime) RewriteDeliveryStatus(ctx context.Context, response, domain, tenant, campaign, routingDomain string) (code int, changed bool, err error) {
	if !r.handlers[event.RewriteDeliveryStatus] {
		return 0, false, nil
	}
	if routingDomain == "" {
		routingDomain = domain
	}
	err = r.dispatch(ctx, event.RewriteDeliveryStatus, func(*state) []lua.LValue {
		opt := func(s string) lua.LValue {
			if s == "" {
				return lua.LNil
			}
			return lua.LString(s)
		}
		return []lua.LValue{lua.LString(response), lua.LString(domain), opt(tenant), opt(campaign), lua.LString(routingDomain)}
	}, func(_ *state, res []lua.LValue) error {
		if len(res) == 0 {
			return nil
		}
		n, ok := res[0].(lua.LNumber)
		if !ok {
			return fmt.Errorf("%s must return a status code number or nil, got %s", event.RewriteDeliveryStatus, res[0].Type().String())
		}
		if !isInteger(n) || n < 100 || n > 599 {
			return fmt.Errorf("%s returned an invalid status code %v", event.RewriteDeliveryStatus, n)
		}
		code, changed = int(n), true
		return nil
	})
	if err != nil {
		return 0, false, err
	}
	return code, changed, nil
}

// SpoolMessageEnumerated runs spool_message_enumerated(message) — a
// Single event — for a message loaded from the spool at start-up.
func (r *Runtime) SpoolMessageEnumerated(ctx context.Context, msg *message.Message) error {
	return r.messageOnly(ctx, event.SpoolMessageEnumerated, msg)
}

// ThrottleInsertReadyQueue runs throttle_insert_ready_queue(message) — a
// Multiple event — before a message moves from its scheduled queue to a
// ready queue. A handler that delays the message changes msg.Due().
func (r *Runtime) ThrottleInsertReadyQueue(ctx context.Context, msg *message.Message) error {
	return r.messageOnly(ctx, event.ThrottleInsertReadyQueue, msg)
}

func (r *Runtime) messageOnly(ctx context.Context, event string, msg *message.Message) error {
	if !r.handlers[event] {
		return nil
	}
	return r.dispatch(ctx, event, func(st *state) []lua.LValue {
		return []lua.LValue{st.newMessage(msg)}
	}, nil)
}

// cloneQueueConfig copies c so that the caller owns every slice.
func cloneQueueConfig(c *config.QueueConfig) config.QueueConfig {
	out := *c
	out.Protocol.MXList = slices.Clone(c.Protocol.MXList)
	if c.Protocol.DirMode != nil {
		v := *c.Protocol.DirMode
		out.Protocol.DirMode = &v
	}
	if c.Protocol.FileMode != nil {
		v := *c.Protocol.FileMode
		out.Protocol.FileMode = &v
	}
	out.ShrinkPolicy = slices.Clone(c.ShrinkPolicy)
	out.Unimplemented = slices.Clone(c.Unimplemented)
	return out
}

// cloneEgressPath copies p so that the caller owns every slice and map.
func cloneEgressPath(p *config.EgressPath) config.EgressPath {
	out := *p
	out.AdditionalConnectionLimits = maps.Clone(p.AdditionalConnectionLimits)
	out.AdditionalConnectionLimitsLocal = maps.Clone(p.AdditionalConnectionLimitsLocal)
	out.RustlsCipherSuites = slices.Clone(p.RustlsCipherSuites)
	out.AdditionalMessageRateThrottles = maps.Clone(p.AdditionalMessageRateThrottles)
	out.AdditionalSourceSelectionRates = maps.Clone(p.AdditionalSourceSelectionRates)
	out.ProhibitedHosts = slices.Clone(p.ProhibitedHosts)
	out.SkipHosts = slices.Clone(p.SkipHosts)
	out.Unimplemented = slices.Clone(p.Unimplemented)
	out.TLSCertificate = cloneKeySource(p.TLSCertificate)
	out.TLSPrivateKey = cloneKeySource(p.TLSPrivateKey)
	out.SMTPAuthPlainPassword = cloneKeySource(p.SMTPAuthPlainPassword)
	return out
}

func cloneKeySource(k config.KeySource) config.KeySource {
	return config.KeySource{Path: k.Path, Data: slices.Clone(k.Data), Vault: maps.Clone(k.Vault)}
}
