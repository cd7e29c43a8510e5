package main

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/kumogo/kumogo/internal/acctlog"
	"github.com/kumogo/kumogo/internal/config"
	"github.com/kumogo/kumogo/internal/message"
	"github.com/kumogo/kumogo/runtime"
)

var _ runtime.AcctLogHost = (*daemon)(nil)

// ConfigureAcctLog starts the accounting log of kumo.aaa.configure_acct_log
// (not when validating). KumoMTA allows one call.
func (d *daemon) ConfigureAcctLog(ctx context.Context, a *config.AcctLog) error {
	if d.validating {
		return nil
	}
	if d.acct.Load() != nil {
		return errors.New("called more than once")
	}
	l, err := acctlog.New(*a, d.nodeID, d.log)
	if err != nil {
		return err
	}
	if !d.acct.CompareAndSwap(nil, l) {
		l.Close(ctx)
		return errors.New("called more than once")
	}
	return nil
}

// acctLog returns the accounting log, or nil when none is configured.
func (d *daemon) acctLog() *acctlog.Logger { return d.acct.Load() }

// smtpPolicy is the runtime as the listeners' policy, with SMTP AUTH
// attempts written to the accounting log.
type smtpPolicy struct {
	*runtime.Runtime
	d *daemon
}

func (p smtpPolicy) AuthPlain(ctx context.Context, authz, authc, password string, cm *message.ConnMeta) (bool, error) {
	ok, err := p.Runtime.AuthPlain(ctx, authz, authc, password, cm)
	if a := p.d.acctLog(); a != nil && err == nil {
		id := acctlog.Identity{Identity: authc, Context: acctlog.SMTPAuthPlain}
		info := acctlog.AuthInfo{PeerAddress: peerAddress(cm)}
		if ok {
			info.Identities = []acctlog.Identity{id}
		}
		a.Authn(ctx, acctlog.Authn{Attempted: id, Success: ok, Info: info})
	}
	return ok, err
}

// peerAddress is the client's IP from the connection metadata
// (received_from is "ip:port").
func peerAddress(cm *message.ConnMeta) string {
	s := cm.GetString("received_from")
	if host, _, err := net.SplitHostPort(s); err == nil {
		return host
	}
	return s
}

// closeAcct seals the accounting log at shutdown.
func (d *daemon) closeAcct(ctx context.Context) {
	if err := d.acct.Load().Close(ctx); err != nil {
		d.log.Error().Err(fmt.Errorf("accounting log: %w", err)).Msg("closing logs")
	}
}
