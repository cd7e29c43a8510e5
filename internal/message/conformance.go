package message

import (
	"bytes"
	"fmt"
	"strings"
	"time"
)

// Conformance is a set of RFC 5322 conformance issues, with KumoMTA's
// labels (msg:check_fix_conformance).
type Conformance uint16

// The issues.
const (
	MissingColonValue Conformance = 1 << iota
	NonCanonicalLineEndings
	NameEndsWithSpace
	LineTooLong
	NeedsTransferEncoding
	MissingDateHeader
	MissingMessageIDHeader
	MissingMIMEVersion
)

var conformanceNames = [...]string{
	"MISSING_COLON_VALUE", "NON_CANONICAL_LINE_ENDINGS", "NAME_ENDS_WITH_SPACE",
	"LINE_TOO_LONG", "NEEDS_TRANSFER_ENCODING", "MISSING_DATE_HEADER",
	"MISSING_MESSAGE_ID_HEADER", "MISSING_MIME_VERSION",
}

// ParseConformance reads labels separated by '|' (spaces allowed); ""
// is the empty set.
func ParseConformance(s string) (Conformance, error) {
	var c Conformance
	for _, f := range strings.Split(s, "|") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		found := false
		for i, n := range conformanceNames {
			if strings.EqualFold(f, n) {
				c |= 1 << i
				found = true
				break
			}
		}
		if !found {
			return 0, fmt.Errorf("unknown conformance issue %q (want one of %s)", f, strings.Join(conformanceNames[:], ", "))
		}
	}
	return c, nil
}

// String renders the labels joined by " | ".
func (c Conformance) String() string {
	var out []string
	for i, n := range conformanceNames {
		if c&(1<<i) != 0 {
			out = append(out, n)
		}
	}
	return strings.Join(out, " | ")
}

// maxLineLength is RFC 5322's limit, without the CRLF.
const maxLineLength = 998

// CheckConformance reports the issues of the message data.
func (m *Message) CheckConformance() Conformance {
	data := m.Data()
	var c Conformance
	inHeader := true
	for start := 0; start < len(data); {
		end := bytes.IndexByte(data[start:], '\n')
		next := len(data)
		if end >= 0 {
			end += start
			next = end + 1
		} else {
			end = len(data)
		}
		line := data[start:end]
		if end < len(data) && (len(line) == 0 || line[len(line)-1] != '\r') {
			c |= NonCanonicalLineEndings // bare LF
		}
		line = bytes.TrimSuffix(line, []byte("\r"))
		if bytes.IndexByte(line, '\r') >= 0 {
			c |= NonCanonicalLineEndings // bare CR
		}
		if len(line) > maxLineLength {
			c |= LineTooLong
		}
		for _, b := range line {
			if b >= 0x80 {
				c |= NeedsTransferEncoding
				break
			}
		}
		if inHeader {
			switch {
			case len(line) == 0:
				inHeader = false
			case line[0] == ' ' || line[0] == '\t':
				// continuation
			default:
				colon := bytes.IndexByte(line, ':')
				if colon < 0 {
					c |= MissingColonValue
				} else if colon > 0 && (line[colon-1] == ' ' || line[colon-1] == '\t') {
					c |= NameEndsWithSpace
				}
			}
		}
		start = next
	}
	if _, ok := m.FirstHeader("Date"); !ok {
		c |= MissingDateHeader
	}
	if _, ok := m.FirstHeader("Message-ID"); !ok {
		c |= MissingMessageIDHeader
	}
	if _, ok := m.FirstHeader("MIME-Version"); !ok {
		if _, mime := m.FirstHeader("Content-Type"); mime {
			c |= MissingMIMEVersion
		}
	}
	return c
}

// FixConformance repairs the issues in fix that can be repaired without
// re-encoding the content: line endings are made CRLF, whitespace before
// a header's colon is removed, and missing Date, Message-ID (from the
// spool id and hostname) and MIME-Version headers are added. The other
// issues stay.
func (m *Message) FixConformance(fix Conformance, now time.Time, hostname string) {
	have := m.CheckConformance()
	fix &= have
	if fix&NonCanonicalLineEndings != 0 {
		m.SetData(CanonicalLineEndings(m.Data()))
	}
	if fix&NameEndsWithSpace != 0 {
		m.SetData(trimHeaderNames(m.Data()))
	}
	if fix&MissingMIMEVersion != 0 {
		m.PrependHeader("MIME-Version", "1.0")
	}
	if fix&MissingMessageIDHeader != 0 {
		m.PrependHeader("Message-ID", "<"+m.ID()+"@"+hostname+">")
	}
	if fix&MissingDateHeader != 0 {
		m.PrependHeader("Date", now.Format(time.RFC1123Z))
	}
}

// CanonicalLineEndings turns bare LF and bare CR into CRLF (check_fix_conformance,
// and the listener's invalid_line_endings = "Fix").
func CanonicalLineEndings(data []byte) []byte {
	out := make([]byte, 0, len(data)+len(data)/32)
	for i := 0; i < len(data); i++ {
		switch c := data[i]; {
		case c == '\r' && i+1 < len(data) && data[i+1] == '\n':
			out = append(out, '\r', '\n')
			i++
		case c == '\r' || c == '\n':
			out = append(out, '\r', '\n')
		default:
			out = append(out, c)
		}
	}
	return out
}

// trimHeaderNames removes spaces and tabs between header names and their
// colons in the header block.
func trimHeaderNames(data []byte) []byte {
	end := headerBlockEnd(data)
	var out []byte
	for start := 0; start < end; {
		nl := bytes.IndexByte(data[start:end], '\n')
		next := end
		if nl >= 0 {
			next = start + nl + 1
		}
		line := data[start:next]
		if len(line) > 0 && line[0] != ' ' && line[0] != '\t' {
			if colon := bytes.IndexByte(line, ':'); colon > 0 {
				name := bytes.TrimRight(line[:colon], " \t")
				line = append(append(append([]byte(nil), name...), ':'), line[colon+1:]...)
			}
		}
		out = append(out, line...)
		start = next
	}
	return append(out, data[end:]...)
}
