package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kumogo/kumogo/internal/logrecord"
	"github.com/kumogo/kumogo/internal/testutil"
)

// TestBounceClassifier: kumo.configure_bounce_classifier with rule files in
// KumoMTA's format (TOML with the IANA-style rules, and a JSON file of the
// user's loaded first, which wins) classifies the relay's Bounce and
// TransientFailure records from a real peer's answers; a bad rule fails
// --validate naming the file.
func TestBounceClassifier(t *testing.T) {
	dir := t.TempDir()
	// the peer: a kumogo that refuses two recipients
	peerPolicy := spooledPolicy(t, filepath.Join(dir), `
  kumo.start_esmtp_listener { listen = '127.0.0.1:0', hostname = 'peer.test', relay_hosts = { '127.0.0.1' } }`, `
kumo.on('smtp_server_rcpt_to', function(rcpt)
  if rcpt.user == 'gone' then kumo.reject(550, '5.1.1 no such user') end
  if rcpt.user == 'full' then kumo.reject(452, '4.2.2 mailbox full') end
  if rcpt.user == 'blocked' then kumo.reject(554, '5.7.1 listed at bl.example') end
end)
kumo.on('smtp_server_message_received', function(msg) msg:set_meta('queue', 'null') end)
`)
	peer := startDaemon(t, nil, "--policy", peerPolicy)

	rdir := t.TempDir()
	iana := filepath.Join(rdir, "iana.toml")
	os.WriteFile(iana, []byte(`[rules]
InvalidRecipient = ["^(451|550) [45]\\.1\\.[1234] "]
QuotaIssues = ["^45[02] [45]\\.2\\.2 "]
AuthenticationFailed = ["^5\\d{2} [45]\\.7\\.1 "]
`), 0o644)
	custom := filepath.Join(rdir, "custom.json")
	os.WriteFile(custom, []byte(`{"rules": {"SpamBlock": ["listed at"]}}`), 0o644)
	relayPolicy := spooledPolicy(t, rdir, `
  kumo.configure_local_logs { log_dir = '`+rdir+`/logs', max_segment_duration = '1s' }
  kumo.configure_bounce_classifier { files = { '`+custom+`', '`+iana+`' }, cache_size = 100 }
  kumo.start_esmtp_listener { listen = '127.0.0.1:0', hostname = 'relay.test' }`, `
kumo.on('smtp_server_message_received', function(msg) msg:set_meta('queue', '[127.0.0.1]:`+portOf(peer.addr)+`') end)
kumo.on('get_queue_config', function() return kumo.make_queue_config { retry_interval = '1h' } end)
kumo.on('get_egress_path_config', function()
  return kumo.make_egress_path { enable_tls = 'Disabled', prohibited_hosts = {} }
end)
`)
	relay := startDaemon(t, nil, "--policy", relayPolicy)
	c := testutil.Dial(t, relay.addr)
	c.Expect(t, "220 relay.test")
	c.Cmd(t, "EHLO x.example", "250-")
	for _, u := range []string{"gone", "full", "blocked"} {
		c.Cmd(t, "MAIL FROM:<a@x.com>", "250")
		c.Cmd(t, "RCPT TO:<"+u+"@example.com>", "250")
		c.Cmd(t, "DATA", "354")
		c.SendRaw("Subject: b\r\n\r\nhi\r\n.\r\n")
		c.Expect(t, "250 OK ids=")
	}
	c.Close()
	want := map[string]string{"gone@example.com": "InvalidRecipient", "full@example.com": "QuotaIssues", "blocked@example.com": "SpamBlock"}
	got := map[string]string{}
	deadline := time.Now().Add(15 * time.Second)
	for len(got) < len(want) && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		recs, _ := logrecord.ReadDirRaw(filepath.Join(rdir, "logs"))
		for _, r := range recs {
			if r["type"] == "Bounce" || r["type"] == "TransientFailure" {
				got[r["recipient"].(string)] = r["type"].(string) + " " + r["bounce_classification"].(string)
			}
		}
	}
	for rcpt, class := range want {
		if !strings.HasSuffix(got[rcpt], " "+class) {
			t.Errorf("%s: record %q, want class %s", rcpt, got[rcpt], class)
		}
	}
	if !strings.HasPrefix(got["full@example.com"], "TransientFailure ") || !strings.HasPrefix(got["gone@example.com"], "Bounce ") {
		t.Errorf("record types %v", got)
	}
	relay.stop(t, syscall.SIGINT)
	peer.stop(t, syscall.SIGINT)

	bad := filepath.Join(rdir, "bad.toml")
	os.WriteFile(bad, []byte("[rules]\nX = [\"(unclosed\"]\n"), 0o644)
	badPolicy := filepath.Join(rdir, "bad.lua")
	os.WriteFile(badPolicy, []byte(`local kumo = require 'kumo'
kumo.on('init', function()
  kumo.configure_bounce_classifier { files = { '`+bad+`' } }
end)
`), 0o644)
	out, err := exec.Command(kumogoBin, "--validate", "--policy", badPolicy).CombinedOutput()
	if err == nil || !strings.Contains(string(out), bad) {
		t.Fatalf("--validate with a bad rule: %v\n%s", err, out)
	}
	os.WriteFile(badPolicy, []byte(`local kumo = require 'kumo'
kumo.on('init', function()
  kumo.configure_bounce_classifier { files = { '`+iana+`' }, bogus = 1 }
end)
`), 0o644)
	out, err = exec.Command(kumogoBin, "--validate", "--policy", badPolicy).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "unknown field `bogus`") {
		t.Fatalf("--validate with an unknown field: %v\n%s", err, out)
	}
}
