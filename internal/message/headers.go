package message

import (
	"bytes"
	"iter"
	"mime"
	"strings"
)

// Header is one header field. Value is the unfolded raw value (not RFC 2047
// decoded) with the whitespace after the colon removed.
type Header struct{ Name, Value string }

// Header encoding limits used when encode=true: ASCII values are soft-wrapped
// on whitespace near softLineLimit columns; a run without whitespace is
// broken at hardLineLimit.
const (
	softLineLimit = 75
	hardLineLimit = 900
)

// headerField is one header field located in the data. start:end spans the
// whole field including continuation lines and its line ending; name and
// value alias the data; value is raw (still folded, line ending removed,
// leading whitespace trimmed).
type headerField struct {
	name, value []byte
	start, end  int
}

// headerScanner walks the header block of RFC 5322 data. It accepts CRLF and
// bare LF line endings. The header block ends at the first empty line (or
// at the end of the data when there is none). Lines in the header block
// that are neither fields nor continuations (no colon) are skipped.
type headerScanner struct {
	data []byte
	pos  int
	done bool
}

// lineEnd returns the index just past the line starting at i, and the index
// where its content ends (before CR LF / LF).
func lineEnd(data []byte, i int) (content, next int) {
	nl := bytes.IndexByte(data[i:], '\n')
	if nl < 0 {
		return len(data), len(data)
	}
	next = i + nl + 1
	content = i + nl
	if content > i && data[content-1] == '\r' {
		content--
	}
	return content, next
}

func isWSP(c byte) bool { return c == ' ' || c == '\t' }

// next returns the next field; ok is false at the end of the header block.
func (s *headerScanner) next() (f headerField, ok bool) {
	for !s.done {
		data := s.data
		i := s.pos
		if i >= len(data) {
			s.done = true
			return f, false
		}
		content, nxt := lineEnd(data, i)
		if content == i {
			// empty line: end of the header block
			s.done = true
			return f, false
		}
		// a continuation line without a preceding field: skip it
		if isWSP(data[i]) {
			s.pos = nxt
			continue
		}
		colon := bytes.IndexByte(data[i:content], ':')
		// extend over continuation lines
		end, vend := nxt, content
		for end < len(data) && isWSP(data[end]) {
			c, n := lineEnd(data, end)
			vend, end = c, n
		}
		s.pos = end
		if colon < 0 {
			continue
		}
		// the name without trailing blanks (a loop: bytes.TrimRight builds
		// a character set per call, and this runs for every field)
		ne := i + colon
		for ne > i && isWSP(data[ne-1]) {
			ne--
		}
		name := data[i:ne]
		vstart := i + colon + 1
		// trim leading whitespace, including a fold right after the colon
		for vstart < vend {
			c := data[vstart]
			if isWSP(c) || c == '\r' || c == '\n' {
				vstart++
				continue
			}
			break
		}
		if vstart > vend {
			vstart = vend
		}
		return headerField{name: name, value: data[vstart:vend], start: i, end: end}, true
	}
	return f, false
}

// headerBlockEnd returns the offset where the header block ends: the start
// of the empty separator line, or len(data) when there is none.
func headerBlockEnd(data []byte) int {
	s := headerScanner{data: data}
	for {
		if _, ok := s.next(); !ok {
			break
		}
	}
	if s.pos > len(data) {
		return len(data)
	}
	return s.pos
}

// equalFoldASCII reports whether b and s are equal under ASCII case folding.
func equalFoldASCII(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		x, y := b[i], s[i]
		if x == y {
			continue
		}
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

func isXHeader(name []byte) bool {
	return len(name) >= 2 && (name[0] == 'X' || name[0] == 'x') && name[1] == '-'
}

// unfold returns the raw value with every line break that precedes
// whitespace removed (CRLF+WSP becomes the WSP) and a trailing bare line
// break dropped.
func unfold(raw []byte) string {
	if bytes.IndexByte(raw, '\n') < 0 {
		return string(raw)
	}
	out := make([]byte, 0, len(raw))
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if c == '\r' && i+1 < len(raw) && raw[i+1] == '\n' {
			continue
		}
		if c == '\n' {
			continue
		}
		out = append(out, c)
	}
	return string(out)
}

// DecodeHeaderValue unfolds a raw header value and decodes RFC 2047 encoded
// words to UTF-8. When decoding fails the unfolded raw value is returned.
func DecodeHeaderValue(raw []byte) string {
	v := unfold(raw)
	if !strings.Contains(v, "=?") {
		return v
	}
	var dec mime.WordDecoder
	if d, err := dec.DecodeHeader(v); err == nil {
		return d
	}
	return v
}

// RawHeaders iterates over the header fields in order, yielding the field
// name and its raw value (folded, not decoded, leading whitespace trimmed).
// Both slices alias the message data and are only valid during the
// iteration step. It does not allocate.
func (m *Message) RawHeaders() iter.Seq2[[]byte, []byte] {
	return func(yield func(name, value []byte) bool) {
		s := headerScanner{data: m.Data()}
		for {
			f, ok := s.next()
			if !ok || !yield(f.name, f.value) {
				return
			}
		}
	}
}

// Headers returns all header fields in order with unfolded raw values.
func (m *Message) Headers() []Header {
	s := headerScanner{data: m.Data()}
	var out []Header
	for {
		f, ok := s.next()
		if !ok {
			return out
		}
		out = append(out, Header{Name: string(f.name), Value: unfold(f.value)})
	}
}

// FirstHeader returns the decoded value of the first field called name
// (case-insensitive).
func (m *Message) FirstHeader(name string) (string, bool) {
	s := headerScanner{data: m.Data()}
	for {
		f, ok := s.next()
		if !ok {
			return "", false
		}
		if equalFoldASCII(f.name, name) {
			return DecodeHeaderValue(f.value), true
		}
	}
}

// FirstHeaderRaw is FirstHeader's value before it is decoded: the raw
// bytes (a view of the message data, not to be kept or changed) that
// DecodeHeaderValue turns into FirstHeader's value. Callers that cache what
// they derive from a value use it to look the value up without copying it.
func (m *Message) FirstHeaderRaw(name string) ([]byte, bool) {
	s := headerScanner{data: m.Data()}
	for {
		f, ok := s.next()
		if !ok {
			return nil, false
		}
		if equalFoldASCII(f.name, name) {
			return f.value, true
		}
	}
}

// FirstHeadersRaw is FirstHeaderRaw for two names in one pass over the
// header block: a policy helper that reads two headers of every message
// (a tenant and a campaign header) scans it once. An empty name is not
// looked up.
func (m *Message) FirstHeadersRaw(a, b string) (va []byte, oka bool, vb []byte, okb bool) {
	s := headerScanner{data: m.Data()}
	oka, okb = a == "", b == ""
	for !oka || !okb {
		f, ok := s.next()
		if !ok {
			break
		}
		if !oka && equalFoldASCII(f.name, a) {
			va, oka = f.value, true
		}
		if !okb && equalFoldASCII(f.name, b) {
			vb, okb = f.value, true
		}
	}
	return va, oka && a != "", vb, okb && b != ""
}

// AllHeaderValues returns the decoded values of every field called name
// (case-insensitive), in order.
func (m *Message) AllHeaderValues(name string) []string {
	s := headerScanner{data: m.Data()}
	var out []string
	for {
		f, ok := s.next()
		if !ok {
			return out
		}
		if equalFoldASCII(f.name, name) {
			out = append(out, DecodeHeaderValue(f.value))
		}
	}
}

// formatHeader renders "Name: value\r\n", encoding value first when encode
// is set (see EncodeHeaderValue).
func formatHeader(name, value string, encode bool) []byte {
	if encode {
		value = EncodeHeaderValue(name, value)
	}
	b := make([]byte, 0, len(name)+len(value)+4)
	b = append(b, name...)
	b = append(b, ": "...)
	b = append(b, value...)
	b = append(b, "\r\n"...)
	return b
}

// EncodeHeaderValue prepares value for a field called name the way
// encode=true does in KumoMTA: line breaks in value become spaces; a value
// containing non-ASCII characters is RFC 2047 encoded with the "Q" encoding
// in UTF-8 (mime.QEncoding, which splits it into encoded words of at most
// 75 characters); then the value is folded with CRLF before whitespace so
// that lines stay near 75 columns (counting "Name: "), and any run longer
// than 900 columns without whitespace is hard-folded with CRLF+space.
func EncodeHeaderValue(name, value string) string {
	if strings.ContainsAny(value, "\r\n") {
		value = strings.NewReplacer("\r\n", " ", "\r", " ", "\n", " ").Replace(value)
	}
	ascii := true
	for i := 0; i < len(value); i++ {
		if value[i] >= 0x80 {
			ascii = false
			break
		}
	}
	if !ascii {
		value = mime.QEncoding.Encode("utf-8", value)
	}
	return foldValue(len(name)+2, value)
}

// foldValue folds value, which starts at column col, inserting CRLF before
// whitespace so that lines stay within softLineLimit columns where possible
// and breaking runs that reach hardLineLimit.
func foldValue(col int, value string) string {
	if col+len(value) <= softLineLimit {
		return value
	}
	var b strings.Builder
	b.Grow(len(value) + len(value)/softLineLimit*3 + 8)
	lineHasWord := false
	i := 0
	for i < len(value) {
		// the next token: leading whitespace plus a word
		j := i
		for j < len(value) && isWSP(value[j]) {
			j++
		}
		k := j
		for k < len(value) && !isWSP(value[k]) {
			k++
		}
		tok := value[i:k]
		switch {
		case lineHasWord && i < j && col+len(tok) > softLineLimit:
			b.WriteString("\r\n")
			col = 0
		case !lineHasWord && i == j && col+len(tok) > softLineLimit && len(tok) <= softLineLimit:
			// the first word does not fit after "Name: ": start it on
			// a continuation line
			b.WriteString("\r\n ")
			col = 1
		}
		for len(tok) > 0 {
			room := hardLineLimit - col
			if len(tok) <= room {
				b.WriteString(tok)
				col += len(tok)
				break
			}
			if room > 0 {
				b.WriteString(tok[:room])
				tok = tok[room:]
			}
			b.WriteString("\r\n ")
			col = 1
		}
		lineHasWord = true
		i = k
	}
	return b.String()
}

// insertAt returns a copy of the data with ins inserted at pos. The new
// buffer keeps Headroom spare bytes in front so later prepends are cheap.
// The old buffer is not modified (it may be shared).
func (m *Message) insertAt(pos int, ins ...[]byte) {
	data := m.Data()
	n := len(data)
	for _, b := range ins {
		n += len(b)
	}
	nb := make([]byte, Headroom, Headroom+n)
	nb = append(nb, data[:pos]...)
	for _, b := range ins {
		nb = append(nb, b...)
	}
	nb = append(nb, data[pos:]...)
	m.buf, m.off = nb, Headroom
}

// AppendHeader adds "Name: value" after the last header field, before the
// empty line that separates the body. A message without an empty line is
// all headers; the field is added at its end. value is used verbatim unless
// encode is set (see EncodeHeaderValue).
func (m *Message) AppendHeader(name, value string, encode bool) {
	data := m.Data()
	pos := headerBlockEnd(data)
	line := formatHeader(name, value, encode)
	if pos > 0 && data[pos-1] != '\n' {
		// all headers and the last line has no line ending
		m.insertAt(pos, []byte("\r\n"), line)
		return
	}
	m.insertAt(pos, line)
}

// PrependHeaderEncoded is PrependHeader with optional encoding of value
// (see EncodeHeaderValue).
func (m *Message) PrependHeaderEncoded(name, value string, encode bool) {
	if encode {
		value = EncodeHeaderValue(name, value)
	}
	m.PrependHeader(name, value)
}

// removeFields drops every header field for which drop returns true. The
// data is only rewritten (into a new buffer) when something is removed.
func (m *Message) removeFields(drop func(name []byte) bool) {
	data := m.Data()
	s := headerScanner{data: data}
	var spans [][2]int
	for {
		f, ok := s.next()
		if !ok {
			break
		}
		if drop(f.name) {
			spans = append(spans, [2]int{f.start, f.end})
		}
	}
	if len(spans) == 0 {
		return
	}
	n := len(data)
	for _, sp := range spans {
		n -= sp[1] - sp[0]
	}
	nb := make([]byte, Headroom, Headroom+n)
	prev := 0
	for _, sp := range spans {
		nb = append(nb, data[prev:sp[0]]...)
		prev = sp[1]
	}
	nb = append(nb, data[prev:]...)
	m.buf, m.off = nb, Headroom
}

// RemoveAllNamedHeaders removes every field called name (case-insensitive),
// including its continuation lines.
func (m *Message) RemoveAllNamedHeaders(name string) {
	m.removeFields(func(n []byte) bool { return equalFoldASCII(n, name) })
}

// matchNames reports whether name is X-* (names empty) or one of names
// (case-insensitive).
func matchNames(name []byte, names []string) bool {
	if len(names) == 0 {
		return isXHeader(name)
	}
	for _, n := range names {
		if equalFoldASCII(name, n) {
			return true
		}
	}
	return false
}

// xHeaderMetaKey turns a header name into a meta key: lower case with '-'
// replaced by '_' (X-Campaign-ID becomes x_campaign_id).
func xHeaderMetaKey(name []byte) string {
	b := make([]byte, len(name))
	for i, c := range name {
		switch {
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		case c == '-':
			c = '_'
		}
		b[i] = c
	}
	return string(b)
}

// ImportXHeaders copies header fields into the message meta: every X-*
// field when names is empty, otherwise the named fields (case-insensitive).
// The meta key is the field name in lower case with '-' replaced by '_';
// the value is the decoded field value; the last occurrence wins.
func (m *Message) ImportXHeaders(names []string) {
	s := headerScanner{data: m.Data()}
	for {
		f, ok := s.next()
		if !ok {
			return
		}
		if matchNames(f.name, names) {
			m.SetMeta(xHeaderMetaKey(f.name), DecodeHeaderValue(f.value))
		}
	}
}

// RemoveXHeaders removes every X-* field when names is empty, otherwise
// every field with one of the given names (case-insensitive).
func (m *Message) RemoveXHeaders(names []string) {
	m.removeFields(func(n []byte) bool { return matchNames(n, names) })
}
