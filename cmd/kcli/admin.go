package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
)

// stringList is a repeatable flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func newFlags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet("kcli "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return err
		}
		return &usageError{err.Error()}
	}
	return nil
}

// selectors are the message selection flags shared by bounce, suspend
// and rebind.
type selectors struct {
	domain, routingDomain, campaign, tenant string
	queues                                  stringList
	everything                              bool
}

func (s *selectors) register(fs *flag.FlagSet, routing, queues bool) {
	fs.StringVar(&s.domain, "domain", "", "the domain to match")
	if routing {
		fs.StringVar(&s.routingDomain, "routing-domain", "", "the routing domain to match")
	}
	fs.StringVar(&s.campaign, "campaign", "", "the campaign to match")
	fs.StringVar(&s.tenant, "tenant", "", "the tenant to match")
	if queues {
		fs.Var(&s.queues, "queue", "a scheduled queue name to match (repeatable)")
	}
	fs.BoolVar(&s.everything, "everything", false, "match every message")
}

// fill puts the selectors into req, refusing an empty selection without
// --everything, as KumoMTA's kcli does.
func (s *selectors) fill(req map[string]any) error {
	n := 0
	set := func(k, v string) {
		if v != "" {
			req[k] = v
			n++
		}
	}
	set("domain", s.domain)
	set("routing_domain", s.routingDomain)
	set("campaign", s.campaign)
	set("tenant", s.tenant)
	if len(s.queues) > 0 {
		req["queue_names"] = []string(s.queues)
		n++
	}
	if n == 0 && !s.everything {
		return &usageError{"no messages selected: give --domain, --campaign, --tenant, --queue (or --routing-domain), or --everything"}
	}
	if n > 0 && s.everything {
		return &usageError{"--everything cannot be combined with other selectors"}
	}
	return nil
}

func bounce(ctx context.Context, c *client, args []string, w io.Writer) error {
	fs := newFlags("bounce")
	var sel selectors
	sel.register(fs, true, true)
	reason := fs.String("reason", "", "the reason, which goes into the AdminBounce records (required)")
	suppress := fs.Bool("suppress-logging", false, "do not log AdminBounce records")
	dur := fs.String("duration", "", "how long the rule keeps bouncing new messages (default 5m)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *reason == "" {
		return &usageError{"--reason is required"}
	}
	req := map[string]any{"reason": *reason}
	if err := sel.fill(req); err != nil {
		return err
	}
	if *suppress {
		req["suppress_logging"] = true
	}
	if *dur != "" {
		req["duration"] = *dur
	}
	return c.print(ctx, w, "POST", "/api/admin/bounce/v1", req)
}

func suspend(ctx context.Context, c *client, args []string, w io.Writer) error {
	fs := newFlags("suspend")
	var sel selectors
	sel.register(fs, false, true)
	reason := fs.String("reason", "", "the reason, logged with the TransientFailure records (required)")
	dur := fs.String("duration", "", "how long the suspension lasts (default 5m)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *reason == "" {
		return &usageError{"--reason is required"}
	}
	req := map[string]any{"reason": *reason}
	if err := sel.fill(req); err != nil {
		return err
	}
	if *dur != "" {
		req["duration"] = *dur
	}
	return c.print(ctx, w, "POST", "/api/admin/suspend/v1", req)
}

func suspendReadyQ(ctx context.Context, c *client, args []string, w io.Writer) error {
	fs := newFlags("suspend-ready-q")
	name := fs.String("name", "", "the ready queue name (required)")
	reason := fs.String("reason", "", "the reason (required)")
	dur := fs.String("duration", "", "how long the suspension lasts (default 5m)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *name == "" || *reason == "" {
		return &usageError{"--name and --reason are required"}
	}
	req := map[string]any{"name": *name, "reason": *reason}
	if *dur != "" {
		req["duration"] = *dur
	}
	return c.print(ctx, w, "POST", "/api/admin/suspend-ready-q/v1", req)
}

func rebind(ctx context.Context, c *client, args []string, w io.Writer) error {
	fs := newFlags("rebind")
	var sel selectors
	sel.register(fs, true, false)
	reason := fs.String("reason", "", "the reason, logged with the AdminRebind records (required)")
	flush := fs.Bool("always-flush", false, "make the rebound messages due now even if the queue did not change")
	suppress := fs.Bool("suppress-logging", false, "do not log AdminRebind records")
	event := fs.Bool("trigger-rebind-event", false, "call the rebind_message event instead of setting the meta data")
	data := fs.String("data", "", "JSON object of meta data to set")
	var sets stringList
	fs.Var(&sets, "set", "KEY=VALUE meta data to set (repeatable)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *reason == "" {
		return &usageError{"--reason is required"}
	}
	kv := map[string]string{}
	if *data != "" {
		if err := json.Unmarshal([]byte(*data), &kv); err != nil {
			return &usageError{"--data must be a JSON object of strings: " + err.Error()}
		}
	}
	for _, s := range sets {
		k, v, ok := strings.Cut(s, "=")
		if !ok || k == "" {
			return &usageError{fmt.Sprintf("--set %q: want KEY=VALUE", s)}
		}
		kv[k] = v
	}
	req := map[string]any{"reason": *reason, "data": kv}
	if err := sel.fill(req); err != nil {
		return err
	}
	if *flush {
		req["always_flush"] = true
	}
	if *suppress {
		req["suppress_logging"] = true
	}
	if *event {
		req["trigger_rebind_event"] = true
	}
	return c.print(ctx, w, "POST", "/api/admin/rebind/v1", req)
}

func listCmd(path string) func(context.Context, *client, []string, io.Writer) error {
	return func(ctx context.Context, c *client, args []string, w io.Writer) error {
		if err := parse(newFlags("list"), args); err != nil {
			return err
		}
		return c.print(ctx, w, "GET", path, nil)
	}
}

func cancelCmd(path string) func(context.Context, *client, []string, io.Writer) error {
	return func(ctx context.Context, c *client, args []string, w io.Writer) error {
		fs := newFlags("cancel")
		id := fs.String("id", "", "the id of the rule (required)")
		if err := parse(fs, args); err != nil {
			return err
		}
		if *id == "" {
			return &usageError{"--id is required"}
		}
		return c.print(ctx, w, "DELETE", path, map[string]any{"id": *id})
	}
}

func inspectMessage(ctx context.Context, c *client, args []string, w io.Writer) error {
	fs := newFlags("inspect-message")
	body := fs.Bool("want-body", false, "include the message body")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return &usageError{"give the message id"}
	}
	q := url.Values{"id": {fs.Arg(0)}}
	if *body {
		q.Set("want_body", "true")
	}
	return c.print(ctx, w, "GET", "/api/admin/inspect-message/v1?"+q.Encode(), nil)
}

func inspectSchedQ(ctx context.Context, c *client, args []string, w io.Writer) error {
	fs := newFlags("inspect-sched-q")
	body := fs.Bool("want-body", false, "include the message bodies")
	limit := fs.Int("limit", 0, "list at most this many messages")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return &usageError{"give the scheduled queue name"}
	}
	q := url.Values{"queue_name": {fs.Arg(0)}}
	if *body {
		q.Set("want_body", "true")
	}
	if *limit > 0 {
		q.Set("limit", strconv.Itoa(*limit))
	}
	return c.print(ctx, w, "GET", "/api/admin/inspect-sched-q/v1?"+q.Encode(), nil)
}

func setLogFilter(ctx context.Context, c *client, args []string, w io.Writer) error {
	fs := newFlags("set-log-filter")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return &usageError{"give the filter, e.g. kumod=debug or info"}
	}
	return c.print(ctx, w, "POST", "/api/admin/set_diagnostic_log_filter/v1", map[string]any{"filter": fs.Arg(0)})
}
