package httpapi

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"net/textproto"
	"sort"
	"strings"
	"time"
)

// builtContent is the rendered structured content for one recipient.
type builtContent struct {
	subject, text, html, amp string
	from, replyTo            *mailbox
	headers                  map[string]string
	attachments              []attachment
}

// compose builds an RFC 5322 message from structured content, as
// KumoMTA's inject API does: From, Reply-To, To (the recipient, unless
// the headers supply one), Subject, Date, Message-ID, MIME-Version and the
// extra headers, then a text/plain, text/html (and AMP) alternative,
// wrapped in multipart/mixed when there are attachments.
func compose(c *builtContent, to mailbox, hostname string, now time.Time) ([]byte, error) {
	var b bytes.Buffer
	has := map[string]bool{}
	for k := range c.headers {
		has[strings.ToLower(k)] = true
	}
	hdr := func(name, value string) {
		fmt.Fprintf(&b, "%s: %s\r\n", name, value)
	}
	if c.from != nil && !has["from"] {
		hdr("From", c.from.format())
	}
	if c.replyTo != nil && !has["reply-to"] {
		hdr("Reply-To", c.replyTo.format())
	}
	if !has["to"] {
		hdr("To", to.format())
	}
	if c.subject != "" && !has["subject"] {
		hdr("Subject", mime.QEncoding.Encode("utf-8", c.subject))
	}
	if !has["date"] {
		hdr("Date", now.Format(time.RFC1123Z))
	}
	if !has["message-id"] {
		var r [16]byte
		rand.Read(r[:])
		hdr("Message-ID", "<"+hex.EncodeToString(r[:])+"@"+hostname+">")
	}
	hdr("MIME-Version", "1.0")
	names := make([]string, 0, len(c.headers))
	for k := range c.headers {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		if strings.ContainsAny(k, ":\r\n ") || strings.ContainsAny(c.headers[k], "\r\n") {
			return nil, fmt.Errorf("invalid header %q", k)
		}
		hdr(k, mime.QEncoding.Encode("utf-8", c.headers[k]))
	}

	var parts []part
	if c.text != "" {
		parts = append(parts, textPart("text/plain", c.text))
	}
	if c.html != "" {
		parts = append(parts, textPart("text/html", c.html))
	}
	if c.amp != "" {
		parts = append(parts, textPart("text/x-amp-html", c.amp))
	}
	if len(parts) == 0 {
		parts = append(parts, textPart("text/plain", ""))
	}
	body := parts[0]
	if len(parts) > 1 {
		body = multipartOf("multipart/alternative", parts)
	}
	if len(c.attachments) > 0 {
		all := []part{body}
		for _, a := range c.attachments {
			p, err := attachmentPart(a)
			if err != nil {
				return nil, err
			}
			all = append(all, p)
		}
		body = multipartOf("multipart/mixed", all)
	}
	for _, k := range body.header.keys {
		hdr(k, body.header.m[k])
	}
	b.WriteString("\r\n")
	b.Write(body.body)
	return b.Bytes(), nil
}

// part is one MIME entity: its headers in order and its encoded body.
type part struct {
	header orderedHeader
	body   []byte
}

type orderedHeader struct {
	keys []string
	m    map[string]string
}

func (h *orderedHeader) set(k, v string) {
	if h.m == nil {
		h.m = map[string]string{}
	}
	if _, ok := h.m[k]; !ok {
		h.keys = append(h.keys, k)
	}
	h.m[k] = v
}

func textPart(ctype, text string) part {
	var p part
	p.header.set("Content-Type", ctype+"; charset=utf-8")
	p.header.set("Content-Transfer-Encoding", "quoted-printable")
	var b bytes.Buffer
	w := quotedprintable.NewWriter(&b)
	w.Write([]byte(crlf(text)))
	w.Close()
	p.body = b.Bytes()
	return p
}

func multipartOf(ctype string, parts []part) part {
	var b bytes.Buffer
	mw := multipart.NewWriter(&b)
	for _, p := range parts {
		h := textproto.MIMEHeader{}
		for _, k := range p.header.keys {
			h.Set(k, p.header.m[k])
		}
		w, _ := mw.CreatePart(h)
		w.Write(p.body)
	}
	mw.Close()
	var out part
	out.header.set("Content-Type", ctype+"; boundary=\""+mw.Boundary()+"\"")
	out.body = b.Bytes()
	return out
}

func attachmentPart(a attachment) (part, error) {
	data := []byte(a.Data)
	if a.Base64 {
		d, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(a.Data), ""))
		if err != nil {
			return part{}, fmt.Errorf("attachment %q: invalid base64 data: %v", a.FileName, err)
		}
		data = d
	}
	var p part
	ct := a.ContentType
	if ct == "" {
		ct = "application/octet-stream"
	}
	p.header.set("Content-Type", ct)
	p.header.set("Content-Transfer-Encoding", "base64")
	disp := "attachment"
	if a.ContentID != "" {
		disp = "inline"
		p.header.set("Content-ID", "<"+strings.Trim(a.ContentID, "<>")+">")
	}
	if a.FileName != "" {
		disp = mime.FormatMediaType(disp, map[string]string{"filename": a.FileName})
	}
	p.header.set("Content-Disposition", disp)
	enc := base64.StdEncoding.EncodeToString(data)
	var b bytes.Buffer
	for len(enc) > 76 {
		b.WriteString(enc[:76])
		b.WriteString("\r\n")
		enc = enc[76:]
	}
	b.WriteString(enc)
	b.WriteString("\r\n")
	p.body = b.Bytes()
	return p, nil
}

// crlf normalizes bare LF (and bare CR) line endings to CRLF. Content
// that already uses CRLF only, the usual case, is returned as it is
// without copying.
func crlf(s string) string {
	bare := false
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\r':
			if i+1 < len(s) && s[i+1] == '\n' {
				i++
				continue
			}
			bare = true
		case '\n':
			bare = true
		}
		if bare {
			break
		}
	}
	if !bare {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + len(s)/32)
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\r':
			b.WriteString("\r\n")
			if i+1 < len(s) && s[i+1] == '\n' {
				i++
			}
		case '\n':
			b.WriteString("\r\n")
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// mailbox is a {email, name} pair of the request.
type mailbox struct {
	Email string `json:"email"`
	Name  string `json:"name,omitempty"`
}

func (m mailbox) format() string {
	if m.Name == "" {
		return m.Email
	}
	return (&mail.Address{Name: m.Name, Address: m.Email}).String()
}
