package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kumogo/kumogo/internal/logrecord"
	"github.com/kumogo/kumogo/internal/mailreport"
)

// pySendFiles sends each file (recipient, path) with smtplib and prints
// the reply code of each.
const pySendFiles = `
import sys, smtplib
addr = sys.argv[1]
host, port = addr.rsplit(":", 1)
for spec in sys.argv[2:]:
    rcpt, path = spec.split("=", 1)
    s = smtplib.SMTP(host, int(port), local_hostname="reporter.test")
    try:
        s.sendmail("reporter@reporter.test", [rcpt], open(path, "rb").read())
        print(rcpt, 250)
    except smtplib.SMTPDataError as e:
        print(rcpt, e.smtp_code, e.smtp_error.decode())
    except smtplib.SMTPRecipientsRefused as e:
        print(rcpt, "rcpt", e)
    s.quit()
`

// TestOOBAndARFReports: listener domains with log_oob / log_arf turn an
// RFC 3464 report into OOB records (LogThenDrop: nothing relayed) and an
// ARF report into a Feedback record (LogThenRelay: also received); plain
// mail and a malformed report to those domains are refused at DATA.
func TestOOBAndARFReports(t *testing.T) {
	dir := t.TempDir()
	policy := spooledPolicy(t, dir, `
  kumo.start_esmtp_listener { listen = '127.0.0.1:0', hostname = 'mx.reports.test', relay_hosts = {} }
  kumo.configure_local_logs { log_dir = '`+dir+`/logs', max_segment_duration = '1s' }`, `
kumo.on('get_listener_domain', function(domain)
  if domain == 'bounce.test' then
    return kumo.make_listener_domain { log_oob = 'LogThenDrop' }
  end
  if domain == 'fbl.test' then
    return kumo.make_listener_domain { log_arf = 'LogThenRelay' }
  end
end)
kumo.on('smtp_server_message_received', function(msg) msg:set_meta('queue', 'null') end)
`)
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	ndr := mailreport.Generate(mailreport.GenerateParams{IncludeOriginalMessage: "HeadersOnly", EnableBounce: true,
		ReportingMTA: mailreport.RemoteMTA{MTAType: "dns", Name: "mx.remote.example"}},
		mailreport.Event{Type: "Bounce", Sender: "list@bounce.test", Recipient: "gone@remote.example", Code: 550,
			Enhanced: &mailreport.Status{Class: 5, Subject: 1, Detail: 1}, Content: "no such user", PeerName: "mx.remote.example",
			PeerAddr: "192.0.2.5", DeliveryProtocol: "ESMTP", Created: at, Timestamp: at},
		[]byte("From: list@bounce.test\r\nSubject: news\r\n\r\nhi\r\n"))
	arf := strings.ReplaceAll(`From: <abuse@isp.example>
Subject: FW: news
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
Source-IP: 192.0.2.1

--b1
Content-Type: message/rfc822

From: list@fbl.test
X-KumoRef: eyJfQF8iOiJcXF8vIiwicmVjaXBpZW50IjoicmVjaXBAZXhhbXBsZS5jb20ifQ==
Subject: news

hi
--b1--
`, "\n", "\r\n")
	files := map[string]string{
		"ndr":       string(ndr.Data),
		"arf":       arf,
		"plain":     "From: a@b.test\r\nSubject: plain\r\n\r\nnot a report\r\n",
		"malformed": strings.Replace(string(ndr.Data), "Action: failed", "Action: exploded", 1),
	}
	var args []string
	for _, spec := range []struct{ rcpt, file string }{
		{"postmaster@bounce.test", "ndr"}, {"abuse@fbl.test", "arf"}, {"x@bounce.test", "plain"}, {"y@bounce.test", "malformed"},
	} {
		p := filepath.Join(dir, spec.file+".eml")
		if err := os.WriteFile(p, []byte(files[spec.file]), 0o644); err != nil {
			t.Fatal(err)
		}
		args = append(args, spec.rcpt+"="+p)
	}
	d := startDaemon(t, nil, "--policy", policy)
	out, err := exec.Command("python3", append([]string{"-c", pySendFiles, d.addr}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("python: %v\n%s\n%s", err, out, d.log())
	}
	for _, want := range []string{"postmaster@bounce.test 250", "abuse@fbl.test 250",
		"x@bounce.test 550 5.7.1 relaying not permitted", "y@bounce.test 550 5.6.0 malformed report: bad Action"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("want %q in\n%s", want, out)
		}
	}
	d.stop(t, syscall.SIGINT)
	recs, err := logrecord.ReadDir(filepath.Join(dir, "logs"))
	if err != nil {
		t.Fatal(err)
	}
	if c := countTypes(recs); c["OOB"] != 1 || c["Feedback"] != 1 || c["Reception"] != 1 || c["Rejection"] != 2 {
		t.Fatalf("record counts %v", c)
	}
	for _, r := range recs {
		switch r.Type {
		case logrecord.OOB:
			if len(r.Recipient) != 1 || r.Recipient[0] != "gone@remote.example" || r.Response.Code != 550 ||
				r.Response.Content != "no such user" || r.Response.Enhanced == nil || r.Response.Enhanced.Subject != 1 {
				t.Errorf("OOB record %+v", r)
			}
		case logrecord.Feedback:
			var fb struct {
				FeedbackType      string         `json:"feedback_type"`
				OriginalMailFrom  string         `json:"original_mail_from"`
				SupplementalTrace map[string]any `json:"supplemental_trace"`
			}
			if err := json.Unmarshal(r.FeedbackReport, &fb); err != nil || fb.FeedbackType != "abuse" ||
				fb.OriginalMailFrom != "<list@fbl.test>" || fb.SupplementalTrace["recipient"] != "recip@example.com" {
				t.Errorf("Feedback record %s (%v)", r.FeedbackReport, err)
			}
		case logrecord.Reception:
			if r.Recipient[0] != "abuse@fbl.test" {
				t.Errorf("Reception of %v: LogThenDrop must not relay", r.Recipient)
			}
		}
	}
}
