package message

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"strings"
	"time"
)

// receivedDateLayout is the RFC 2822 date form used in Received headers
// (two-digit day, numeric zone), as KumoMTA renders it.
const receivedDateLayout = "Mon, 02 Jan 2006 15:04:05 -0700"

// ReceivedValue returns the value of the Received header KumoMTA adds at
// SMTP reception:
//
//	from <ehlo> (<peer ip>)
//	  by <hostname> (KumoMTA <local ip>)
//	  with <proto>[ (<tls info>)] id <id> for <first recipient>;
//	  <RFC 2822 date>
//
// joined with CRLF and two spaces. proto is ESMTP, ESMTPS or ESMTPSA;
// tlsInfo is "" for a plain connection, otherwise "<version>:<cipher>" such
// as "TLSv1.3:TLS_AES_128_GCM_SHA256". when is rendered in its own location
// (pass a UTC time for KumoMTA's "+0000").
func ReceivedValue(ehlo, peerIP, hostname, localIP, proto, tlsInfo, id, firstRecipient string, when time.Time) string {
	var b strings.Builder
	b.Grow(160 + len(ehlo) + len(hostname) + len(firstRecipient))
	b.WriteString("from ")
	b.WriteString(ehlo)
	b.WriteString(" (")
	b.WriteString(peerIP)
	b.WriteString(")\r\n  by ")
	b.WriteString(hostname)
	b.WriteString(" (KumoMTA ")
	b.WriteString(localIP)
	b.WriteString(")\r\n  with ")
	b.WriteString(proto)
	if tlsInfo != "" {
		b.WriteString(" (")
		b.WriteString(tlsInfo)
		b.WriteByte(')')
	}
	b.WriteString(" id ")
	b.WriteString(id)
	b.WriteString(" for ")
	b.WriteString(firstRecipient)
	b.WriteString(";\r\n  ")
	var date [40]byte
	b.Write(when.AppendFormat(date[:0], receivedDateLayout))
	return b.String()
}

// supplementalFoldWidth is the number of base64 characters per line of the
// supplemental trace header.
const supplementalFoldWidth = 75

// SupplementalValue returns the value of the supplemental trace header
// (X-KumoRef by default): the base64 (standard alphabet, padded) of compact
// JSON with sorted keys holding "_@_" = `\_/`, "recipient" (a string for one
// recipient, an array for several) and the includeMeta entries, folded every
// 75 characters with CRLF and a tab.
func SupplementalValue(recipients []string, includeMeta map[string]any) string {
	obj := make(map[string]any, len(includeMeta)+2)
	for k, v := range includeMeta {
		obj[k] = v
	}
	obj["_@_"] = `\_/`
	if len(recipients) == 1 {
		obj["recipient"] = recipients[0]
	} else {
		r := recipients
		if r == nil {
			r = []string{}
		}
		obj["recipient"] = r
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(obj); err != nil {
		// only unsupported meta values can fail: fall back to the
		// recipient alone, which always encodes
		buf.Reset()
		_ = enc.Encode(map[string]any{"_@_": obj["_@_"], "recipient": obj["recipient"]})
	}
	js := bytes.TrimRight(buf.Bytes(), "\n")
	enc64 := base64.StdEncoding.EncodeToString(js)
	if len(enc64) <= supplementalFoldWidth {
		return enc64
	}
	var b strings.Builder
	b.Grow(len(enc64) + len(enc64)/supplementalFoldWidth*3)
	for i := 0; i < len(enc64); i += supplementalFoldWidth {
		if i > 0 {
			b.WriteString("\r\n\t")
		}
		b.WriteString(enc64[i:min(i+supplementalFoldWidth, len(enc64))])
	}
	return b.String()
}
