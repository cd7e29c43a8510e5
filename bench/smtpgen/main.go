// Command smtpgen is a small SMTP load generator for the sink scenario's
// BDAT runs (postfix's smtp-source speaks DATA only). Each of --conc
// connections pipelines MAIL, RCPT and either "BDAT <n> LAST" with the body
// or DATA and the dot-terminated body, reusing the connection for the next
// message, until --msgs messages have been accepted in total. It talks to
// loopback addresses only and prints one summary line on stdout:
//
//	sent=N failed=N secs=S rate=R msgs/s
//
// With --domains N the recipients spread over N domains round robin,
// rcpt@d<k>.<--zone> for message k mod N (bench/fakedns gives each its own
// MX); without it every message goes to rcpt@sink.localhost.
//
// Usage: smtpgen --target 127.0.0.1:2525 [--mode bdat|data] [--msgs 20000]
// [--size 102400] [--conc 50] [--per-conn 0] [--timeout 300s]
// [--domains N --zone bench.test]
// [--from sender@bench.localhost] [--dkim-key FILE [--dkim-selector bench]]
//
// --from sets the envelope sender and the From: header; --dkim-key (a PEM
// RSA or Ed25519 private key) DKIM-signs the message once, for the
// sender's domain, so that a receiver's verification has real work
// (bench/mailauth.sh).
package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

type config struct {
	target  string
	mode    string
	msgs    int64
	size    int
	conc    int
	perConn int
	ioWait  time.Duration
	domains int
	zone    string
	from    string
	dkimKey string
	dkimSel string
}

func main() {
	var c config
	flag.StringVar(&c.target, "target", "127.0.0.1:2525", "loopback server address host:port")
	flag.StringVar(&c.mode, "mode", "bdat", "body transfer: bdat (BDAT n LAST) or data (DATA ... CRLF.CRLF)")
	flag.Int64Var(&c.msgs, "msgs", 20000, "messages to send in total")
	flag.IntVar(&c.size, "size", 102400, "message size in bytes (headers and body)")
	flag.IntVar(&c.conc, "conc", 50, "parallel connections")
	flag.IntVar(&c.perConn, "per-conn", 0, "messages per connection before reconnecting (0: no limit)")
	timeout := flag.Duration("timeout", 300*time.Second, "give up after this long")
	flag.IntVar(&c.domains, "domains", 0, "spread the recipients over this many domains d<k>.<zone> (0: rcpt@sink.localhost)")
	flag.StringVar(&c.zone, "zone", "bench.test", "the parent domain of --domains")
	flag.DurationVar(&c.ioWait, "io-timeout", 30*time.Second, "bound on each network read and write")
	flag.StringVar(&c.from, "from", "sender@bench.localhost", "envelope sender and From: address")
	flag.StringVar(&c.dkimKey, "dkim-key", "", "PEM private key: DKIM-sign the message for the sender's domain")
	flag.StringVar(&c.dkimSel, "dkim-selector", "bench", "DKIM selector (with --dkim-key)")
	flag.Parse()

	if err := c.validate(); err != nil {
		fmt.Fprintln(os.Stderr, "smtpgen:", err)
		os.Exit(2)
	}
	body := makeMessage(c.size, c.from)
	if c.dkimKey != "" {
		signed, err := dkimSign(body, c.from, c.dkimSel, c.dkimKey)
		if err != nil {
			fmt.Fprintln(os.Stderr, "smtpgen:", err)
			os.Exit(2)
		}
		body = signed
	}
	var payload []byte
	switch c.mode {
	case "bdat":
		payload = []byte("MAIL FROM:<" + c.from + ">\r\nRCPT TO:<rcpt@sink.localhost>\r\nBDAT " +
			strconv.Itoa(len(body)) + " LAST\r\n" + body)
	case "data":
		// makeMessage never starts a line with ".", nor does a
		// DKIM-Signature header, so no dot-stuffing.
		payload = []byte("MAIL FROM:<" + c.from + ">\r\nRCPT TO:<rcpt@sink.localhost>\r\nDATA\r\n")
	}
	dataBody := []byte(body + ".\r\n")

	var (
		next   atomic.Int64 // messages claimed by workers
		sent   atomic.Int64
		failed atomic.Int64
		wg     sync.WaitGroup
		errMu  sync.Mutex
		errs   []error
	)
	deadline := time.Now().Add(*timeout)
	start := time.Now()
	for w := 0; w < c.conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A failing connection is retried a bounded number of times.
			for attempt := 0; attempt < 100 && time.Now().Before(deadline); attempt++ {
				err := c.session(&next, &sent, payload, dataBody, deadline)
				if err == nil {
					if next.Load() >= c.msgs {
						return
					}
					continue // per-conn limit reached: reconnect
				}
				failed.Add(1)
				errMu.Lock()
				if len(errs) < 5 {
					errs = append(errs, err)
				}
				errMu.Unlock()
				if next.Load() >= c.msgs {
					return
				}
			}
		}()
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	for _, err := range errs {
		fmt.Fprintln(os.Stderr, "smtpgen:", err)
	}
	n := sent.Load()
	fmt.Printf("sent=%d failed=%d secs=%.3f rate=%.0f msgs/s\n", n, failed.Load(), secs, float64(n)/secs)
	if n < c.msgs {
		os.Exit(1)
	}
}

func (c *config) validate() error {
	host, _, err := net.SplitHostPort(c.target)
	if err != nil {
		return err
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("target %q is not a loopback address", c.target)
	}
	if c.mode != "bdat" && c.mode != "data" {
		return fmt.Errorf("unknown --mode %q", c.mode)
	}
	if at := strings.LastIndexByte(c.from, '@'); at <= 0 || at == len(c.from)-1 || strings.ContainsAny(c.from, "<> \r\n") {
		return fmt.Errorf("--from %q is not an address", c.from)
	}
	if c.msgs < 1 || c.msgs > 10_000_000 || c.size < 128 || c.size > 64<<20 || c.conc < 1 || c.conc > 20000 || c.perConn < 0 {
		return errors.New("--msgs, --size or --conc out of range")
	}
	return nil
}

// session runs one connection: it claims messages from next until the
// total or the per-connection limit is reached. A nil error means the
// connection ended cleanly with QUIT.
func (c *config) session(next, sent *atomic.Int64, payload, dataBody []byte, deadline time.Time) error {
	conn, err := net.DialTimeout("tcp", c.target, c.ioWait)
	if err != nil {
		return err
	}
	defer conn.Close()
	r := bufio.NewReaderSize(conn, 4096)
	bump := func() { _ = conn.SetDeadline(earliest(time.Now().Add(c.ioWait), deadline)) }
	bump()
	if err := expect(r, 220); err != nil {
		return fmt.Errorf("greeting: %w", err)
	}
	if _, err := io.WriteString(conn, "EHLO bench.localhost\r\n"); err != nil {
		return err
	}
	if err := expect(r, 250); err != nil {
		return fmt.Errorf("EHLO: %w", err)
	}
	for done := 0; c.perConn == 0 || done < c.perConn; done++ {
		k := next.Add(1)
		if k > c.msgs {
			break
		}
		bump()
		if c.domains > 0 {
			// the envelope names this message's domain; the rest of the
			// pipelined payload is shared
			const rcpt = "RCPT TO:<rcpt@sink.localhost>\r\n"
			tail := payload[bytes.Index(payload, []byte(rcpt))+len(rcpt):]
			env := "MAIL FROM:<" + c.from + ">\r\nRCPT TO:<rcpt@d" + strconv.FormatInt((k-1)%int64(c.domains), 10) + "." + c.zone + ">\r\n"
			bufs := net.Buffers{[]byte(env), tail}
			if _, err := bufs.WriteTo(conn); err != nil {
				return err
			}
		} else if _, err := conn.Write(payload); err != nil {
			return err
		}
		for i, step := range []string{"MAIL", "RCPT"} {
			if err := expect(r, 250); err != nil {
				return fmt.Errorf("%s (reply %d): %w", step, i+1, err)
			}
		}
		if c.mode == "data" {
			if err := expect(r, 354); err != nil {
				return fmt.Errorf("DATA: %w", err)
			}
			if _, err := conn.Write(dataBody); err != nil {
				return err
			}
		}
		if err := expect(r, 250); err != nil {
			return fmt.Errorf("end of message: %w", err)
		}
		sent.Add(1)
	}
	_, _ = io.WriteString(conn, "QUIT\r\n")
	_ = expect(r, 221)
	return nil
}

func earliest(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// expect reads one (possibly multi-line) reply and checks its code.
func expect(r *bufio.Reader, want int) error {
	for i := 0; i < 1000; i++ {
		line, err := r.ReadString('\n')
		if err != nil {
			return err
		}
		line = strings.TrimRight(line, "\r\n")
		if len(line) < 3 {
			return fmt.Errorf("malformed reply %q", line)
		}
		if len(line) > 3 && line[3] == '-' {
			continue
		}
		if code, _ := strconv.Atoi(line[:3]); code != want {
			return fmt.Errorf("got %q, want %d", line, want)
		}
		return nil
	}
	return errors.New("reply too long")
}

// makeMessage builds a message of exactly size bytes (before any DKIM
// signature): a few headers and 78-byte body lines (and a shorter last
// one) that never start with a dot, ending in CRLF.
func makeMessage(size int, from string) string {
	var b strings.Builder
	b.Grow(size)
	b.WriteString("From: <" + from + ">\r\nTo: <rcpt@sink.localhost>\r\nSubject: bench\r\n\r\n")
	line := strings.Repeat("0123456789abcdefghijklmnopqrstuvwxyz", 3)[:76] + "\r\n"
	for b.Len()+len(line)+2 <= size {
		b.WriteString(line)
	}
	// The last line takes the remaining 2..79 bytes (--size >= 128 leaves
	// at least 2 after the headers).
	b.WriteString(strings.Repeat("x", size-b.Len()-2) + "\r\n")
	return b.String()
}
