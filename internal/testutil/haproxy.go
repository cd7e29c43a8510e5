package testutil

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// HAProxy is a haproxy (Debian's package, installed by
// scripts/install-test-deps.sh) on a free 127.0.0.1 port, configured as the
// forward proxy of KumoMTA's "Routing Messages Via Proxy Servers" page: it
// reads a PROXY protocol header, then connects to the header's destination
// from the header's source address (`usesrc clientip`, which needs root or
// CAP_NET_ADMIN). It is stopped when the test ends.
type HAProxy struct {
	loopbackDaemon
}

// StartHAProxy starts haproxy for tb; tb fails when haproxy is missing or
// cannot start.
func StartHAProxy(tb testing.TB) *HAProxy {
	tb.Helper()
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/haproxy"); serr != nil {
			tb.Fatal("haproxy is not installed: run scripts/install-test-deps.sh")
		}
		bin = "/usr/sbin/haproxy"
	}
	if os.Geteuid() != 0 {
		tb.Fatal("haproxy's `usesrc clientip` needs root: run the proxy tests as root")
	}
	h := &HAProxy{loopbackDaemon{Addr: freeLoopbackAddr(tb)}}
	cfg := filepath.Join(tb.TempDir(), "haproxy.cfg")
	conf := fmt.Sprintf(`global
    log stderr format raw local0 info
    maxconn 256

defaults
    log global
    timeout connect 5s
    timeout client 30s
    timeout server 30s

listen outboundsmtp
    bind %s accept-proxy
    mode tcp
    use-server v4 if { src 0.0.0.0/0 }
    use-server v6 if { src ::/0 }
    server v4 0.0.0.0 source 0.0.0.0 usesrc clientip
    server v6 ::: source ::: usesrc clientip
`, h.Addr)
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		tb.Fatal(err)
	}
	if out, err := exec.Command(bin, "-c", "-f", cfg).CombinedOutput(); err != nil {
		tb.Fatalf("haproxy -c: %v\n%s", err, out)
	}
	tb.Cleanup(h.Stop)
	h.start(tb, nil, bin, "-db", "-f", cfg)
	return h
}
