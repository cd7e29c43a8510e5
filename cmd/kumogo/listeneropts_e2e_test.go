package main

import (
	"crypto/tls"
	"encoding/base64"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kumogo/kumogo/internal/testutil"
)

// TestAuthFailuresFromPolicy: kumogo's listener options max_auth_failures
// and max_body_memory are decoded from kumo.start_esmtp_listener (an
// unknown key would fail the start), and max_auth_failures = 2 ends the
// session with a 421 after the second failed AUTH, not the default third.
func TestAuthFailuresFromPolicy(t *testing.T) {
	dir := t.TempDir()
	policy := spooledPolicy(t, dir, `
  kumo.start_esmtp_listener {
    listen = '127.0.0.1:0', hostname = 'auth.test',
    max_auth_failures = 2, max_body_memory = 64 * 1024 * 1024,
  }`, `
kumo.on('smtp_server_auth_plain', function(authz, authc, password, conn_meta)
  return password == 'right'
end)
kumo.on('smtp_server_message_received', function(msg) msg:set_meta('queue', 'null') end)
`)
	d := startDaemon(t, nil, "--policy", policy)
	c := testutil.Dial(t, d.addr)
	c.Expect(t, "220 auth.test ")
	c.Cmd(t, "EHLO client.test", "250-auth.test Aloha client.test")
	c.Cmd(t, "STARTTLS", "220")
	tc := tls.Client(c.Conn(), &tls.Config{InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	tl := testutil.Wrap(t, tc)
	tl.Cmd(t, "EHLO client.test", "250-auth.test Aloha client.test")
	wrong := base64.StdEncoding.EncodeToString([]byte("\x00user\x00wrong"))
	tl.Cmd(t, "AUTH PLAIN "+wrong, "535 5.7.8 AUTH invalid")
	tl.Send("AUTH PLAIN " + wrong)
	tl.Expect(t, "535 5.7.8 AUTH invalid")
	tl.Expect(t, "421 4.7.0 auth.test too many failed authentication attempts")
	if _, _, err := tl.ReadReply(); err == nil {
		t.Fatal("the session went on after the 421")
	}
	// the log is read from the daemon's stderr on another goroutine
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(d.log(), "too many failed AUTH attempts") && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(d.log(), "too many failed AUTH attempts") {
		t.Errorf("the closing is not logged:\n%s", tail(d.log(), 2000))
	}
	d.stop(t, syscall.SIGINT)
}
