package smtpd

import "bytes"

// lineCheck holds a BDAT body to the line rules of a DATA body
// (line_length_hard_limit and invalid_line_endings, as bodyScan notes them
// for DATA) while its bytes arrive: bodyBuf.fill feeds it every read, so the
// bytes are checked while they are still in the cache, in the same pass that
// stores them, and no second pass over the whole body is needed at its end.
// A line may straddle reads and chunks; the state between feeds is the
// length of the line so far and whether its last byte was a CR.
//
// The rules: a line is the bytes before an LF; it must end in CR LF, and no
// other CR may appear in it (a CR not followed by LF is bare). Its length,
// without the CR LF (or the bare LF), must not exceed limit (0: no limit).
// The last line of a body, with no LF, is not a bare ending for want of one,
// but a CR in it, its last byte included, is bare.
type lineCheck struct {
	on        bool // the body is a BDAT body (a DATA body has bodyScan)
	limit     int  // line_length_hard_limit (0: none)
	lineLen   int  // bytes of the current line seen so far
	prevCR    bool // the last byte fed was a CR
	tooLong   bool
	badEnding bool
}

// start turns the check on for a new body.
func (c *lineCheck) start(limit int) {
	*c = lineCheck{on: true, limit: limit}
}

// feed checks the next bytes of the body.
func (c *lineCheck) feed(b []byte) {
	if len(b) == 0 {
		return
	}
	if c.prevCR && b[0] != '\n' {
		c.badEnding = true // the CR that ended the last feed was bare
	}
	// Every CR of b must be followed by an LF: count the CRs at once
	// (bytes.Count of one byte is vectorised) and the CR LF pairs while
	// walking the lines, which the length check needs anyway.
	crs := 0
	if !c.badEnding {
		crs = bytes.Count(b, crByte)
	}
	pairs, limit, s := 0, c.limit, 0
	for {
		i := bytes.IndexByte(b[s:], '\n')
		if i < 0 {
			break
		}
		i += s
		n := c.lineLen + i - s // the line's bytes before its LF
		if i > 0 && b[i-1] == '\r' {
			n--
			pairs++
		} else if i == 0 && c.prevCR {
			n--
		} else {
			c.badEnding = true
		}
		if limit > 0 && n > limit {
			c.tooLong = true
		}
		c.lineLen, s = 0, i+1
	}
	c.lineLen += len(b) - s
	c.prevCR = b[len(b)-1] == '\r'
	if c.prevCR {
		crs-- // it is judged by the next feed, or by finish
	}
	if crs > pairs {
		c.badEnding = true
	}
}

var crByte = []byte{'\r'}

// finish ends the body and reports what the lines broke.
func (c *lineCheck) finish() (tooLong, badEnding bool) {
	if c.prevCR {
		c.badEnding = true // a CR ends the body
	}
	if c.limit > 0 && c.lineLen > c.limit {
		c.tooLong = true // the last line, without a line ending
	}
	return c.tooLong, c.badEnding
}
