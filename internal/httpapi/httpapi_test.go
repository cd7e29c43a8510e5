package httpapi

import (
	"bufio"
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/kumogo/kumogo/internal/config"
)

// start serves cfg with deps on loopback and returns its base URL.
func start(t *testing.T, cfg config.HTTPListener, deps Deps) (*Server, string) {
	t.Helper()
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	if cfg.Hostname == "" {
		cfg.Hostname = "api.example.com"
	}
	if cfg.TrustedHosts == nil {
		cfg.TrustedHosts = config.MustCIDRList("127.0.0.1", "::1")
	}
	deps.Log = zerolog.Nop()
	s, err := New(cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { s.Serve(); close(done) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		s.Shutdown(ctx)
		<-done
	})
	return s, s.Scheme() + "://" + s.Addr().String()
}

func do(t *testing.T, c *http.Client, method, url string, body io.Reader, hdr map[string]string) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func TestLiveness(t *testing.T) {
	var full atomic.Bool
	_, base := start(t, config.HTTPListener{}, Deps{Health: func() (bool, string) {
		if full.Load() {
			return false, "storage is too full"
		}
		return true, ""
	}})
	if code, body, _ := do(t, nil, "GET", base+"/api/check-liveness/v1", nil, nil); code != 200 || body != "OK" {
		t.Fatalf("%d %q", code, body)
	}
	full.Store(true)
	if code, body, _ := do(t, nil, "GET", base+"/api/check-liveness/v1", nil, nil); code != 503 || body != "storage is too full" {
		t.Fatalf("%d %q", code, body)
	}
}

// Regression: use_tls = true served plaintext.
func TestUseTLSServesTLS(t *testing.T) {
	_, base := start(t, config.HTTPListener{UseTLS: true}, Deps{})
	if !strings.HasPrefix(base, "https://") {
		t.Fatalf("base %s", base)
	}
	// a plaintext request gets no HTTP answer
	plain := strings.Replace(base, "https://", "http://", 1)
	if resp, err := http.Get(plain + "/api/check-liveness/v1"); err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 200 && string(b) == "OK" {
			t.Fatal("plaintext request served with use_tls = true")
		}
	}
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err := c.Get(base + "/api/check-liveness/v1")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.TLS == nil || len(resp.TLS.PeerCertificates) == 0 {
		t.Fatal("no TLS state")
	}
	if cn := resp.TLS.PeerCertificates[0].Subject.CommonName; cn != "api.example.com" {
		t.Fatalf("self-signed certificate for %q, want the listener hostname", cn)
	}
}

func TestAccessRules(t *testing.T) {
	auth := &fakeAuth{users: map[string]string{"scott": "tiger"}, tokens: map[string]bool{"tok": true}}
	admin := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "metrics") })
	// 127.0.0.1 is not trusted here
	_, base := start(t, config.HTTPListener{TrustedHosts: config.MustCIDRList("10.0.0.0/8")}, Deps{Auth: auth, Metrics: admin})
	basic := map[string]string{"Authorization": "Basic c2NvdHQ6dGlnZXI="} // scott:tiger
	wrong := map[string]string{"Authorization": "Basic c2NvdHQ6bGlvbg=="} // scott:lion

	cases := []struct {
		name, method, path string
		hdr                map[string]string
		code               int
		inBody             string
	}{
		{"liveness is open", "GET", "/api/check-liveness/v1", nil, 200, "OK"},
		{"metrics untrusted", "GET", "/metrics", nil, 401, `"error"`},
		{"metrics authenticated but untrusted", "GET", "/metrics", basic, 403, `"error"`},
		{"admin untrusted", "GET", "/api/admin/bounce/v1", nil, 401, `"error"`},
		{"inject anonymous", "POST", "/api/inject/v1", nil, 401, `"error"`},
		{"inject wrong password", "POST", "/api/inject/v1", wrong, 401, "HttpBasicAuth Authentication Failed for scott"},
		{"inject malformed basic", "POST", "/api/inject/v1", map[string]string{"Authorization": "Basic !!"}, 400, `"error"`},
		{"inject bad bearer", "POST", "/api/inject/v1", map[string]string{"Authorization": "Bearer nope"}, 401, `"error"`},
		// authenticated: past the access check (no injector here: 503)
		{"inject basic", "POST", "/api/inject/v1", basic, 503, "waiting for spool startup"},
		{"inject bearer", "POST", "/api/inject/v1", map[string]string{"Authorization": "Bearer tok"}, 503, ""},
	}
	for _, c := range cases {
		code, body, hdr := do(t, nil, c.method, base+c.path, strings.NewReader("{}"), c.hdr)
		if code != c.code || !strings.Contains(body, c.inBody) {
			t.Errorf("%s: %d %q, want %d with %q", c.name, code, body, c.code, c.inBody)
		}
		if code == 401 || code == 403 {
			var e map[string]any
			if err := json.Unmarshal([]byte(body), &e); err != nil || hdr.Get("Content-Type") != "application/json" {
				t.Errorf("%s: refusal is not JSON: %q (%v)", c.name, body, err)
			}
		}
	}
	if n := auth.calls.Load(); n != 4 {
		// scott:tiger, scott:lion, bad bearer, good bearer: each once (cached)
		t.Errorf("auth events ran %d times, want 4 (cached per credential)", n)
	}
}

// Regression: trusted_hosts was not applied.
func TestTrustedHosts(t *testing.T) {
	m := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "metrics") })
	_, trusted := start(t, config.HTTPListener{TrustedHosts: config.MustCIDRList("127.0.0.0/8")}, Deps{Metrics: m})
	if code, body, _ := do(t, nil, "GET", trusted+"/metrics", nil, nil); code != 200 || body != "metrics" {
		t.Fatalf("trusted: %d %q", code, body)
	}
	_, untrusted := start(t, config.HTTPListener{TrustedHosts: config.MustCIDRList("192.0.2.1")}, Deps{Metrics: m})
	if code, _, _ := do(t, nil, "GET", untrusted+"/metrics", nil, nil); code != 401 {
		t.Fatalf("untrusted: %d", code)
	}
	// a wrong password is refused even from a trusted host
	auth := &fakeAuth{}
	_, b := start(t, config.HTTPListener{}, Deps{Metrics: m, Auth: auth})
	if code, _, _ := do(t, nil, "GET", b+"/metrics", nil, map[string]string{"Authorization": "Basic c2NvdHQ6bGlvbg=="}); code != 401 {
		t.Fatalf("trusted with bad credentials: %d", code)
	}
}

// Regression: idle keep-alive connections never timed out.
func TestIdleKeepAliveTimesOut(t *testing.T) {
	_, base := start(t, config.HTTPListener{}, Deps{Limits: Limits{IdleTimeout: 300 * time.Millisecond}})
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "GET /api/check-liveness/v1 HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.ReadAll(resp.Body)
	resp.Body.Close()
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	startIdle := time.Now()
	_, err = br.ReadByte()
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("idle keep-alive connection still open after 5 s")
	}
	if err != io.EOF {
		t.Fatalf("read after idle: %v", err)
	}
	if d := time.Since(startIdle); d > 3*time.Second {
		t.Fatalf("closed after %v", d)
	}
}

func TestConnectionCap(t *testing.T) {
	_, base := start(t, config.HTTPListener{}, Deps{Limits: Limits{MaxConnections: 2}})
	addr := strings.TrimPrefix(base, "http://")
	var held []net.Conn
	for i := 0; i < 2; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		held = append(held, c)
	}
	time.Sleep(100 * time.Millisecond)
	c := &http.Client{Timeout: 500 * time.Millisecond}
	if _, err := c.Get(base + "/api/check-liveness/v1"); err == nil {
		t.Fatal("a third connection was served with max 2")
	}
	held[0].Close()
	c.Timeout = 3 * time.Second
	resp, err := c.Get(base + "/api/check-liveness/v1")
	if err != nil {
		t.Fatalf("after one connection closed: %v", err)
	}
	resp.Body.Close()
}

func TestRequestBodies(t *testing.T) {
	inj := newFakeInjector()
	_, base := start(t, config.HTTPListener{RequestBodyLimit: 4096}, Deps{Inject: inj})
	req := `{"envelope_sender":"a@example.com","recipients":[{"email":"b@example.com"}],"content":"Subject: hi\r\n\r\nhello\r\n"}`
	var gz, zl, raw bytes.Buffer
	w := gzip.NewWriter(&gz)
	w.Write([]byte(req))
	w.Close()
	z := zlib.NewWriter(&zl)
	z.Write([]byte(req))
	z.Close()
	f, _ := flate.NewWriter(&raw, 5)
	f.Write([]byte(req))
	f.Close()
	for _, c := range []struct {
		enc  string
		body []byte
	}{{"", []byte(req)}, {"gzip", gz.Bytes()}, {"deflate", zl.Bytes()}, {"deflate", raw.Bytes()}} {
		code, body, _ := do(t, nil, "POST", base+"/api/inject/v1", bytes.NewReader(c.body), map[string]string{"Content-Encoding": c.enc, "Content-Type": "application/json"})
		if code != 200 || !strings.Contains(body, `"success_count":1`) {
			t.Errorf("encoding %q: %d %q", c.enc, code, body)
		}
	}
	if code, _, _ := do(t, nil, "POST", base+"/api/inject/v1", strings.NewReader(req), map[string]string{"Content-Encoding": "br"}); code != 415 {
		t.Errorf("brotli: %d", code)
	}
	// over the limit after decompression: a small gzip of a big body
	big := `{"envelope_sender":"a@example.com","recipients":[{"email":"b@example.com"}],"content":"` + strings.Repeat("x", 10000) + `"}`
	gz.Reset()
	w = gzip.NewWriter(&gz)
	w.Write([]byte(big))
	w.Close()
	if gz.Len() > 4096 {
		t.Fatal("test body does not compress")
	}
	code, body, _ := do(t, nil, "POST", base+"/api/inject/v1", bytes.NewReader(gz.Bytes()), map[string]string{"Content-Encoding": "gzip"})
	if code != 413 || body != errBodyLimit {
		t.Errorf("limit: %d %q", code, body)
	}
	if code, _, _ := do(t, nil, "POST", base+"/api/inject/v1", strings.NewReader(big), nil); code != 413 {
		t.Errorf("plain over limit: %d", code)
	}
	if n := inj.count(); n != 4 {
		t.Errorf("%d messages queued, want 4", n)
	}
}
