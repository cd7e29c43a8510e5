package httpapi

import "net/http"

// Admin serves KumoMTA's /api/admin/* operations.
type Admin interface{}

func (s *Server) adminRoutes(mux *http.ServeMux) {}
