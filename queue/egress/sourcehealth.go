package egress

import (
	"errors"
	"net/netip"
	"os"
	"syscall"
)

// Connection failures that speak against the egress source rather than
// the destination, as KumoMTA classifies them for suspend_when_unplumbed
// and suspend_when_proxy_unhealthy (make_egress_source's pages): the
// source's address is not plumbed on this host (bind fails with
// EADDRNOTAVAIL), or its proxy is unreachable, refuses the connection,
// times out, or refuses to bind the source address. Each error type here
// names its kind with SourceFailureKind, which the queue reads to count and
// suspend the source.

// Kinds of source failure, the values of the kind and reason labels of
// KumoMTA's egress_source_connection_failures_total and
// egress_source_health_suspended metrics.
const (
	FailureUnplumbed      = "Unplumbed"
	FailureProxyUnhealthy = "ProxyUnhealthy"
)

// SourceBindError is a failure to bind the source address: it is not
// plumbed on this host.
type SourceBindError struct {
	Source netip.Addr
	Err    error
}

func (e *SourceBindError) Error() string { return e.Err.Error() }
func (e *SourceBindError) Unwrap() error { return e.Err }

// SourceFailureKind is FailureUnplumbed.
func (e *SourceBindError) SourceFailureKind() string { return FailureUnplumbed }

// ProxyConnectError is a failure to reach a proxy server: unreachable,
// refused or timed out (KumoMTA's ConnectError with is_proxy).
type ProxyConnectError struct {
	Server netip.AddrPort
	Err    error
}

func (e *ProxyConnectError) Error() string { return e.Err.Error() }
func (e *ProxyConnectError) Unwrap() error { return e.Err }

// SourceFailureKind is FailureProxyUnhealthy, or FailureUnplumbed when it
// was the local source address of the connection to the proxy that could
// not be bound.
func (e *ProxyConnectError) SourceFailureKind() string {
	if unplumbed(e.Err) {
		return FailureUnplumbed
	}
	return FailureProxyUnhealthy
}

// SourceFailureKind is FailureProxyUnhealthy: the proxy itself reports
// that it cannot use the source address.
func (e *ProxyBindError) SourceFailureKind() string { return FailureProxyUnhealthy }

// unplumbed reports whether err is bind(2) failing with EADDRNOTAVAIL,
// which is what a source address missing from every interface gives. A
// connect(2) failing with EADDRNOTAVAIL (no ephemeral port left) is not.
func unplumbed(err error) bool {
	var se *os.SyscallError
	return errors.As(err, &se) && se.Syscall == "bind" && errors.Is(se.Err, syscall.EADDRNOTAVAIL)
}
