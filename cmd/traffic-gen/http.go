package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"
)

// httpInjector sends messages to POST /api/inject/v1: the same generated
// message as over SMTP (headers and body) as raw content, with
// --http-batch-size recipients per request.
type httpInjector struct {
	url    string
	client *http.Client
	// body is the message body, JSON-escaped once (without quotes).
	body []byte
}

func newHTTPInjector(cfg *config, p *payload) *httpInjector {
	esc, _ := json.Marshal(string(p.body))
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: cfg.timeout}).DialContext,
		MaxIdleConns:        cfg.concurrency,
		MaxIdleConnsPerHost: cfg.concurrency,
		IdleConnTimeout:     30 * time.Second,
		DisableCompression:  true,
		// like --starttls, an https target's certificate is not verified:
		// test listeners use self-signed ones
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
	}
	return &httpInjector{
		url:    cfg.target + "/api/inject/v1",
		client: &http.Client{Transport: tr, Timeout: cfg.timeout},
		body:   esc[1 : len(esc)-1],
	}
}

// injectError is a request that was not answered with every recipient
// accepted.
type injectError struct {
	status int
	body   string
}

func (e *injectError) Error() string { return fmt.Sprintf("inject: HTTP %d: %s", e.status, e.body) }

// request renders one request for n recipients into buf.
func (h *httpInjector) request(buf []byte, b *messageBuilder, cfg *config, n int, now time.Time) []byte {
	_, hdr := b.build(now, false, false)
	cmds := b.cmds
	// the builder's envelope: "MAIL FROM:<sender>\r\nRCPT TO:<rcpt>\r\n..."
	sender := between(cmds, "MAIL FROM:<", ">")
	rcpt := between(cmds, "RCPT TO:<", ">")
	buf = append(buf[:0], `{"envelope_sender":`...)
	buf = strconv.AppendQuote(buf, string(sender))
	buf = append(buf, `,"recipients":[`...)
	for i := 0; i < n; i++ {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, `{"email":`...)
		buf = strconv.AppendQuote(buf, string(rcpt))
		buf = append(buf, '}')
	}
	buf = append(buf, `],"content":"`...)
	esc, _ := json.Marshal(string(hdr))
	buf = append(buf, esc[1:len(esc)-1]...)
	buf = append(buf, h.body...)
	buf = append(buf, '"')
	if cfg.httpDeferSpool {
		buf = append(buf, `,"deferred_spool":true`...)
	}
	if cfg.httpDeferGeneration {
		buf = append(buf, `,"deferred_generation":true`...)
	}
	return append(buf, '}')
}

func between(b []byte, start, end string) []byte {
	i := bytes.Index(b, []byte(start))
	if i < 0 {
		return nil
	}
	rest := b[i+len(start):]
	if j := bytes.Index(rest, []byte(end)); j >= 0 {
		return rest[:j]
	}
	return rest
}

// send posts one request and checks that all n recipients were taken.
func (h *httpInjector) send(ctx context.Context, body []byte, n int) error {
	req, err := http.NewRequestWithContext(ctx, "POST", h.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := h.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	rb, _ := io.ReadAll(io.LimitReader(resp.Body, 64*1024))
	if resp.StatusCode != http.StatusOK {
		return &injectError{status: resp.StatusCode, body: string(rb)}
	}
	var r struct {
		SuccessCount int `json:"success_count"`
		FailCount    int `json:"fail_count"`
	}
	if err := json.Unmarshal(rb, &r); err != nil {
		return fmt.Errorf("inject: response: %w", err)
	}
	if (!h.deferredGeneration(body) && r.SuccessCount != n) || r.FailCount != 0 {
		return &injectError{status: resp.StatusCode, body: string(rb)}
	}
	return nil
}

// deferredGeneration: such requests are answered before any message is
// made, with zero counts.
func (h *httpInjector) deferredGeneration(body []byte) bool {
	return bytes.Contains(body, []byte(`"deferred_generation":true`))
}

// httpClient is one client's loop for --http: it claims up to
// --http-batch-size messages, sends them in one request and gives back
// the claims of a failed request.
func (g *generator) httpClient(ctx context.Context, id uint64) error {
	b := newMessageBuilder(g.p, uint64(time.Now().UnixNano())^id*0x9e3779b97f4a7c15)
	g.clients.Add(1)
	defer g.clients.Add(-1)
	var buf []byte
	for ctx.Err() == nil {
		if g.limiter != nil {
			if !sleep(ctx, g.limiter.ReserveAt(time.Now())) {
				return nil
			}
		}
		n := 0
		finished := false
		for n < g.cfg.httpBatchSize {
			ok, fin := g.claim()
			if !ok {
				finished = fin
				break
			}
			n++
		}
		if n == 0 {
			if finished {
				return nil
			}
			sleep(ctx, 10*time.Millisecond)
			continue
		}
		start := time.Now()
		buf = g.http.request(buf, b, g.cfg, n, start)
		err := g.http.send(ctx, buf, n)
		if err == nil {
			g.lat.record(time.Since(start))
			g.inflight.Add(int64(-n))
			g.checkFinished()
			continue
		}
		g.sent.Add(^uint64(n - 1))
		g.inflight.Add(int64(-n))
		if ended(ctx) {
			return nil
		}
		g.failed.Add(uint64(n))
		if !g.cfg.keepGoing {
			return err
		}
		g.errOut.printf("client %d: %v", id, err)
		sleep(ctx, 50*time.Millisecond)
	}
	return nil
}
