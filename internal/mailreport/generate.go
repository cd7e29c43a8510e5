package mailreport

import (
	"bytes"
	"fmt"
	"mime/quotedprintable"
	"strings"
	"time"

	"github.com/google/uuid"
)

// GenerateParams are the PARAMS of kumo.generate_rfc3464_message.
type GenerateParams struct {
	// IncludeOriginalMessage is "FullContent", "HeadersOnly" or "No".
	IncludeOriginalMessage string
	EnableExpiration       bool
	EnableBounce           bool
	ReportingMTA           RemoteMTA
	// StableContent fixes the Message-ID and the boundary (tests).
	StableContent bool
}

// Event is what the report is about: the fields of a Bounce or
// Expiration log record that the report uses.
type Event struct {
	Type             string // "Bounce", "Expiration"
	Sender           string
	Recipient        string
	Code             int
	Enhanced         *Status
	Content          string
	PeerName         string
	PeerAddr         string
	DeliveryProtocol string
	Created          time.Time // arrival
	Timestamp        time.Time // last attempt
}

// Generated is a report message and its envelope.
type Generated struct {
	Sender    string // "" (the null sender)
	Recipient string
	Data      []byte
}

// Generate builds an RFC 3464 non-delivery report for ev, or returns nil
// when none is due: the record type is not enabled, a Bounce was not an
// ESMTP delivery, or the message had the null sender (a report is never
// sent about a report).
func Generate(p GenerateParams, ev Event, orig []byte) *Generated {
	switch {
	case ev.Type == "Bounce" && p.EnableBounce && ev.DeliveryProtocol == "ESMTP":
	case ev.Type == "Expiration" && p.EnableExpiration:
	default:
		return nil
	}
	if ev.Sender == "" || !strings.Contains(ev.Sender, "@") {
		return nil
	}
	boundary, msgID := "report-boundary", "<"+uuid.NewString()+"@"+p.ReportingMTA.Name+">"
	if p.StableContent {
		msgID = "<UUID@" + p.ReportingMTA.Name + ">"
	} else {
		boundary = "report-" + strings.ReplaceAll(uuid.NewString(), "-", "")
	}
	st := ev.Enhanced
	if st == nil {
		class := ev.Code / 100
		if class != 4 && class != 5 {
			class = 5
		}
		st = &Status{Class: class}
	}
	statusCode := fmt.Sprintf("%d.%d.%d", st.Class, st.Subject, st.Detail)
	response := fmt.Sprintf("%d %s %s", ev.Code, statusCode, ev.Content)
	if ev.Enhanced == nil {
		response = fmt.Sprintf("%d %s", ev.Code, ev.Content)
	}
	arrival := ev.Created.UTC().Format(time.RFC1123Z)

	var text strings.Builder
	fmt.Fprintf(&text, "The message was received at %s\r\nfrom %s and addressed to %s.\r\n", arrival, ev.Sender, ev.Recipient)
	if ev.Type == "Bounce" && ev.PeerName != "" {
		fmt.Fprintf(&text, "While communicating with %s (%s):\r\nResponse: %s\r\n", ev.PeerName, ev.PeerAddr, response)
	} else {
		fmt.Fprintf(&text, "Status: %s\r\n", response)
	}
	text.WriteString("\r\nThe message will be deleted from the queue.\r\nNo further attempts will be made to deliver it.\r\n")

	var ds strings.Builder
	fmt.Fprintf(&ds, "Reporting-MTA: %s; %s\r\nArrival-Date: %s\r\n\r\n", p.ReportingMTA.MTAType, p.ReportingMTA.Name, arrival)
	fmt.Fprintf(&ds, "Final-Recipient: rfc822;%s\r\nAction: failed\r\nStatus: %s\r\n", ev.Recipient, statusCode)
	if ev.Type == "Bounce" && ev.PeerName != "" {
		fmt.Fprintf(&ds, "Remote-MTA: dns; %s\r\n", ev.PeerName)
	}
	fmt.Fprintf(&ds, "Diagnostic-Code: smtp; %s\r\nLast-Attempt-Date: %s\r\n", response, ev.Timestamp.UTC().Format(time.RFC1123Z))

	var b bytes.Buffer
	fmt.Fprintf(&b, "Content-Type: multipart/report;\r\n  boundary=\"%s\";\r\n  report-type=\"delivery-status\"\r\n", boundary)
	b.WriteString("Subject: Returned mail\r\nMime-Version: 1.0\r\n")
	fmt.Fprintf(&b, "Message-ID: %s\r\n", msgID)
	if !p.StableContent {
		fmt.Fprintf(&b, "Date: %s\r\n", ev.Timestamp.UTC().Format(time.RFC1123Z))
	}
	fmt.Fprintf(&b, "To: %s\r\nFrom: Mail Delivery Subsystem <mailer-daemon@%s>\r\n\r\n", ev.Sender, p.ReportingMTA.Name)
	writePart(&b, boundary, "text/plain;\r\n  charset=\"us-ascii\"", text.String())
	writePart(&b, boundary, "message/delivery-status;\r\n  charset=\"us-ascii\"", ds.String())
	switch p.IncludeOriginalMessage {
	case "FullContent":
		if len(orig) > 0 {
			fmt.Fprintf(&b, "--%s\r\nContent-Type: message/rfc822\r\n\r\n", boundary)
			b.Write(orig)
			if !bytes.HasSuffix(orig, []byte("\r\n")) {
				b.WriteString("\r\n")
			}
		}
	case "HeadersOnly":
		if len(orig) > 0 {
			head := orig
			if i := bytes.Index(orig, []byte("\r\n\r\n")); i >= 0 {
				head = orig[:i+2]
			}
			fmt.Fprintf(&b, "--%s\r\nContent-Type: text/rfc822-headers\r\n\r\n", boundary)
			b.Write(head)
		}
	}
	fmt.Fprintf(&b, "--%s--\r\n", boundary)
	return &Generated{Recipient: ev.Sender, Data: b.Bytes()}
}

// writePart writes one part, quoted-printable when a line is too long or
// not ASCII (as KumoMTA's sample expiration report shows).
func writePart(b *bytes.Buffer, boundary, ct, body string) {
	fmt.Fprintf(b, "--%s\r\nContent-Type: %s\r\n", boundary, ct)
	if !needsQP(body) {
		b.WriteString("\r\n")
		b.WriteString(body)
		return
	}
	b.WriteString("Content-Transfer-Encoding: quoted-printable\r\n\r\n")
	w := quotedprintable.NewWriter(b)
	w.Write([]byte(body))
	w.Close()
	if !bytes.HasSuffix(b.Bytes(), []byte("\r\n")) {
		b.WriteString("\r\n")
	}
}

func needsQP(s string) bool {
	for _, line := range strings.Split(s, "\r\n") {
		if len(line) > 76 {
			return true
		}
		for i := 0; i < len(line); i++ {
			if line[i] >= 0x80 {
				return true
			}
		}
	}
	return false
}
