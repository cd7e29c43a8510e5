package mailauth

import (
	"sort"
	"strconv"
	"strings"
)

// FormatHeader is the value of an Authentication-Results header (RFC
// 8601) for servID and results, folded for prepending: each result on a
// continuation line, its reason beside it, then one line per property in
// name order (the layout of KumoMTA's add_authentication_results page).
// Continuation lines start with one space, so that the unfolded value
// (msg:get_first_named_header_value) reads "id; dkim=pass header.d=..."
// as KumoMTA's does.
// No results gives "servID; none".
func FormatHeader(servID string, results []Result) string {
	var b strings.Builder
	writeValue(&b, servID)
	if len(results) == 0 {
		b.WriteString("; none")
		return b.String()
	}
	for _, r := range results {
		b.WriteString(";\r\n ")
		writeValue(&b, r.Method)
		if r.MethodVersion != 0 {
			b.WriteByte('/')
			b.WriteString(strconv.Itoa(r.MethodVersion))
		}
		b.WriteByte('=')
		writeValue(&b, r.Result)
		if r.Reason != "" {
			b.WriteString(" reason=")
			writeValue(&b, r.Reason)
		}
		keys := make([]string, 0, len(r.Props))
		for k := range r.Props {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			b.WriteString("\r\n ")
			b.WriteString(k)
			b.WriteByte('=')
			writeValue(&b, r.Props[k])
		}
	}
	return b.String()
}

// writeValue writes v as a MIME token when it is one ('@' allowed, as in
// RFC 8601's pvalue), else as a quoted string.
func writeValue(b *strings.Builder, v string) {
	if v != "" && strings.IndexFunc(v, func(c rune) bool { return !isTokenChar(c) && c != '@' }) < 0 {
		b.WriteString(v)
		return
	}
	b.WriteByte('"')
	for _, c := range v {
		if c == '"' || c == '\\' {
			b.WriteByte('\\')
		}
		if c == '\r' || c == '\n' {
			c = ' '
		}
		b.WriteRune(c)
	}
	b.WriteByte('"')
}

// isTokenChar: RFC 2045 token characters (no space, controls or tspecials).
func isTokenChar(c rune) bool {
	if c <= ' ' || c >= 0x7f {
		return false
	}
	return !strings.ContainsRune(`()<>@,;:\"/[]?=`, c)
}
