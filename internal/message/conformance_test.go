package message

import (
	"strings"
	"testing"
	"time"
)

func TestConformance(t *testing.T) {
	gen := NewIDGenerator()
	msg := func(data string) *Message {
		return New(gen, Address{User: "a", Domain: "x"}, []Address{{User: "b", Domain: "y"}}, []byte(data))
	}
	good := "Date: Mon, 02 Jan 2006 15:04:05 +0000\r\nMessage-ID: <1@x>\r\nSubject: hi\r\n\r\nbody\r\n"
	for _, tc := range []struct {
		data string
		want Conformance
	}{
		{good, 0},
		{strings.ReplaceAll(good, "\r\n", "\n"), NonCanonicalLineEndings},
		{good + "bare\rcr\r\n", NonCanonicalLineEndings},
		{"Date: x\r\nMessage-ID: <1@x>\r\nno colon here\r\n\r\nbody\r\n", MissingColonValue},
		{"Date: x\r\nMessage-ID: <1@x>\r\nSubject : hi\r\n\r\nbody\r\n", NameEndsWithSpace},
		{good + strings.Repeat("x", 999) + "\r\n", LineTooLong},
		{good + "caf\xc3\xa9\r\n", NeedsTransferEncoding},
		{"Subject: hi\r\n\r\nbody\r\n", MissingDateHeader | MissingMessageIDHeader},
		{"Date: x\r\nMessage-ID: <1@x>\r\nContent-Type: text/plain\r\n\r\nbody\r\n", MissingMIMEVersion},
		{"Date: x\r\nMessage-ID: <1@x>\r\n\r\nno colon in the body is fine\r\n", 0},
	} {
		if got := msg(tc.data).CheckConformance(); got != tc.want {
			t.Errorf("%q: %v, want %v", tc.data, got, tc.want)
		}
	}

	c, err := ParseConformance(" MISSING_DATE_HEADER|non_canonical_line_endings ")
	if err != nil || c != MissingDateHeader|NonCanonicalLineEndings || c.String() != "NON_CANONICAL_LINE_ENDINGS | MISSING_DATE_HEADER" {
		t.Fatalf("parse: %v %v %q", c, err, c.String())
	}
	if _, err := ParseConformance("MISSING_DATE_HEADER|BOGUS"); err == nil {
		t.Fatal("unknown label accepted")
	}

	m := msg("Subject : hi\nContent-Type: text/plain\n\nbody\n")
	all, _ := ParseConformance("NON_CANONICAL_LINE_ENDINGS|NAME_ENDS_WITH_SPACE|MISSING_DATE_HEADER|MISSING_MESSAGE_ID_HEADER|MISSING_MIME_VERSION")
	m.FixConformance(all, time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC), "mx.test")
	if got := m.CheckConformance(); got != 0 {
		t.Fatalf("after fixing: %v in %q", got, m.Data())
	}
	d := string(m.Data())
	if !strings.Contains(d, "Date: Sat, 28 Nov 2026 12:00:00 +0000\r\n") || !strings.Contains(d, "Message-ID: <"+m.ID()+"@mx.test>\r\n") ||
		!strings.Contains(d, "MIME-Version: 1.0\r\n") || !strings.Contains(d, "Subject: hi\r\n") || !strings.HasSuffix(d, "\r\n\r\nbody\r\n") {
		t.Fatalf("fixed message %q", d)
	}
	// fixing only what was asked
	m = msg("Subject: hi\n\nbody\n")
	m.FixConformance(MissingDateHeader, time.Now(), "mx.test")
	if got := m.CheckConformance(); got != NonCanonicalLineEndings|MissingMessageIDHeader {
		t.Fatalf("partial fix left %v", got)
	}
}
