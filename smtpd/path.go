package smtpd

import "bytes"

// pathSyntaxOK reports whether the argument of MAIL (kw "FROM:") or RCPT
// (kw "TO:", forward) is one that go-smtp's parser takes (parse.go of
// github.com/emersion/go-smtp: parseReversePath, parseForwardPath). The
// command loop checks it before forwarding the command, so that a path
// go-smtp would refuse gets KumoMTA's reply (Invalid sender / recipient
// address syntax) from the session rather than go-smtp's text. What go-smtp
// takes is then judged by message.ParseAddress in Mail and Rcpt. It
// allocates nothing.
func pathSyntaxOK(arg []byte, kw string, forward bool) bool {
	if len(arg) < len(kw) || !bytes.EqualFold(arg[:len(kw)], []byte(kw)) {
		return false
	}
	p := bytes.TrimSpace(arg[len(kw):])
	if !forward && bytes.HasPrefix(p, []byte("<>")) {
		return true
	}
	const postmaster = "<postmaster>"
	if forward && len(p) >= len(postmaster) && bytes.EqualFold(p[:len(postmaster)], []byte(postmaster)) {
		return true
	}
	bracket := len(p) > 0 && p[0] == '<'
	if bracket {
		p = p[1:]
	}
	if len(p) > 0 && p[0] == '@' { // a source route, "@a,@b:"
		i := bytes.IndexByte(p, ':')
		if i < 0 {
			return false
		}
		p = p[i+1:]
	}
	// local part: a quoted string or a dot-string, not empty
	local := 0
	if len(p) > 0 && p[0] == '"' {
		p = p[1:]
		for {
			if len(p) == 0 {
				return false
			}
			c := p[0]
			p = p[1:]
			if c == '"' {
				break
			}
			if c == '\\' {
				if len(p) == 0 {
					return false
				}
				p = p[1:]
			}
			local++
		}
	} else {
		for len(p) > 0 && p[0] != '@' {
			switch p[0] {
			case '(', ')', '<', '>', '[', ']', ':', ';', '\\', ',', '"', ' ', '\t':
				return false
			}
			p = p[1:]
			local++
		}
	}
	if local == 0 || len(p) == 0 || p[0] != '@' {
		return false
	}
	p = p[1:]
	domain := 0
	var lastc byte
	for len(p) > 0 && p[0] != ' ' && p[0] != '\t' && p[0] != '>' {
		lastc = p[0]
		p = p[1:]
		domain++
	}
	if domain == 0 || lastc == '@' { // go-smtp: the mailbox must not end in "@"
		return false
	}
	return !bracket || len(p) > 0 && p[0] == '>'
}
