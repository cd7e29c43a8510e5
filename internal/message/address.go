package message

import (
	"errors"
	"strings"
	"unicode/utf8"
)

// Address is an envelope address (KumoMTA's EnvelopeAddress). The null
// reverse path has empty User and Domain.
type Address struct {
	// User is the local part with any quoting removed.
	User string
	// Domain is the domain part as given (not lower-cased).
	Domain string
}

// IsNull reports whether a is the null reverse path <>.
func (a Address) IsNull() bool { return a.User == "" && a.Domain == "" }

// String renders user@domain, or "" for the null sender.
func (a Address) String() string {
	if a.IsNull() {
		return ""
	}
	if a.Domain == "" {
		return a.User
	}
	return a.User + "@" + a.Domain
}

// AppendTo appends a.String() to b.
func (a Address) AppendTo(b []byte) []byte {
	b = append(b, a.User...)
	if a.Domain != "" {
		b = append(append(b, '@'), a.Domain...)
	}
	return b
}

// ErrBadAddress reports an address that is not a valid RFC 5321 mailbox.
var ErrBadAddress = errors.New("invalid address syntax")

// ParseAddress parses a mailbox such as `user@example.com`,
// `"info@"@example.com` or `user@[10.0.0.1]`, with or without angle
// brackets. The empty string (and `<>`) is the null sender. A port suffix on
// the domain is rejected, as are empty parts and invalid UTF-8.
func ParseAddress(s string) (Address, error) {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "<") && strings.HasSuffix(s, ">") {
		s = s[1 : len(s)-1]
	}
	if s == "" {
		return Address{}, nil
	}
	if !utf8.ValidString(s) {
		return Address{}, ErrBadAddress
	}
	var user, domain string
	if s[0] == '"' {
		// quoted local part: find the closing quote, honouring backslash escapes
		var b strings.Builder
		i := 1
		closed := false
		for ; i < len(s); i++ {
			c := s[i]
			if c == '\\' && i+1 < len(s) {
				i++
				b.WriteByte(s[i])
				continue
			}
			if c == '"' {
				closed = true
				i++
				break
			}
			b.WriteByte(c)
		}
		if !closed || i >= len(s) || s[i] != '@' {
			return Address{}, ErrBadAddress
		}
		user = b.String()
		domain = s[i+1:]
	} else {
		at := strings.LastIndexByte(s, '@')
		if at <= 0 {
			return Address{}, ErrBadAddress
		}
		user, domain = s[:at], s[at+1:]
		for i := 0; i < len(user); i++ {
			c := user[i]
			if c <= ' ' || c == '"' || c == '<' || c == '>' || c == '(' || c == ')' || c == ',' || c == ';' || c == ':' || c == '\\' || c == '[' || c == ']' || c == '@' || c == 0x7f {
				return Address{}, ErrBadAddress
			}
		}
		if strings.HasPrefix(user, ".") || strings.HasSuffix(user, ".") || strings.Contains(user, "..") {
			return Address{}, ErrBadAddress
		}
	}
	if !validDomain(domain) {
		return Address{}, ErrBadAddress
	}
	return Address{User: user, Domain: domain}, nil
}

func validDomain(d string) bool {
	if d == "" {
		return false
	}
	if d[0] == '[' {
		return d[len(d)-1] == ']' && len(d) > 2 && !strings.ContainsAny(d[1:len(d)-1], "[] ")
	}
	if len(d) > 255 {
		return false
	}
	for rest := d; ; {
		label := rest
		dot := strings.IndexByte(rest, '.')
		if dot >= 0 {
			label, rest = rest[:dot], rest[dot+1:]
		}
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if r < 0x80 && !(r == '-' || r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
				return false
			}
		}
		if dot < 0 {
			return true
		}
	}
}
