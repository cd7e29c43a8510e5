package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// peer is a scripted SMTP server on loopback. Its hooks choose the reply
// to MAIL and RCPT by connection number and by message number (both
// counted from 1 over the whole run); "" means accept.
type peer struct {
	t          *testing.T
	ln         net.Listener
	noPipe     bool
	noChunking bool
	onMail     func(conn, msg int) string
	onRcpt     func(conn, msg int) string

	mu       sync.Mutex
	conns    int
	mails    int
	messages []peerMessage
	cmds     []string // every command line seen, in order
	wg       sync.WaitGroup
}

// peerMessage is one accepted message.
type peerMessage struct {
	from, to string
	content  []byte // after dot-unstuffing; exactly the BDAT bytes
	bdat     bool
}

func startPeer(t *testing.T, configure func(*peer)) *peer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &peer{t: t, ln: ln}
	if configure != nil {
		configure(p)
	}
	p.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			p.conns++
			n := p.conns
			p.mu.Unlock()
			p.wg.Go(func() { p.serve(c, n) })
		}
	})
	t.Cleanup(func() { ln.Close(); p.wg.Wait() })
	return p
}

func (p *peer) addr() string { return p.ln.Addr().String() }

func (p *peer) serve(c net.Conn, connNo int) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	r := bufio.NewReader(c)
	w := bufio.NewWriter(c)
	reply := func(s string) {
		w.WriteString(s + "\r\n")
		// flush only when the client has nothing more buffered for us
		if r.Buffered() == 0 {
			w.Flush()
		}
	}
	reply("220 peer.test ESMTP")
	var msg peerMessage
	haveMail := false
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		p.mu.Lock()
		p.cmds = append(p.cmds, line)
		p.mu.Unlock()
		verb, arg, _ := strings.Cut(line, " ")
		switch strings.ToUpper(verb) {
		case "EHLO":
			exts := []string{"250-peer.test hello " + arg}
			if !p.noPipe {
				exts = append(exts, "250-PIPELINING")
			}
			if !p.noChunking {
				exts = append(exts, "250-CHUNKING")
			}
			reply(strings.Join(append(exts, "250 8BITMIME"), "\r\n"))
		case "RSET":
			haveMail, msg = false, peerMessage{}
			reply("250 reset")
		case "MAIL":
			p.mu.Lock()
			p.mails++
			n := p.mails
			p.mu.Unlock()
			if p.onMail != nil {
				if resp := p.onMail(connNo, n); resp != "" {
					reply(resp)
					w.Flush()
					if strings.HasPrefix(resp, "421") {
						return
					}
					continue
				}
			}
			msg = peerMessage{from: strings.TrimSuffix(strings.TrimPrefix(arg, "FROM:<"), ">")}
			haveMail = true
			reply("250 ok")
		case "RCPT":
			if !haveMail {
				reply("503 5.5.1 need MAIL")
				continue
			}
			if p.onRcpt != nil {
				p.mu.Lock()
				n := p.mails
				p.mu.Unlock()
				if resp := p.onRcpt(connNo, n); resp != "" {
					reply(resp)
					continue
				}
			}
			msg.to = strings.TrimSuffix(strings.TrimPrefix(arg, "TO:<"), ">")
			reply("250 ok")
		case "DATA":
			if msg.to == "" {
				reply("503 5.5.1 need RCPT")
				continue
			}
			reply("354 go on")
			w.Flush()
			var content bytes.Buffer
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					break
				}
				content.WriteString(strings.TrimPrefix(l, "."))
			}
			msg.content = content.Bytes()
			p.accept(msg)
			haveMail, msg = false, peerMessage{}
			reply("250 accepted")
		case "BDAT":
			fields := strings.Fields(arg)
			n, _ := strconv.Atoi(fields[0])
			buf := make([]byte, n)
			if _, err := io.ReadFull(r, buf); err != nil {
				return
			}
			if msg.to == "" || len(fields) < 2 {
				reply("503 5.5.1 bad sequence")
				haveMail, msg = false, peerMessage{}
				continue
			}
			msg.content, msg.bdat = buf, true
			p.accept(msg)
			haveMail, msg = false, peerMessage{}
			reply("250 accepted")
		case "QUIT":
			reply("221 bye")
			w.Flush()
			return
		default:
			reply("502 5.5.2 what")
		}
	}
}

func (p *peer) accept(m peerMessage) {
	p.mu.Lock()
	p.messages = append(p.messages, m)
	p.mu.Unlock()
}

func (p *peer) snapshot() (conns int, msgs []peerMessage, cmds []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.conns, append([]peerMessage(nil), p.messages...), append([]string(nil), p.cmds...)
}

func TestPeerReconnectsOn421And4533(t *testing.T) {
	for _, mode := range []string{"data", "bdat", "data-nopipe", "bdat-nopipe"} {
		t.Run(mode, func(t *testing.T) {
			p := startPeer(t, func(p *peer) {
				p.noPipe = strings.HasSuffix(mode, "nopipe")
				p.onMail = func(conn, msg int) string {
					switch conn {
					case 1:
						if msg == 2 {
							return "421 4.3.2 shutting down"
						}
					case 2:
						if msg == 4 {
							return "451 4.5.3 too many recipients on this connection"
						}
					}
					return ""
				}
			})
			args := []string{"--target", p.addr(), "--concurrency", "1", "--message-count", "6", "--duration", "20"}
			if strings.HasPrefix(mode, "bdat") {
				args = append(args, "--bdat")
			}
			r := runTG(t, args...)
			conns, msgs, _ := p.snapshot()
			if r.code != 0 {
				t.Fatalf("exit %d\n%s", r.code, r.stderr)
			}
			if r.summary.Sent != 6 || r.summary.Failed != 2 {
				t.Errorf("sent=%d failed=%d, want 6 and 2", r.summary.Sent, r.summary.Failed)
			}
			if len(msgs) != 6 {
				t.Errorf("peer got %d messages, want 6", len(msgs))
			}
			if conns != 3 {
				t.Errorf("%d connections, want 3 (first, after 421, after 451 4.5.3)", conns)
			}
			for _, m := range msgs {
				if m.bdat != strings.HasPrefix(mode, "bdat") {
					t.Errorf("message sent with bdat=%v in mode %s", m.bdat, mode)
				}
			}
		})
	}
}

func TestPeerReconnectsOnTimeout(t *testing.T) {
	p := startPeer(t, func(p *peer) {
		p.onMail = func(conn, msg int) string {
			if conn == 1 && msg == 2 {
				time.Sleep(1500 * time.Millisecond) // no reply in time
			}
			return ""
		}
	})
	r := runTG(t, "--target", p.addr(), "--concurrency", "1", "--message-count", "4", "--timeout", "0.3", "--duration", "20")
	conns, msgs, _ := p.snapshot()
	if r.code != 0 || r.summary.Sent != 4 || r.summary.Failed != 1 {
		t.Fatalf("exit %d sent=%d failed=%d\n%s", r.code, r.summary.Sent, r.summary.Failed, r.stderr)
	}
	if conns != 2 || len(msgs) != 4 {
		t.Errorf("%d connections and %d messages, want 2 and 4", conns, len(msgs))
	}
}

func TestPeerKeepGoing(t *testing.T) {
	reject := func(conn, msg int) string {
		if msg%2 == 0 {
			return "550 5.1.1 no such user"
		}
		return ""
	}
	t.Run("stops", func(t *testing.T) {
		p := startPeer(t, func(p *peer) { p.onRcpt = reject })
		r := runTG(t, "--target", p.addr(), "--concurrency", "1", "--message-count", "5", "--duration", "20")
		_, msgs, _ := p.snapshot()
		if r.code != 1 {
			t.Errorf("exit %d, want 1 (the only client stopped on an error)", r.code)
		}
		if r.summary.Sent != 1 || r.summary.Failed != 1 || len(msgs) != 1 {
			t.Errorf("sent=%d failed=%d peer=%d, want 1, 1, 1", r.summary.Sent, r.summary.Failed, len(msgs))
		}
		if !strings.Contains(r.stderr, "client 0 stopped: RCPT: 550 5.1.1 no such user") {
			t.Errorf("stderr lacks the error:\n%s", r.stderr)
		}
	})
	t.Run("keep-going-exact-count", func(t *testing.T) {
		p := startPeer(t, func(p *peer) {
			p.onRcpt = func(conn, msg int) string {
				if msg%3 == 0 {
					return "450 4.2.1 try later"
				}
				return ""
			}
		})
		r := runTG(t, "--target", p.addr(), "--concurrency", "4", "--message-count", "60", "--duration", "20", "--keep-going")
		_, msgs, _ := p.snapshot()
		if r.code != 0 || r.summary.Sent != 60 || len(msgs) != 60 || r.summary.Failed < 20 {
			t.Errorf("exit %d sent=%d failed=%d peer=%d, want 0, 60, >=20, 60\n%s", r.code, r.summary.Sent, r.summary.Failed, len(msgs), r.stderr)
		}
	})
	t.Run("keep-going", func(t *testing.T) {
		p := startPeer(t, func(p *peer) { p.onRcpt = reject })
		r := runTG(t, "--target", p.addr(), "--concurrency", "1", "--message-count", "5", "--duration", "20", "--keep-going")
		conns, msgs, cmds := p.snapshot()
		if r.code != 0 {
			t.Errorf("exit %d\n%s", r.code, r.stderr)
		}
		if r.summary.Sent != 5 || r.summary.Failed != 4 || len(msgs) != 5 {
			t.Errorf("sent=%d failed=%d peer=%d, want 5, 4, 5", r.summary.Sent, r.summary.Failed, len(msgs))
		}
		if conns != 1 {
			t.Errorf("%d connections: a 550 must not reconnect", conns)
		}
		// the failed transaction is reset before the next one
		rsets := 0
		for _, c := range cmds {
			if c == "RSET" {
				rsets++
			}
		}
		if rsets != 4 {
			t.Errorf("%d RSETs, want one after each of the 4 failures", rsets)
		}
	})
}

var (
	hdrRe       = regexp.MustCompile(`^From: noreply@(aol|gmail|hotmail|yahoo)\.com\.mx-sink\.wezfurlong\.org\r\nTo: (user-\d+@[a-z]+\.com\.mx-sink\.wezfurlong\.org)\r\nSubject: test (.+)\r\nMessage-Id: ([0-9a-f]{32})\r\nX-Mailer: KumoMta traffic-gen\r\nX-One: 1\r\nX-Two: two words\r\n\r\n`)
	envSenderRe = regexp.MustCompile(`^noreply@(aol|gmail|hotmail|yahoo)\.com\.mx-sink\.wezfurlong\.org$`)
)

func TestPeerMessageShape(t *testing.T) {
	for _, bdat := range []bool{false, true} {
		t.Run(fmt.Sprintf("bdat=%v", bdat), func(t *testing.T) {
			p := startPeer(t, nil)
			args := []string{"--target", p.addr(), "--concurrency", "2", "--message-count", "20", "--body-size", "5kb",
				"--header", "X-One: 1", "--header", "X-Two: two words"}
			if bdat {
				args = append(args, "--bdat")
			}
			r := runTG(t, args...)
			_, msgs, _ := p.snapshot()
			if r.code != 0 || len(msgs) != 20 {
				t.Fatalf("exit %d, %d messages\n%s", r.code, len(msgs), r.stderr)
			}
			ids := map[string]bool{}
			for _, m := range msgs {
				if !envSenderRe.MatchString(m.from) {
					t.Errorf("envelope sender %q", m.from)
				}
				sm := hdrRe.FindSubmatch(m.content)
				if sm == nil {
					t.Fatalf("header block:\n%q", m.content[:min(400, len(m.content))])
				}
				if "noreply@"+string(sm[1])+".com.mx-sink.wezfurlong.org" != m.from {
					t.Errorf("From header %s does not match envelope %s", sm[1], m.from)
				}
				if string(sm[2]) != m.to {
					t.Errorf("To header %s, envelope %s", sm[2], m.to)
				}
				if d, err := time.Parse(rfc2822Date, string(sm[3])); err != nil || time.Since(d) > time.Minute {
					t.Errorf("Subject date %q: %v", sm[3], err)
				}
				if sm[4][12] != '4' || ids[string(sm[4])] {
					t.Errorf("Message-Id %s not a fresh v4 UUID", sm[4])
				}
				ids[string(sm[4])] = true
				body := m.content[len(sm[0]):]
				if len(body) < 5000 || len(body) > 5000+80 {
					t.Errorf("body of %d bytes for --body-size 5kb", len(body))
				}
				checkLorem(t, body)
			}
		})
	}
}

// checkLorem checks CRLF-only lines of at most 78 columns and a final CRLF.
func checkLorem(t *testing.T, body []byte) {
	t.Helper()
	if !bytes.HasSuffix(body, []byte("\r\n")) {
		t.Errorf("body does not end with CRLF")
	}
	lines := bytes.Split(bytes.TrimSuffix(body, []byte("\r\n")), []byte("\r\n"))
	for _, l := range lines {
		if len(l) > wrapCols || len(l) == 0 || bytes.ContainsAny(l, "\r\n") {
			t.Fatalf("bad body line %q", l)
		}
	}
}

func TestPeerBodyFileAndDotStuffing(t *testing.T) {
	file := filepath.Join(t.TempDir(), "msg.eml")
	raw := "Subject: fixed\nFrom: a@b.test\n\n.leading dot\n..two dots\r\nmiddle\n.\nlast line without newline"
	if err := os.WriteFile(file, []byte(raw), 0o644); err != nil {
		t.Fatal(err)
	}
	want := "Subject: fixed\r\nFrom: a@b.test\r\n\r\n.leading dot\r\n..two dots\r\nmiddle\r\n.\r\nlast line without newline\r\n"
	for _, bdat := range []bool{false, true} {
		p := startPeer(t, nil)
		args := []string{"--target", p.addr(), "--concurrency", "1", "--message-count", "3", "--body-file", file}
		if bdat {
			args = append(args, "--bdat")
		}
		r := runTG(t, args...)
		_, msgs, _ := p.snapshot()
		if r.code != 0 || len(msgs) != 3 {
			t.Fatalf("bdat=%v: exit %d, %d messages\n%s", bdat, r.code, len(msgs), r.stderr)
		}
		for _, m := range msgs {
			if string(m.content) != want {
				t.Errorf("bdat=%v: content %q, want %q", bdat, m.content, want)
			}
		}
	}
}

func TestPeerDomainsAndSuffix(t *testing.T) {
	p := startPeer(t, nil)
	r := runTG(t, "--target", p.addr(), "--concurrency", "4", "--message-count", "2000",
		"--domain", "a.test:3", "--domain", "b.test", "--domain-suffix", "")
	_, msgs, cmds := p.snapshot()
	if r.code != 0 || len(msgs) != 2000 {
		t.Fatalf("exit %d, %d messages\n%s", r.code, len(msgs), r.stderr)
	}
	count := map[string]int{}
	for _, m := range msgs {
		_, d, _ := strings.Cut(m.to, "@")
		count[d]++
		if m.from != "noreply@a.test" && m.from != "noreply@b.test" {
			t.Fatalf("sender %q", m.from)
		}
	}
	if len(count) != 2 || count["a.test"] < 1350 || count["a.test"] > 1650 {
		t.Errorf("recipient domains %v, want about 3:1", count)
	}
	for _, c := range cmds {
		if strings.HasPrefix(c, "EHLO ") && c != "EHLO a.test" && c != "EHLO b.test" {
			t.Errorf("EHLO name %q is not a generated domain", c)
		}
	}
}

func TestPeerBDATNeedsChunking(t *testing.T) {
	p := startPeer(t, func(p *peer) { p.noChunking = true })
	r := runTG(t, "--target", p.addr(), "--concurrency", "1", "--message-count", "3", "--bdat")
	_, msgs, _ := p.snapshot()
	if r.code != 0 || len(msgs) != 3 {
		t.Fatalf("exit %d, %d messages\n%s", r.code, len(msgs), r.stderr)
	}
	for _, m := range msgs {
		if m.bdat {
			t.Errorf("BDAT used without CHUNKING")
		}
	}
}

func TestConnectionRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	start := time.Now()
	r := runTG(t, "--target", addr, "--concurrency", "3", "--duration", "10")
	if r.code != 1 || r.summary.Sent != 0 {
		t.Errorf("exit %d sent %d, want 1 and 0", r.code, r.summary.Sent)
	}
	if time.Since(start) > 3*time.Second {
		t.Errorf("gave up after %v; without --keep-going it should stop at once", time.Since(start))
	}
	if !strings.Contains(r.stderr, "connection refused") {
		t.Errorf("stderr:\n%s", r.stderr)
	}
}
