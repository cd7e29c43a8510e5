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
	b := make([]byte, 0, 160+len(ehlo)+len(hostname)+len(firstRecipient))
	b = appendReceivedHead(b, ehlo, peerIP, hostname, localIP, proto, tlsInfo)
	b = append(append(append(b, id...), " for "...), firstRecipient...)
	return string(appendReceivedTail(b, when))
}

// AppendReceived appends the whole Received header line that
// ReceivedValue describes for m (its id and first recipient), from
// "Received: " to the final CRLF, ready for PrependRaw.
func (m *Message) AppendReceived(b []byte, ehlo, peerIP, hostname, localIP, proto, tlsInfo string, when time.Time) []byte {
	b = appendReceivedHead(append(b, "Received: "...), ehlo, peerIP, hostname, localIP, proto, tlsInfo)
	b = append(m.AppendID(b), " for "...)
	if len(m.recipients) > 0 {
		b = m.recipients[0].AppendTo(b)
	}
	return append(appendReceivedTail(b, when), "\r\n"...)
}

// appendReceivedHead appends the Received value up to the id.
func appendReceivedHead(b []byte, ehlo, peerIP, hostname, localIP, proto, tlsInfo string) []byte {
	b = append(append(append(b, "from "...), ehlo...), " ("...)
	b = append(append(b, peerIP...), ")\r\n  by "...)
	b = append(append(b, hostname...), " (KumoMTA "...)
	b = append(append(b, localIP...), ")\r\n  with "...)
	b = append(b, proto...)
	if tlsInfo != "" {
		b = append(append(append(b, " ("...), tlsInfo...), ')')
	}
	return append(b, " id "...)
}

// appendReceivedTail appends the Received value after the recipient.
func appendReceivedTail(b []byte, when time.Time) []byte {
	return when.AppendFormat(append(b, ";\r\n  "...), receivedDateLayout)
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
