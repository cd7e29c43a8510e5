package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"

	"github.com/kumogo/kumogo/internal/logrecord"
)

// dsnThree is an RFC 3464 report with three failed recipients (one naming
// its original recipient) and one delayed, which is not logged.
const dsnThree = `From: MAILER-DAEMON@mx.remote.example
To: list@bounce.test
Subject: Undelivered Mail Returned to Sender
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="b2"

--b2
Content-Type: text/plain

Some recipients failed.
--b2
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.remote.example

Final-Recipient: rfc822; gone@remote.example
Action: failed
Status: 5.1.1
Remote-MTA: dns; inner.remote.example
Diagnostic-Code: smtp; 550 5.1.1 no such user
Last-Attempt-Date: Tue, 01 Dec 2026 10:00:00 +0000

Final-Recipient: rfc822; full@remote.example
Action: failed
Status: 5.2.2
Diagnostic-Code: smtp; 552 5.2.2 mailbox full

Final-Recipient: rfc822; alias-target@remote.example
Original-Recipient: rfc822; alias@remote.example
Action: failed
Status: 5.7.1
Diagnostic-Code: smtp; 554 5.7.1 listed at bl.example

Final-Recipient: rfc822; slow@remote.example
Action: delayed
Status: 4.4.1

--b2
Content-Type: text/rfc822-headers

From: list@bounce.test
Subject: news
--b2--
`

// TestReportsBounceClassification: with kumo.configure_bounce_classifier,
// the OOB records that an incoming DSN gives, the Feedback record of an ARF
// report and the Rejection of a malformed report carry the classifier's
// category in bounce_classification, as KumoMTA's logging layer fills it;
// the OOB records also have KumoMTA's recipient (the original one when
// named), peer name (the reporting MTA) and timestamp (the last attempt).
func TestReportsBounceClassification(t *testing.T) {
	dir := t.TempDir()
	rules := filepath.Join(dir, "iana.toml")
	if err := os.WriteFile(rules, []byte(`[rules]
InvalidRecipient = ["^(451|550) [45]\\.1\\.[1234] "]
QuotaIssues = ["^552 [45]\\.2\\.2 "]
SpamBlock = ["listed at"]
ProtocolErrors = ["^550 5\\.6\\.0 "]
# a Feedback record's response is that of its reception, as in KumoMTA
FeedbackLoop = ["^250 "]
`), 0o644); err != nil {
		t.Fatal(err)
	}
	policy := spooledPolicy(t, dir, `
  kumo.start_esmtp_listener { listen = '127.0.0.1:0', hostname = 'mx.reports.test', relay_hosts = {} }
  kumo.configure_local_logs { log_dir = '`+dir+`/logs', max_segment_duration = '1s' }
  kumo.configure_bounce_classifier { files = { '`+rules+`' } }`, `
kumo.on('get_listener_domain', function(domain)
  if domain == 'bounce.test' then
    return kumo.make_listener_domain { log_oob = 'LogThenDrop' }
  end
  if domain == 'fbl.test' then
    return kumo.make_listener_domain { log_arf = 'LogThenDrop' }
  end
end)
kumo.on('smtp_server_message_received', function(msg) msg:set_meta('queue', 'null') end)
`)
	arf := `From: <abuse@isp.example>
To: <abuse@fbl.test>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report; boundary="b1"

--b1
Content-Type: text/plain

An abuse report.
--b1
Content-Type: message/feedback-report

Feedback-Type: abuse
User-Agent: SomeGenerator/1.0
Version: 1
Original-Mail-From: <list@fbl.test>

--b1
Content-Type: message/rfc822

From: list@fbl.test
Subject: news

hi
--b1--
`
	malformed := strings.Replace(dsnThree, "Action: failed", "Action: exploded", 1)
	var args []string
	for _, f := range []struct{ rcpt, name, text string }{
		{"postmaster@bounce.test", "ndr", dsnThree}, {"abuse@fbl.test", "arf", arf}, {"y@bounce.test", "bad", malformed},
	} {
		p := filepath.Join(dir, f.name+".eml")
		if err := os.WriteFile(p, []byte(strings.ReplaceAll(f.text, "\n", "\r\n")), 0o644); err != nil {
			t.Fatal(err)
		}
		args = append(args, f.rcpt+"="+p)
	}
	d := startDaemon(t, nil, "--policy", policy)
	out, err := exec.Command("python3", append([]string{"-c", pySendFiles, d.addr}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("python: %v\n%s\n%s", err, out, d.log())
	}
	for _, want := range []string{"postmaster@bounce.test 250", "abuse@fbl.test 250", "y@bounce.test 550 5.6.0 malformed report"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("want %q in\n%s", want, out)
		}
	}
	d.stop(t, syscall.SIGINT)
	recs, err := logrecord.ReadDirRaw(filepath.Join(dir, "logs"))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range recs {
		switch r["type"] {
		case "OOB", "Feedback", "Rejection":
		default:
			continue
		}
		line := r["type"].(string) + " " + r["bounce_classification"].(string)
		if r["type"] == "OOB" {
			peer, _ := r["peer_address"].(map[string]any)
			line += " " + r["recipient"].(string) + " " + peer["name"].(string)
			if r["recipient"] == "gone@remote.example" && r["timestamp"].(float64) != 1796119200 {
				t.Errorf("OOB timestamp %v, want the Last-Attempt-Date 1796119200", r["timestamp"])
			}
		}
		got = append(got, line)
	}
	sort.Strings(got)
	want := []string{
		"Feedback FeedbackLoop",
		"OOB InvalidRecipient gone@remote.example mx.remote.example",
		"OOB QuotaIssues full@remote.example mx.remote.example",
		"OOB SpamBlock alias@remote.example mx.remote.example",
		"Rejection ProtocolErrors",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("records:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
