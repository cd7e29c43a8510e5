package httpapi

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/kumogo/kumogo/internal/acctlog"
)

// Auth validates credentials through the policy: the
// http_server_validate_auth_basic(user, password) and
// http_server_validate_auth_bearer(token) events. ok is false when the
// event rejects the credentials or has no handler; err is a failure of the
// event itself.
type Auth interface {
	ValidateBasic(ctx context.Context, user, password string) (ok bool, err error)
	ValidateBearer(ctx context.Context, token string) (ok bool, err error)
}

// Identity is who a request comes from, after the access checks.
type Identity struct {
	// Trusted: the peer address is in trusted_hosts (KumoMTA's group
	// kumomta:http-listener-trusted-ip).
	Trusted bool
	// User is the Basic user name or "" ; Bearer is set for a token.
	User   string
	Bearer bool
	// PeerIP is the client's address.
	PeerIP netip.Addr
}

// Authenticated reports whether credentials were validated.
func (id Identity) Authenticated() bool { return id.User != "" || id.Bearer }

// privilege is what a route requires, after KumoMTA's default ACL
// (assets/acls/default.toml as described on the HTTP API reference
// pages): liveness is open, injection needs a trusted address or valid
// credentials, everything else (admin, metrics) a trusted address.
type privilege int

const (
	open privilege = iota
	injecting
	trustedOnly
)

type ctxKey struct{}

// identityOf returns the identity guard stored in the request context.
func identityOf(r *http.Request) Identity {
	id, _ := r.Context().Value(ctxKey{}).(Identity)
	return id
}

// guard authenticates the request and applies the privilege of the route.
// Refusals are JSON: {"error": "..."} with 400, 401 or 403.
func (s *Server) guard(p privilege, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var id Identity
		if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
			id.PeerIP = ap.Addr().Unmap()
			id.Trusted = s.cfg.TrustedHosts.Contains(id.PeerIP)
		}
		if h := r.Header.Get("Authorization"); h != "" {
			code, msg := s.authenticate(r.Context(), h, &id)
			if code != 0 {
				if code == http.StatusUnauthorized {
					w.Header().Set("WWW-Authenticate", `Basic realm="kumomta"`)
				}
				jsonError(w, code, msg)
				return
			}
		}
		allowed := false
		switch p {
		case open:
			allowed = true
		case injecting:
			allowed = id.Trusted || id.Authenticated()
		case trustedOnly:
			allowed = id.Trusted
		}
		s.audit(r, p, id, allowed)
		if !allowed {
			if id.Authenticated() {
				jsonError(w, http.StatusForbidden, "access to "+r.URL.Path+" is not permitted for this identity")
				return
			}
			w.Header().Set("WWW-Authenticate", `Basic realm="kumomta"`)
			jsonError(w, http.StatusUnauthorized, "access to "+r.URL.Path+" requires a trusted host or valid credentials")
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, id)))
	})
}

// authenticate checks an Authorization header. A rejected credential is a
// 401 even from a trusted host, as in KumoMTA; a malformed header is 400;
// a failing event is 500 "try again later".
func (s *Server) authenticate(ctx context.Context, header string, id *Identity) (int, string) {
	scheme, cred, _ := strings.Cut(header, " ")
	cred = strings.TrimSpace(cred)
	switch strings.ToLower(scheme) {
	case "basic":
		raw, err := base64.StdEncoding.DecodeString(cred)
		if err != nil {
			return http.StatusBadRequest, "malformed Basic Authorization header"
		}
		user, pass, _ := strings.Cut(string(raw), ":")
		ok, err := s.auth.check(ctx, "basic", user, pass)
		if err != nil {
			s.log.Error().Err(err).Msg("http_server_validate_auth_basic failed")
			return http.StatusInternalServerError, "try again later"
		}
		s.auditAuthn(ctx, *id, acctlog.Identity{Identity: user, Context: acctlog.HTTPBasicAuth}, ok)
		if !ok {
			return http.StatusUnauthorized, "HttpBasicAuth Authentication Failed for " + user
		}
		id.User = user
	case "bearer":
		ok, err := s.auth.check(ctx, "bearer", "", cred)
		if err != nil {
			s.log.Error().Err(err).Msg("http_server_validate_auth_bearer failed")
			return http.StatusInternalServerError, "try again later"
		}
		// the token itself is a secret: the identity is left empty
		s.auditAuthn(ctx, *id, acctlog.Identity{Context: acctlog.BearerToken}, ok)
		if !ok {
			return http.StatusUnauthorized, "HttpBearerAuth Authentication Failed"
		}
		id.Bearer = true
	default:
		return http.StatusBadRequest, "unsupported Authorization scheme " + scheme
	}
	return 0, ""
}

// jsonError writes {"error": msg} with code.
func jsonError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]any{"error": msg, "status": code})
}

// authCache keeps validation results for 60 seconds per credential, as
// KumoMTA does, so that a client sending the same credentials on every
// request runs the policy event once a minute. Keys are hashes: secrets
// are not kept in memory.
type authCache struct {
	auth Auth
	mu   sync.Mutex
	m    map[[32]byte]authEntry
}

type authEntry struct {
	ok    bool
	until time.Time
}

const (
	authTTL     = 60 * time.Second
	authMaxKeys = 10000
)

func newAuthCache(a Auth) *authCache { return &authCache{auth: a, m: map[[32]byte]authEntry{}} }

func (c *authCache) check(ctx context.Context, kind, user, secret string) (bool, error) {
	if c.auth == nil {
		return false, nil
	}
	key := sha256.Sum256([]byte(kind + "\x00" + user + "\x00" + secret))
	now := time.Now()
	c.mu.Lock()
	if e, ok := c.m[key]; ok && now.Before(e.until) {
		c.mu.Unlock()
		return e.ok, nil
	}
	c.mu.Unlock()
	var ok bool
	var err error
	if kind == "basic" {
		ok, err = c.auth.ValidateBasic(ctx, user, secret)
	} else {
		ok, err = c.auth.ValidateBearer(ctx, secret)
	}
	if err != nil {
		return false, err
	}
	c.mu.Lock()
	if len(c.m) >= authMaxKeys {
		for k, e := range c.m {
			if !now.Before(e.until) {
				delete(c.m, k)
			}
		}
		if len(c.m) >= authMaxKeys {
			clear(c.m)
		}
	}
	c.m[key] = authEntry{ok: ok, until: now.Add(authTTL)}
	c.mu.Unlock()
	return ok, nil
}
