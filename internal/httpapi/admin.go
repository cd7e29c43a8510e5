package httpapi

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"time"
)

// Admin is what the /api/admin/* operations need from the daemon: the
// diagnostic log filter and the inspections. The queue operations
// (bounce, suspend, suspend-ready-q, rebind, ready-q-states) are served
// by the scheduler through SetQueueAdmin (adminq.go).
type Admin interface {
	// SetDiagnosticLogFilter applies a KumoMTA log filter
	// ("kumod=debug,..." or a bare level).
	SetDiagnosticLogFilter(filter string) error
	// InspectMessage finds a waiting message by spool id.
	InspectMessage(ctx context.Context, id string, wantBody bool) (MessageInfo, bool, error)
	// InspectScheduledQueue lists up to limit (0: all) messages of a
	// scheduled queue and counts them.
	InspectScheduledQueue(ctx context.Context, name string, wantBody bool, limit int) ([]MessageInfo, int, error)
}

// MessageInfo is the "message" object of KumoMTA's inspect-message
// response.
type MessageInfo struct {
	Sender      string         `json:"sender"`
	Recipient   any            `json:"recipient"` // a string, or an array for several
	Meta        map[string]any `json:"meta"`
	Data        *string        `json:"data,omitempty"`
	Due         *time.Time     `json:"due"`
	NumAttempts int            `json:"num_attempts"`
	Scheduling  any            `json:"scheduling"`
	ID          string         `json:"-"`
}

// InspectMessageResponse is KumoMTA's InspectMessageV1Response.
type InspectMessageResponse struct {
	ID      string      `json:"id"`
	Message MessageInfo `json:"message"`
}

// InspectSchedQResponse is the inspect-sched-q response: the queue name,
// how many messages it holds and the listed messages.
type InspectSchedQResponse struct {
	QueueName    string                   `json:"queue_name"`
	NumScheduled int                      `json:"num_scheduled"`
	Messages     []InspectMessageResponse `json:"messages"`
}

// setLogFilterRequest is KumoMTA's SetDiagnosticFilterRequest.
type setLogFilterRequest struct {
	Filter *string `json:"filter"`
}

func (s *Server) adminRoutes(mux *http.ServeMux) {
	mux.Handle("POST /api/admin/set_diagnostic_log_filter/v1", s.guard(trustedOnly, http.HandlerFunc(s.setLogFilter)))
	mux.Handle("GET /api/admin/inspect-message/v1", s.guard(trustedOnly, http.HandlerFunc(s.inspectMessage)))
	mux.Handle("GET /api/admin/inspect-sched-q/v1", s.guard(trustedOnly, http.HandlerFunc(s.inspectSchedQ)))
}

func queryBool(r *http.Request, name string) bool {
	b, _ := strconv.ParseBool(r.URL.Query().Get(name))
	return b
}

func (s *Server) inspectMessage(w http.ResponseWriter, r *http.Request) {
	if s.deps.Admin == nil {
		notYet(w, r)
		return
	}
	id := r.URL.Query().Get("id")
	if id == "" {
		textError(w, http.StatusBadRequest, "missing query parameter id")
		return
	}
	mi, ok, err := s.deps.Admin.InspectMessage(r.Context(), id, queryBool(r, "want_body"))
	switch {
	case err != nil:
		textError(w, http.StatusInternalServerError, err.Error())
	case !ok:
		textError(w, http.StatusNotFound, "message "+id+" is not queued")
	default:
		writeJSON(w, http.StatusOK, InspectMessageResponse{ID: id, Message: mi})
	}
}

func (s *Server) inspectSchedQ(w http.ResponseWriter, r *http.Request) {
	if s.deps.Admin == nil {
		notYet(w, r)
		return
	}
	name := r.URL.Query().Get("queue_name")
	if name == "" {
		textError(w, http.StatusBadRequest, "missing query parameter queue_name")
		return
	}
	limit := 0
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			textError(w, http.StatusBadRequest, "invalid limit "+strconv.Quote(v))
			return
		}
		limit = n
	}
	list, total, err := s.deps.Admin.InspectScheduledQueue(r.Context(), name, queryBool(r, "want_body"), limit)
	if err != nil {
		textError(w, http.StatusInternalServerError, err.Error())
		return
	}
	resp := InspectSchedQResponse{QueueName: name, NumScheduled: total, Messages: []InspectMessageResponse{}}
	for _, mi := range list {
		resp.Messages = append(resp.Messages, InspectMessageResponse{ID: mi.ID, Message: mi})
	}
	writeJSON(w, http.StatusOK, resp)
}

func (s *Server) setLogFilter(w http.ResponseWriter, r *http.Request) {
	if s.deps.Admin == nil {
		notYet(w, r)
		return
	}
	body, ok := s.readBody(w, r)
	if !ok {
		return
	}
	var req setLogFilterRequest
	if err := json.Unmarshal(body, &req); err != nil {
		textError(w, http.StatusBadRequest, "failed to parse the request body as JSON: "+err.Error())
		return
	}
	if req.Filter == nil {
		textError(w, http.StatusUnprocessableEntity, "failed to deserialize the JSON body into the target type: missing field `filter`")
		return
	}
	if err := s.deps.Admin.SetDiagnosticLogFilter(*req.Filter); err != nil {
		textError(w, http.StatusBadRequest, err.Error())
		return
	}
	w.WriteHeader(http.StatusOK)
}
