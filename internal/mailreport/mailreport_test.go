package mailreport

import (
	"bytes"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// the example of RFC 3464 appendix, with CRLF line ends
var sampleDSN = crlf(`Date: Thu, 7 Jul 1994 17:16:05 -0400
From: Mail Delivery Subsystem <MAILER-DAEMON@CS.UTK.EDU>
Message-Id: <199407072116.RAA14128@CS.UTK.EDU>
Subject: Returned mail: Cannot send message for 5 days
To: <owner-info-mime@cs.utk.edu>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
      boundary="RAA14128.773615765/CS.UTK.EDU"

--RAA14128.773615765/CS.UTK.EDU

The original message was received at Sat, 2 Jul 1994 17:10:28 -0400
from root@localhost

   ----- The following addresses had delivery problems -----
<louisl@larry.slip.umd.edu>  (unrecoverable error)

--RAA14128.773615765/CS.UTK.EDU
content-type: message/delivery-status

Reporting-MTA: dns; cs.utk.edu

Original-Recipient: rfc822;louisl@larry.slip.umd.edu
Final-Recipient: rfc822;louisl@larry.slip.umd.edu
Action: failed
Status: 4.0.0
Diagnostic-Code: smtp; 426 connection timed out
Last-Attempt-Date: Thu, 7 Jul 1994 17:15:49 -0400

--RAA14128.773615765/CS.UTK.EDU
content-type: message/rfc822

[original message goes here]

--RAA14128.773615765/CS.UTK.EDU--
`)

// the example of RFC 5965 section 3.1, with a KumoMTA-style trace header
// in the original message
var sampleARF = crlf(`From: <abusedesk@example.com>
Date: Thu, 8 Mar 2005 17:40:36 EDT
Subject: FW: Earn money
To: <abuse@example.net>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report;
     boundary="part1_13d.2e68ed54_boundary"

--part1_13d.2e68ed54_boundary
Content-Type: text/plain; charset="US-ASCII"
Content-Transfer-Encoding: 7bit

This is an email abuse report for an email message received from IP
192.0.2.1 on Thu, 8 Mar 2005 14:00:00 EDT.

--part1_13d.2e68ed54_boundary
Content-Type: message/feedback-report

Feedback-Type: abuse
User-Agent: SomeGenerator/1.0
Version: 1
Original-Mail-From: <somespammer@example.net>
Original-Rcpt-To: <user@example.com>
Arrival-Date: Thu, 8 Mar 2005 14:00:00 EDT
Reporting-MTA: dns; mail.example.com
Source-IP: 192.0.2.1
Authentication-Results: mail.example.com;
               spf=fail smtp.mail=somespammer@example.com
Reported-Domain: example.net
Reported-Uri: http://example.net/earn_money.html
X-Custom: extra

--part1_13d.2e68ed54_boundary
Content-Type: message/rfc822
Content-Disposition: inline

From: <somespammer@example.net>
Received: from mailserver.example.net (mailserver.example.net
        [192.0.2.1]) by example.com with ESMTP id M63d4137594e46;
        Thu, 08 Mar 2005 14:00:00 -0400
X-KumoRef: eyJfQF8iOiJcXF8vIiwicmVjaXBpZW50IjoicmVjaXBAZXhhbXBsZS5jb20ifQ==
To: <Undisclosed Recipients>
Subject: Earn money
MIME-Version: 1.0
Content-type: text/plain
Message-ID: 8787KJKJ3K4J3K4J3K4J3.mail@example.net
Date: Thu, 02 Sep 2004 12:31:03 -0500

Spam Spam Spam
--part1_13d.2e68ed54_boundary--
`)

func crlf(s string) []byte { return []byte(strings.ReplaceAll(s, "\n", "\r\n")) }

func TestParseDSN(t *testing.T) {
	rep, err := ParseDSN(sampleDSN)
	if err != nil || rep == nil {
		t.Fatalf("%v %v", rep, err)
	}
	if rep.PerMessage.ReportingMTA != (RemoteMTA{"dns", "cs.utk.edu"}) || len(rep.PerRecipient) != 1 {
		t.Fatalf("%+v", rep)
	}
	r := rep.PerRecipient[0]
	if r.FinalRecipient.Recipient != "louisl@larry.slip.umd.edu" || r.Action != "failed" || r.Status != (Status{Class: 4}) ||
		r.DiagnosticCode == nil || r.DiagnosticCode.Diagnostic != "426 connection timed out" || r.LastAttemptDate != "1994-07-07T21:15:49Z" ||
		r.OriginalRecipient == nil || !strings.Contains(rep.OriginalMessage, "[original message goes here]") {
		t.Errorf("%+v", r)
	}
	for name, data := range map[string][]byte{
		"plain mail":   crlf("From: a@b\nSubject: x\n\nhello\n"),
		"other report": bytes.Replace(sampleDSN, []byte("report-type=delivery-status"), []byte("report-type=disposition-notification"), 1),
		"garbage":      []byte("\x00\x01"),
	} {
		if rep, err := ParseDSN(data); rep != nil || err != nil {
			t.Errorf("%s: %v %v", name, rep, err)
		}
	}
	for name, data := range map[string][]byte{
		"bad status":       bytes.Replace(sampleDSN, []byte("Status: 4.0.0"), []byte("Status: 9.x"), 1),
		"no recipient":     bytes.Replace(sampleDSN, []byte("Final-Recipient: rfc822;louisl@larry.slip.umd.edu"), []byte("X: y"), 1),
		"bad action":       bytes.Replace(sampleDSN, []byte("Action: failed"), []byte("Action: exploded"), 1),
		"no status part":   bytes.Replace(sampleDSN, []byte("message/delivery-status"), []byte("text/plain"), 1),
		"no reporting mta": bytes.Replace(sampleDSN, []byte("Reporting-MTA: dns; cs.utk.edu"), []byte("Reporting-MTA cs"), 1),
		"truncated":        sampleDSN[:len(sampleDSN)/2+200],
	} {
		if rep, err := ParseDSN(data); rep != nil || !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v %v", name, rep, err)
		}
	}
}

func TestParseARF(t *testing.T) {
	rep, err := ParseARF(sampleARF)
	if err != nil || rep == nil {
		t.Fatalf("%v %v", rep, err)
	}
	if rep.FeedbackType != "abuse" || rep.UserAgent != "SomeGenerator/1.0" || rep.Version != "1" ||
		rep.OriginalMailFrom != "<somespammer@example.net>" || len(rep.OriginalRcptTo) != 1 || rep.OriginalRcptTo[0] != "<user@example.com>" ||
		rep.SourceIP != "192.0.2.1" || rep.ReportingMTA == nil || rep.ReportingMTA.Name != "mail.example.com" ||
		len(rep.ReportedDomain) != 1 || len(rep.ReportedURI) != 1 || len(rep.AuthenticationResults) != 1 ||
		rep.Extensions["x-custom"][0] != "extra" || rep.ArrivalDate == "" {
		t.Errorf("%+v", rep)
	}
	trace, ok := rep.SupplementalTrace.(map[string]any)
	if !ok || trace["recipient"] != "recip@example.com" || len(trace) != 1 {
		t.Errorf("supplemental_trace %#v", rep.SupplementalTrace)
	}
	if rep, err := ParseARF(sampleDSN); rep != nil || err != nil {
		t.Errorf("a DSN is not an ARF report: %v %v", rep, err)
	}
	if rep, err := ParseARF(bytes.Replace(sampleARF, []byte("Feedback-Type: abuse"), nil, 1)); rep != nil || !errors.Is(err, ErrMalformed) {
		t.Errorf("no Feedback-Type: %v %v", rep, err)
	}
}

// pyParse checks a report with Python's email package (an independent
// MIME parser): the content types of the parts, in order.
const pyParse = `
import sys, email
m = email.message_from_bytes(sys.stdin.buffer.read())
print(m.get_content_type(), m.get_param("report-type"), m.is_multipart())
for p in m.walk():
    print(p.get_content_type())
ds = [p for p in m.walk() if p.get_content_type() == "message/delivery-status"][0]
for block in ds.get_payload():
    for k, v in block.items():
        print("F", k, v)
`

func TestGenerateParses(t *testing.T) {
	orig := crlf("From: sender@sender.example.com\nSubject: Hello!\n\nhello there\n")
	at := time.Date(2003, 7, 1, 8, 52, 37, 0, time.UTC)
	ev := Event{Type: "Bounce", Sender: "sender@sender.example.com", Recipient: "recip@target.example.com",
		Code: 550, Enhanced: &Status{Class: 5, Subject: 7, Detail: 1}, Content: "no thanks",
		PeerName: "target.example.com", PeerAddr: "42.42.42.42", DeliveryProtocol: "ESMTP", Created: at, Timestamp: at.Add(2 * time.Hour)}
	p := GenerateParams{IncludeOriginalMessage: "FullContent", EnableBounce: true, ReportingMTA: RemoteMTA{"dns", "mta1.example.com"}, StableContent: true}
	g := Generate(p, ev, orig)
	if g == nil || g.Recipient != "sender@sender.example.com" || g.Sender != "" {
		t.Fatalf("%+v", g)
	}
	for _, want := range []string{"Subject: Returned mail\r\n", "Message-ID: <UUID@mta1.example.com>\r\n",
		"From: Mail Delivery Subsystem <mailer-daemon@mta1.example.com>\r\n",
		"The message was received at Tue, 01 Jul 2003 08:52:37 +0000\r\nfrom sender@sender.example.com and addressed to recip@target.example.com.\r\n",
		"While communicating with target.example.com (42.42.42.42):\r\nResponse: 550 5.7.1 no thanks\r\n",
		"Diagnostic-Code: smtp; 550 5.7.1 no thanks\r\n", "Content-Type: message/rfc822\r\n\r\nFrom: sender@sender.example.com\r\n"} {
		if !bytes.Contains(g.Data, []byte(want)) {
			t.Errorf("report lacks %q:\n%s", want, g.Data)
		}
	}
	rep, err := ParseDSN(g.Data)
	if err != nil || rep == nil || rep.PerRecipient[0].Status != (Status{Class: 5, Subject: 7, Detail: 1}) ||
		rep.PerRecipient[0].RemoteMTA.Name != "target.example.com" || rep.PerMessage.ArrivalDate != "2003-07-01T08:52:37Z" {
		t.Fatalf("own parse: %+v %v", rep, err)
	}
	cmd := exec.Command("python3", "-c", pyParse)
	cmd.Stdin = bytes.NewReader(g.Data)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("python: %v\n%s", err, out)
	}
	for _, want := range []string{"multipart/report delivery-status True", "text/plain\nmessage/delivery-status", "message/rfc822",
		"F Final-Recipient rfc822;recip@target.example.com", "F Status 5.7.1", "F Action failed"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("python sees no %q:\n%s", want, out)
		}
	}

	// expirations with a long text are quoted-printable, headers only
	exp := ev
	exp.Type, exp.Code, exp.Enhanced = "Expiration", 551, &Status{Class: 5, Subject: 4, Detail: 7}
	exp.Content = "Next delivery time would be at SOME TIME which exceeds the expiry time EXPIRES configured via set_scheduling"
	p.EnableExpiration, p.IncludeOriginalMessage = true, "HeadersOnly"
	g = Generate(p, exp, orig)
	if g == nil || !bytes.Contains(g.Data, []byte("Content-Transfer-Encoding: quoted-printable")) ||
		!bytes.Contains(g.Data, []byte("Content-Type: text/rfc822-headers\r\n\r\nFrom: sender@sender.example.com\r\nSubject: Hello!\r\n--")) {
		t.Fatalf("expiration:\n%s", g.Data)
	}
	if rep, err := ParseDSN(g.Data); err != nil || rep.PerRecipient[0].DiagnosticCode.Diagnostic != "551 5.4.7 "+exp.Content {
		t.Fatalf("expiration parse: %+v %v", rep, err)
	}

	// nothing for disabled types, other protocols, or the null sender
	p.EnableBounce = false
	if Generate(p, ev, orig) != nil {
		t.Error("bounce report while disabled")
	}
	p.EnableBounce = true
	lua := ev
	lua.DeliveryProtocol = "Lua"
	null := ev
	null.Sender = ""
	if Generate(p, lua, orig) != nil || Generate(p, null, orig) != nil {
		t.Error("report for a Lua delivery or a null sender")
	}
}

func FuzzParseDSN(f *testing.F) {
	f.Add(sampleDSN)
	f.Add(sampleARF)
	f.Fuzz(func(t *testing.T, data []byte) {
		rep, err := ParseDSN(data)
		if rep != nil && (err != nil || len(rep.PerRecipient) == 0) {
			t.Fatalf("%+v %v", rep, err)
		}
		if err != nil && !errors.Is(err, ErrMalformed) {
			t.Fatalf("unclassified error %v", err)
		}
	})
}

func FuzzParseARF(f *testing.F) {
	f.Add(sampleARF)
	f.Add(sampleDSN)
	f.Fuzz(func(t *testing.T, data []byte) {
		rep, err := ParseARF(data)
		if rep != nil && (err != nil || rep.FeedbackType == "") {
			t.Fatalf("%+v %v", rep, err)
		}
		if err != nil && !errors.Is(err, ErrMalformed) {
			t.Fatalf("unclassified error %v", err)
		}
	})
}
