// Package acctlog writes the accounting log of kumo.aaa.configure_acct_log:
// one JSON line per authentication attempt and per authorization decision,
// in zstd segments like the delivery logs, with the record shapes of
// KumoMTA's kumo.aaa.configure_acct_log page.
package acctlog

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"github.com/kumogo/kumogo/internal/config"
	"github.com/kumogo/kumogo/internal/logrecord"
)

// Identity contexts, as KumoMTA names them.
const (
	SMTPAuthPlain = "SmtpAuthPlainAuthentication"
	HTTPBasicAuth = "HttpBasicAuth"
	BearerToken   = "BearerToken"
)

// TrustedIPGroup is the group of a client in an HTTP listener's
// trusted_hosts.
const TrustedIPGroup = "kumomta:http-listener-trusted-ip"

// Identity is who a client claims or proved to be, and how.
type Identity struct {
	Identity string `json:"identity"`
	Context  string `json:"context"`
}

// AuthInfo is what a session knows of its client.
type AuthInfo struct {
	PeerAddress string     `json:"peer_address,omitempty"`
	Identities  []Identity `json:"identities"`
	Groups      []string   `json:"groups"`
}

// Authn is an authentication attempt.
type Authn struct {
	Attempted Identity
	Success   bool
	Info      AuthInfo
}

// Authz is an authorization decision on a resource.
type Authz struct {
	// Resource is like "http_listener/127.0.0.1:8000/api/admin/bounce/v1".
	Resource  string
	Privilege string // the HTTP method
	Allow     bool
	// Matching is the resource of the rule that decided, "" if none.
	Matching string
	Info     AuthInfo
}

// Logger writes accounting records. A nil *Logger discards them, so that
// callers need no check of their own.
type Logger struct {
	w   *logrecord.Logger
	cfg config.AcctLog
	log zerolog.Logger
}

// New validates cfg and starts the segment writer in cfg.Logs.LogDir.
func New(cfg config.AcctLog, nodeID string, log zerolog.Logger) (*Logger, error) {
	w, err := logrecord.New(cfg.Logs, nodeID, log)
	if err != nil {
		return nil, fmt.Errorf("acctlog: %w", err)
	}
	return &Logger{w: w, cfg: cfg, log: log}, nil
}

type authnRecord struct {
	Type      string    `json:"type"`
	Timestamp time.Time `json:"timestamp"`
	Attempted Identity  `json:"attempted_identity"`
	Success   bool      `json:"success"`
	AuthInfo  AuthInfo  `json:"auth_info"`
}

type authzRecord struct {
	Type      string    `json:"type"`
	Timestamp time.Time `json:"timestamp"`
	Resource  string    `json:"target_resource"`
	Privilege string    `json:"privilege"`
	Access    string    `json:"access"`
	Matching  *string   `json:"matching_resource"`
	AuthInfo  AuthInfo  `json:"auth_info"`
}

// Authn logs an authentication attempt, unless log_authn_ok or
// log_authn_fail turned its kind off.
func (l *Logger) Authn(ctx context.Context, a Authn) {
	if l == nil || (a.Success && !l.cfg.LogAuthnOK) || (!a.Success && !l.cfg.LogAuthnFail) {
		return
	}
	l.write(ctx, authnRecord{Type: "Authentication", Timestamp: time.Now().UTC(), Attempted: a.Attempted, Success: a.Success, AuthInfo: norm(a.Info)})
}

// Authz logs an authorization decision, unless log_authz_allow or
// log_authz_deny turned its kind off.
func (l *Logger) Authz(ctx context.Context, a Authz) {
	if l == nil || (a.Allow && !l.cfg.LogAuthzAllow) || (!a.Allow && !l.cfg.LogAuthzDeny) {
		return
	}
	r := authzRecord{Type: "Authorization", Timestamp: time.Now().UTC(), Resource: a.Resource, Privilege: a.Privilege, Access: "Deny", AuthInfo: norm(a.Info)}
	if a.Allow {
		r.Access = "Allow"
	}
	if a.Matching != "" {
		r.Matching = &a.Matching
	}
	l.write(ctx, r)
}

// norm makes empty lists [] rather than null, as KumoMTA writes them.
func norm(i AuthInfo) AuthInfo {
	if i.Identities == nil {
		i.Identities = []Identity{}
	}
	if i.Groups == nil {
		i.Groups = []string{}
	}
	return i
}

func (l *Logger) write(ctx context.Context, v any) {
	b, err := json.Marshal(v)
	if err == nil {
		err = l.w.LogLine(ctx, b)
	}
	if err != nil {
		l.log.Warn().Err(err).Msg("accounting log: record dropped")
	}
}

// Flush waits until every record logged so far is readable in its segment.
func (l *Logger) Flush(ctx context.Context) error {
	if l == nil {
		return nil
	}
	return l.w.Flush(ctx)
}

// Close seals the open segment and stops the writer.
func (l *Logger) Close(ctx context.Context) error {
	if l == nil {
		return nil
	}
	return l.w.Close(ctx)
}
