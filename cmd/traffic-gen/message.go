package main

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"time"
)

// loremWords is the vocabulary of generated bodies.
var loremWords = []string{
	"lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit",
	"sed", "do", "eiusmod", "tempor", "incididunt", "ut", "labore", "et", "dolore",
	"magna", "aliqua", "enim", "ad", "minim", "veniam", "quis", "nostrud",
	"exercitation", "ullamco", "laboris", "nisi", "aliquip", "ex", "ea", "commodo",
	"consequat", "duis", "aute", "irure", "in", "reprehenderit", "voluptate",
	"velit", "esse", "cillum", "fugiat", "nulla", "pariatur", "excepteur", "sint",
	"occaecat", "cupidatat", "non", "proident", "sunt", "culpa", "qui", "officia",
	"deserunt", "mollit", "anim", "id", "est", "laborum", "integer", "vitae",
	"justo", "eget", "magna", "fermentum", "iaculis", "eu", "feugiat", "pretium",
}

// wrapCols is the line length of generated bodies.
const wrapCols = 78

// loremBody returns at least size bytes of lorem-style sentences wrapped at
// 78 columns, with CRLF line endings and a final CRLF. The text is the same
// for the same size.
func loremBody(size int) []byte {
	rng := rand.New(rand.NewPCG(0x6b756d6f, uint64(size)))
	out := make([]byte, 0, size+2*wrapCols)
	line := make([]byte, 0, wrapCols+16)
	sentence := 0 // words left in the current sentence
	for len(out)+len(line) < size {
		w := loremWords[rng.IntN(len(loremWords))]
		word := []byte(w)
		if sentence == 0 {
			sentence = 6 + rng.IntN(10)
			word[0] -= 'a' - 'A'
		}
		sentence--
		if sentence == 0 {
			word = append(word, '.')
		} else if rng.IntN(12) == 0 {
			word = append(word, ',')
		}
		if len(line) > 0 && len(line)+1+len(word) > wrapCols {
			out = append(append(out, line...), '\r', '\n')
			line = line[:0]
		}
		if len(line) > 0 {
			line = append(line, ' ')
		}
		line = append(line, word...)
	}
	if len(line) > 0 {
		out = append(append(out, line...), '\r', '\n')
	}
	return out
}

// canonicalCRLF turns bare LF and bare CR line endings into CRLF and makes
// sure the text ends with CRLF.
func canonicalCRLF(b []byte) []byte {
	out := make([]byte, 0, len(b)+len(b)/32+2)
	for i := 0; i < len(b); i++ {
		switch c := b[i]; c {
		case '\r':
			out = append(out, '\r', '\n')
			if i+1 < len(b) && b[i+1] == '\n' {
				i++
			}
		case '\n':
			out = append(out, '\r', '\n')
		default:
			out = append(out, c)
		}
	}
	if !bytes.HasSuffix(out, []byte("\r\n")) {
		out = append(out, '\r', '\n')
	}
	return out
}

// dotStuff doubles the leading '.' of every line of b (which ends with CRLF).
func dotStuff(b []byte) []byte {
	n := bytes.Count(b, []byte("\n."))
	if len(b) > 0 && b[0] == '.' {
		n++
	}
	if n == 0 {
		return b
	}
	out := make([]byte, 0, len(b)+n)
	atLineStart := true
	for _, c := range b {
		if atLineStart && c == '.' {
			out = append(out, '.')
		}
		out = append(out, c)
		atLineStart = c == '\n'
	}
	return out
}

// payload is everything about the messages that is the same for every
// client, rendered once: domains with their envelope and header pieces,
// the extra headers and the body (raw for BDAT, dot-stuffed for DATA).
type payload struct {
	domains    []renderedDomain
	cumWeights []uint64 // cumulative weights for the weighted pick
	total      uint64

	extraHeaders []byte // "Name: value\r\n"...
	// wholeMessage is set by --body-file: body is the whole message and no
	// headers are generated.
	wholeMessage bool
	body         []byte // ends with CRLF
	stuffedBody  []byte // body dot-stuffed for DATA (may alias body)
}

// renderedDomain is one destination domain with the suffix applied.
type renderedDomain struct {
	name     string // "gmail.com.mx-sink.wezfurlong.org"
	mailFrom []byte // "MAIL FROM:<noreply@NAME>\r\n"
	from     []byte // "From: noreply@NAME\r\n"
}

// newPayload renders the shared message parts of c.
func newPayload(c *config) (*payload, error) {
	p := &payload{}
	for _, d := range c.domains {
		name := d.name
		if c.domainSuffix != "" {
			name += "." + c.domainSuffix
		}
		p.domains = append(p.domains, renderedDomain{
			name:     name,
			mailFrom: []byte("MAIL FROM:<noreply@" + name + ">\r\n"),
			from:     []byte("From: noreply@" + name + "\r\n"),
		})
		p.total += uint64(d.weight)
		p.cumWeights = append(p.cumWeights, p.total)
	}
	for _, h := range c.headers {
		p.extraHeaders = append(append(p.extraHeaders, h...), '\r', '\n')
	}
	if c.bodyFile != "" {
		b, err := os.ReadFile(c.bodyFile)
		if err != nil {
			return nil, fmt.Errorf("--body-file: %w", err)
		}
		p.wholeMessage = true
		p.body = canonicalCRLF(b)
	} else {
		p.body = loremBody(c.bodySize)
	}
	p.stuffedBody = dotStuff(p.body)
	return p, nil
}

// pick returns a weighted-random domain.
func (p *payload) pick(rng *rand.Rand) *renderedDomain {
	if len(p.domains) == 1 {
		return &p.domains[0]
	}
	x := rng.Uint64N(p.total)
	for i, cw := range p.cumWeights {
		if x < cw {
			return &p.domains[i]
		}
	}
	return &p.domains[len(p.domains)-1]
}

// rfc2822Date is the date layout of the Subject header (day not padded).
const rfc2822Date = "Mon, 2 Jan 2006 15:04:05 -0700"

// messageBuilder renders the varying parts of each message for one client
// into reused buffers.
type messageBuilder struct {
	p   *payload
	rng *rand.Rand

	cmds []byte // envelope commands (and, for BDAT, the header block)
	hdr  []byte // header block for DATA

	dateSec  int64
	subject  []byte // "Subject: test <date>\r\n", refreshed once a second
	hexDigit [16]byte
}

func newMessageBuilder(p *payload, seed uint64) *messageBuilder {
	b := &messageBuilder{
		p:    p,
		rng:  rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		cmds: make([]byte, 0, 512),
		hdr:  make([]byte, 0, 512),
	}
	copy(b.hexDigit[:], "0123456789abcdef")
	return b
}

// ehloName returns a random generated domain for EHLO.
func (b *messageBuilder) ehloName() string { return b.p.pick(b.rng).name }

// build renders one transaction. With bdat the returned cmds end with
// "BDAT <n> LAST\r\n" followed by the header block, and the caller sends
// p.body after them; otherwise cmds end with "DATA\r\n" and the content is
// hdr followed by p.stuffedBody and ".\r\n". rset prefixes an RSET.
func (b *messageBuilder) build(now time.Time, rset, bdat bool) (cmds, hdr []byte) {
	sender := b.p.pick(b.rng)
	rcptDomain := b.p.pick(b.rng)
	c := b.cmds[:0]
	if rset {
		c = append(c, "RSET\r\n"...)
	}
	c = append(c, sender.mailFrom...)
	c = append(c, "RCPT TO:<user-"...)
	rcptStart := len(c) - len("user-")
	c = strconv.AppendUint(c, b.rng.Uint64(), 10)
	c = append(c, '@')
	c = append(c, rcptDomain.name...)
	rcpt := c[rcptStart:]
	c = append(c, ">\r\n"...)

	h := b.hdr[:0]
	if !b.p.wholeMessage {
		h = append(h, sender.from...)
		h = append(h, "To: "...)
		h = append(h, rcpt...)
		h = append(h, "\r\n"...)
		if s := now.Unix(); s != b.dateSec || b.subject == nil {
			b.dateSec = s
			b.subject = append(append(append(b.subject[:0], "Subject: test "...), now.Format(rfc2822Date)...), "\r\n"...)
		}
		h = append(h, b.subject...)
		h = append(h, "Message-Id: "...)
		h = b.appendUUID(h)
		h = append(h, "\r\nX-Mailer: KumoMta traffic-gen\r\n"...)
		h = append(h, b.p.extraHeaders...)
		h = append(h, "\r\n"...)
	}
	b.hdr = h
	if bdat {
		c = append(c, "BDAT "...)
		c = strconv.AppendInt(c, int64(len(h)+len(b.p.body)), 10)
		c = append(c, " LAST\r\n"...)
		c = append(c, h...)
	} else {
		c = append(c, "DATA\r\n"...)
	}
	b.cmds = c
	return c, h
}

// appendUUID appends a random (version 4) UUID as 32 hex digits.
func (b *messageBuilder) appendUUID(dst []byte) []byte {
	hi, lo := b.rng.Uint64(), b.rng.Uint64()
	hi = hi&^(0xf<<12) | 0x4<<12 // version 4
	lo = lo&^(0x3<<62) | 0x2<<62 // RFC 4122 variant
	for shift := 60; shift >= 0; shift -= 4 {
		dst = append(dst, b.hexDigit[hi>>uint(shift)&0xf])
	}
	for shift := 60; shift >= 0; shift -= 4 {
		dst = append(dst, b.hexDigit[lo>>uint(shift)&0xf])
	}
	return dst
}
