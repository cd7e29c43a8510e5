package httpapi

import (
	"context"
	"net/http"
	"strings"

	"github.com/kumogo/kumogo/internal/acctlog"
)

// acct returns the accounting log, or nil.
func (s *Server) acct() *acctlog.Logger {
	if s.deps.Acct == nil {
		return nil
	}
	return s.deps.Acct()
}

// authInfo describes the request's client as KumoMTA's AuthInfo does.
func authInfo(id Identity) acctlog.AuthInfo {
	var ai acctlog.AuthInfo
	if id.PeerIP.IsValid() {
		ai.PeerAddress = id.PeerIP.String()
	}
	if id.Trusted {
		ai.Groups = []string{acctlog.TrustedIPGroup}
	}
	switch {
	case id.User != "":
		ai.Identities = []acctlog.Identity{{Identity: id.User, Context: acctlog.HTTPBasicAuth}}
	case id.Bearer:
		ai.Identities = []acctlog.Identity{{Context: acctlog.BearerToken}}
	}
	return ai
}

// auditAuthn logs an authentication attempt; id is the identity before
// it (its address and groups).
func (s *Server) auditAuthn(ctx context.Context, id Identity, attempted acctlog.Identity, ok bool) {
	a := s.acct()
	if a == nil {
		return
	}
	info := authInfo(id)
	if ok {
		info.Identities = append(info.Identities, attempted)
	}
	a.Authn(ctx, acctlog.Authn{Attempted: attempted, Success: ok, Info: info})
}

// audit logs the access decision on a request. The resource is named as
// KumoMTA names HTTP resources (http_listener/<listen>/<path>); the
// matching resource is that of the default rule which decided: the path
// prefix the route belongs to, under any listener.
func (s *Server) audit(r *http.Request, p privilege, id Identity, allowed bool) {
	a := s.acct()
	if a == nil {
		return
	}
	path := r.URL.Path
	match := "http_listener/*" + rulePrefix(path, p)
	a.Authz(r.Context(), acctlog.Authz{
		Resource:  "http_listener/" + s.cfg.Listen + path,
		Privilege: r.Method,
		Allow:     allowed,
		Matching:  match,
		Info:      authInfo(id),
	})
}

// rulePrefix is the path prefix of the default access rule that applies
// to path: /api/admin, /api/inject, /metrics, or the path itself.
func rulePrefix(path string, p privilege) string {
	for _, pre := range []string{"/api/admin", "/api/inject", "/api/check-liveness", "/metrics"} {
		if path == pre || strings.HasPrefix(path, pre+"/") || strings.HasPrefix(path, pre+".") {
			return pre
		}
	}
	if p == open {
		return path
	}
	return "/"
}
