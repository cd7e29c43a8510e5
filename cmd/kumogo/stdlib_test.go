package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/kumogo/kumogo/internal/testutil"
)

// TestSinkStylePolicyWithStandardLibrary runs, through the binary, a
// policy shaped like KumoMTA's own sink.lua (os.tmpname for the
// accounting database, an HTTP listener with trusted_hosts) that also
// splits itself up with dofile and reads a local file with io.open, as
// KumoMTA users' policies do.
func TestSinkStylePolicyWithStandardLibrary(t *testing.T) {
	dir := t.TempDir()
	part := filepath.Join(dir, "part.lua")
	secret := filepath.Join(dir, "banner.txt")
	if err := os.WriteFile(part, []byte("return { hostname = 'split.test' }"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(secret, []byte("banner from a file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	policy := spooledPolicy(t, dir, `
  local tmp = os.tmpname()
  kumo.configure_accounting_db_path(tmp)
  local settings = dofile('`+part+`')
  local f = assert(io.open('`+secret+`'))
  local banner = f:read('*l')
  f:close()
  kumo.start_esmtp_listener { listen = '127.0.0.1:0', hostname = settings.hostname, banner = banner, relay_hosts = { '0.0.0.0/0' } }
  kumo.start_http_listener { listen = '127.0.0.1:0', trusted_hosts = { '127.0.0.1', '::1', '192.168.1.0/24' } }
  kumo.log_info('tmpname exists: ' .. tostring(io.open(tmp) ~= nil))
  os.remove(tmp)`, `
kumo.on('smtp_server_message_received', function(msg) msg:set_meta('queue', 'null') end)
`)
	d := startDaemon(t, nil, "--policy", policy)
	if !strings.Contains(d.log(), "tmpname exists: true") {
		t.Fatalf("os.tmpname did not create the file:\n%s", d.log())
	}
	if code, _ := d.liveness(t); code != 200 {
		t.Fatalf("liveness %d", code)
	}
	c := testutil.Dial(t, d.addr)
	c.Expect(t, "220 split.test banner from a file")
	c.Cmd(t, "QUIT", "221")
	d.stop(t, syscall.SIGINT)
}

// TestValidateNamesMissingKumoFunction: --validate of a policy calling a
// KumoMTA function kumogo lacks fails with its full name.
func TestValidateNamesMissingKumoFunction(t *testing.T) {
	dir := t.TempDir()
	policy := spooledPolicy(t, dir, `
  kumo.start_esmtp_listener { listen = '127.0.0.1:0' }
  local target = kumo.xfer.get_xfer_target 'x'`, "")
	var stderr strings.Builder
	if rc := run([]string{"--validate", "--policy", policy}, &stderr); rc != 1 {
		t.Fatalf("rc %d: %s", rc, stderr.String())
	}
	if !strings.Contains(stderr.String(), "policy.lua:7: kumo.xfer.get_xfer_target is not provided by kumogo") {
		t.Fatalf("stderr: %s", stderr.String())
	}
}
