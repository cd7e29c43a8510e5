package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/kumogo/kumogo/internal/adminapi"
)

// The queue administration endpoints of KumoMTA's HTTP API reference
// (bounce, suspend, suspend-ready-q, rebind, ready-q-states) and
// bump-config-epoch. The requests and responses are adminapi's types; the
// scheduler carries them out (SetQueueAdmin).

// EpochBumper is the optional part of Admin that serves
// POST /api/admin/bump-config-epoch.
type EpochBumper interface {
	BumpConfigEpoch()
}

// SetQueueAdmin enables the queue administration endpoints; call it
// before Serve. Until then they answer 503.
func (s *Server) SetQueueAdmin(q adminapi.Service) { s.queueAdmin.Store(&q) }

// post serves an endpoint that decodes a JSON request of type T and
// answers with the response R that the scheduler's method op returns.
func post[T, R any](s *Server, op func(adminapi.Service, context.Context, T) (R, error)) func(adminapi.Service, http.ResponseWriter, *http.Request) {
	return func(q adminapi.Service, w http.ResponseWriter, r *http.Request) {
		var req T
		if s.decode(w, r, &req) {
			s.answer(w, func(ctx context.Context) (any, error) { return op(q, ctx, req) }, r.Context())
		}
	}
}

func (s *Server) queueAdminRoutes(mux *http.ServeMux) {
	h := func(pattern string, fn func(adminapi.Service, http.ResponseWriter, *http.Request)) {
		mux.Handle(pattern, s.guard(trustedOnly, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			q := s.queueAdmin.Load()
			if q == nil || *q == nil {
				textError(w, http.StatusServiceUnavailable, "waiting for spool startup")
				return
			}
			fn(*q, w, r)
		})))
	}
	h("POST /api/admin/bounce/v1", post(s, adminapi.Service.Bounce))
	h("GET /api/admin/bounce/v1", func(q adminapi.Service, w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, q.ListBounces())
	})
	h("DELETE /api/admin/bounce/v1", func(q adminapi.Service, w http.ResponseWriter, r *http.Request) {
		s.cancel(w, r, "bounce", q.CancelBounce)
	})
	h("POST /api/admin/suspend/v1", post(s, adminapi.Service.Suspend))
	h("GET /api/admin/suspend/v1", func(q adminapi.Service, w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, q.ListSuspensions())
	})
	h("DELETE /api/admin/suspend/v1", func(q adminapi.Service, w http.ResponseWriter, r *http.Request) {
		s.cancel(w, r, "suspension", q.CancelSuspension)
	})
	h("POST /api/admin/suspend-ready-q/v1", post(s, adminapi.Service.SuspendReadyQueue))
	h("GET /api/admin/suspend-ready-q/v1", func(q adminapi.Service, w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, q.ListReadyQueueSuspensions())
	})
	h("DELETE /api/admin/suspend-ready-q/v1", func(q adminapi.Service, w http.ResponseWriter, r *http.Request) {
		s.cancel(w, r, "ready queue suspension", q.CancelReadyQueueSuspension)
	})
	h("POST /api/admin/rebind/v1", post(s, adminapi.Service.Rebind))
	h("GET /api/admin/ready-q-states/v1", func(q adminapi.Service, w http.ResponseWriter, r *http.Request) {
		var names []string
		for _, v := range r.URL.Query()["queues"] {
			for _, n := range strings.Split(v, ",") {
				if n = strings.TrimSpace(n); n != "" {
					names = append(names, n)
				}
			}
		}
		writeJSON(w, http.StatusOK, q.ReadyQueueStates(names))
	})
	mux.Handle("POST /api/admin/bump-config-epoch", s.guard(trustedOnly, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, ok := s.deps.Admin.(EpochBumper)
		if !ok {
			notYet(w, r)
			return
		}
		b.BumpConfigEpoch()
		w.WriteHeader(http.StatusOK)
	})))
}

// decode reads a JSON request body into v; false when it answered an
// error.
func (s *Server) decode(w http.ResponseWriter, r *http.Request, v any) bool {
	body, ok := s.readBody(w, r)
	if !ok {
		return false
	}
	if err := json.Unmarshal(body, v); err != nil {
		textError(w, http.StatusBadRequest, "failed to parse the request body as JSON: "+err.Error())
		return false
	}
	return true
}

// answer runs an operation and writes its result as JSON, or its error:
// 422 for a request that fails validation, else 500.
func (s *Server) answer(w http.ResponseWriter, op func(context.Context) (any, error), ctx context.Context) {
	out, err := op(ctx)
	switch {
	case errors.Is(err, adminapi.ErrInvalid):
		textError(w, http.StatusUnprocessableEntity, err.Error())
	case err != nil && out == nil:
		textError(w, http.StatusInternalServerError, err.Error())
	default:
		if err != nil {
			// the rule is in effect; only its saving failed
			s.log.Error().Err(err).Msg("admin request")
		}
		writeJSON(w, http.StatusOK, out)
	}
}

// cancel serves the DELETE requests: 200, or 404 for an unknown id.
func (s *Server) cancel(w http.ResponseWriter, r *http.Request, what string, fn func(id string) (bool, error)) {
	var req adminapi.CancelRequest
	if !s.decode(w, r, &req) {
		return
	}
	if req.ID == "" {
		textError(w, http.StatusUnprocessableEntity, "missing field `id`")
		return
	}
	ok, err := fn(req.ID)
	if err != nil {
		s.log.Error().Err(err).Str("id", req.ID).Msg("saving the admin rules after a cancel")
	}
	if !ok {
		textError(w, http.StatusNotFound, what+" "+req.ID+" is no longer, or never was, valid")
		return
	}
	w.WriteHeader(http.StatusOK)
}
