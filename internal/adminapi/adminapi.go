// Package adminapi holds the request and response shapes of KumoMTA's
// queue administration endpoints (the "HTTP API" reference pages:
// /api/admin/bounce/v1, /api/admin/suspend/v1,
// /api/admin/suspend-ready-q/v1, /api/admin/rebind/v1 and
// /api/admin/ready-q-states/v1) and the Service that carries them out.
// The HTTP listener, the Lua kumo.api.admin.* functions and the scheduler
// share these types, so that the three agree on field names and defaults.
package adminapi

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/kumogo/kumogo/internal/duration"
)

// DefaultDuration is how long a bounce or suspension lasts when the
// request gives neither duration nor expires (KumoMTA's "5m").
const DefaultDuration = 5 * time.Minute

// Selection names the scheduled queues a rule applies to. Empty fields
// match anything; QueueNames, when present, takes precedence over the
// other fields.
type Selection struct {
	Campaign      *string  `json:"campaign,omitempty"`
	Tenant        *string  `json:"tenant,omitempty"`
	Domain        *string  `json:"domain,omitempty"`
	RoutingDomain *string  `json:"routing_domain,omitempty"`
	QueueNames    []string `json:"queue_names,omitempty"`
}

// BounceV1Request is the body of POST /api/admin/bounce/v1.
type BounceV1Request struct {
	Selection
	Reason          string  `json:"reason"`
	Duration        *string `json:"duration,omitempty"`
	Expires         *string `json:"expires,omitempty"`
	SuppressLogging bool    `json:"suppress_logging,omitempty"`
}

// BounceV1Response answers POST /api/admin/bounce/v1. Bounced holds the
// messages removed by the initial sweep, per scheduled queue.
type BounceV1Response struct {
	ID           string         `json:"id"`
	Bounced      map[string]int `json:"bounced"`
	TotalBounced int            `json:"total_bounced"`
}

// BounceV1ListEntry is one element of GET /api/admin/bounce/v1.
type BounceV1ListEntry struct {
	ID            string         `json:"id"`
	Campaign      *string        `json:"campaign"`
	Tenant        *string        `json:"tenant"`
	Domain        *string        `json:"domain"`
	RoutingDomain *string        `json:"routing_domain"`
	Reason        string         `json:"reason"`
	Duration      string         `json:"duration"`
	Bounced       map[string]int `json:"bounced"`
	TotalBounced  int            `json:"total_bounced"`
}

// CancelRequest is the body of the DELETE requests.
type CancelRequest struct {
	ID string `json:"id"`
}

// SuspendV1Request is the body of POST /api/admin/suspend/v1.
type SuspendV1Request struct {
	Campaign   *string  `json:"campaign,omitempty"`
	Tenant     *string  `json:"tenant,omitempty"`
	Domain     *string  `json:"domain,omitempty"`
	QueueNames []string `json:"queue_names,omitempty"`
	Reason     string   `json:"reason"`
	Duration   *string  `json:"duration,omitempty"`
	Expires    *string  `json:"expires,omitempty"`
}

// Selection returns the queues the suspension applies to.
func (r SuspendV1Request) Selection() Selection {
	return Selection{Campaign: r.Campaign, Tenant: r.Tenant, Domain: r.Domain, QueueNames: r.QueueNames}
}

// SuspendV1Response answers both suspension requests.
type SuspendV1Response struct {
	ID string `json:"id"`
}

// SuspendV1ListEntry is one element of GET /api/admin/suspend/v1.
type SuspendV1ListEntry struct {
	ID       string  `json:"id"`
	Campaign *string `json:"campaign"`
	Tenant   *string `json:"tenant"`
	Domain   *string `json:"domain"`
	Reason   string  `json:"reason"`
	Duration string  `json:"duration"`
}

// SuspendReadyQueueV1Request is the body of POST
// /api/admin/suspend-ready-q/v1; Name is a ready queue name
// ("source->site@smtp_client").
type SuspendReadyQueueV1Request struct {
	Name     string  `json:"name"`
	Reason   string  `json:"reason"`
	Duration *string `json:"duration,omitempty"`
	Expires  *string `json:"expires,omitempty"`
}

// SuspendReadyQueueV1ListEntry is one element of GET
// /api/admin/suspend-ready-q/v1.
type SuspendReadyQueueV1ListEntry struct {
	ID       string    `json:"id"`
	Name     string    `json:"name"`
	Reason   string    `json:"reason"`
	Duration string    `json:"duration"`
	Expires  time.Time `json:"expires"`
}

// RebindV1Request is the body of POST /api/admin/rebind/v1.
type RebindV1Request struct {
	Campaign           *string           `json:"campaign,omitempty"`
	Tenant             *string           `json:"tenant,omitempty"`
	Domain             *string           `json:"domain,omitempty"`
	RoutingDomain      *string           `json:"routing_domain,omitempty"`
	Reason             string            `json:"reason"`
	Data               map[string]string `json:"data"`
	AlwaysFlush        bool              `json:"always_flush,omitempty"`
	SuppressLogging    bool              `json:"suppress_logging,omitempty"`
	TriggerRebindEvent bool              `json:"trigger_rebind_event,omitempty"`
}

// Selection returns the queues the rebind applies to.
func (r RebindV1Request) Selection() Selection {
	return Selection{Campaign: r.Campaign, Tenant: r.Tenant, Domain: r.Domain, RoutingDomain: r.RoutingDomain}
}

// RebindV1Response answers POST /api/admin/rebind/v1 (an empty object in
// KumoMTA; kumogo adds how many messages it matched and moved).
type RebindV1Response struct {
	Matched int `json:"matched,omitempty"`
	Moved   int `json:"moved,omitempty"`
}

// QueueState is one state of a ready queue in ready-q-states.
type QueueState struct {
	Context string    `json:"context"`
	Since   time.Time `json:"since"`
}

// ReadyQueueStateResponse answers GET /api/admin/ready-q-states/v1.
type ReadyQueueStateResponse struct {
	StatesByReadyQueue map[string]map[string]QueueState `json:"states_by_ready_queue"`
}

// Service carries out the queue administration requests (the scheduler
// implements it). Requests are validated by the caller (Validate*).
type Service interface {
	Bounce(ctx context.Context, req BounceV1Request) (BounceV1Response, error)
	ListBounces() []BounceV1ListEntry
	// CancelBounce reports whether a rule with that id was in effect.
	CancelBounce(id string) (bool, error)
	Suspend(ctx context.Context, req SuspendV1Request) (SuspendV1Response, error)
	ListSuspensions() []SuspendV1ListEntry
	CancelSuspension(id string) (bool, error)
	SuspendReadyQueue(ctx context.Context, req SuspendReadyQueueV1Request) (SuspendV1Response, error)
	ListReadyQueueSuspensions() []SuspendReadyQueueV1ListEntry
	CancelReadyQueueSuspension(id string) (bool, error)
	Rebind(ctx context.Context, req RebindV1Request) (RebindV1Response, error)
	// ReadyQueueStates lists the states of the named ready queues (all
	// when names is empty).
	ReadyQueueStates(names []string) ReadyQueueStateResponse
}

// ErrInvalid marks a request that fails validation (a 400/422 answer).
var ErrInvalid = errors.New("invalid request")

// Invalid builds an ErrInvalid error with its reason.
func Invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// Expiry turns a request's duration/expires pair into the time the rule
// ends: expires when given (RFC 3339), else now plus duration (humantime,
// default DefaultDuration).
func Expiry(now time.Time, dur, expires *string) (time.Time, error) {
	if expires != nil && *expires != "" {
		t, err := time.Parse(time.RFC3339Nano, *expires)
		if err != nil {
			return time.Time{}, Invalid("expires %q is not an RFC 3339 date-time", *expires)
		}
		return t, nil
	}
	d := DefaultDuration
	if dur != nil && *dur != "" {
		v, err := duration.Parse(*dur)
		if err != nil {
			return time.Time{}, Invalid("duration: %v", err)
		}
		d = v
	}
	return now.Add(d), nil
}

// ValidateReason refuses an empty reason (a required field).
func ValidateReason(reason string) error {
	if strings.TrimSpace(reason) == "" {
		return Invalid("missing field `reason`")
	}
	return nil
}

// FormatDuration renders a remaining time as humantime does ("4m 59s"),
// to whole seconds.
func FormatDuration(d time.Duration) string {
	d = d.Truncate(time.Second)
	if d <= 0 {
		return "0s"
	}
	units := []struct {
		n    time.Duration
		name string
	}{{24 * time.Hour, "day"}, {time.Hour, "h"}, {time.Minute, "m"}, {time.Second, "s"}}
	var parts []string
	for _, u := range units {
		if d >= u.n {
			v := d / u.n
			d -= v * u.n
			name := u.name
			if name == "day" && v > 1 {
				name = "days"
			}
			parts = append(parts, fmt.Sprintf("%d%s", v, name))
		}
	}
	return strings.Join(parts, " ")
}
