package httpapi

import (
	"encoding/json"
	"net/http"
)

// Admin is what the /api/admin/* operations need from the daemon. Only
// the diagnostic log filter is served so far; KumoMTA's queue operations
// (bounce, suspend, suspend-ready-q, rebind, the inspections) answer 501
// until the queue manager offers them.
type Admin interface {
	// SetDiagnosticLogFilter applies a KumoMTA log filter
	// ("kumod=debug,..." or a bare level).
	SetDiagnosticLogFilter(filter string) error
}

// setLogFilterRequest is KumoMTA's SetDiagnosticFilterRequest.
type setLogFilterRequest struct {
	Filter *string `json:"filter"`
}

func (s *Server) adminRoutes(mux *http.ServeMux) {
	mux.Handle("POST /api/admin/set_diagnostic_log_filter/v1", s.guard(trustedOnly, http.HandlerFunc(s.setLogFilter)))
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
