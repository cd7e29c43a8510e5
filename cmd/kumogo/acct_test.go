package main

import (
	"crypto/tls"
	"net/http"
	"net/smtp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kumogo/kumogo/internal/logrecord"
)

// TestAcctLogRecordsAuthnAndAuthz: kumo.aaa.configure_acct_log writes an
// Authentication record for each SMTP AUTH and HTTP Basic attempt and an
// Authorization record for each HTTP access decision, in KumoMTA's JSON
// shape; log_authz_allow = false leaves the allowed ones out.
func TestAcctLogRecordsAuthnAndAuthz(t *testing.T) {
	dir := t.TempDir()
	policy := spooledPolicy(t, dir, `
  kumo.aaa.configure_acct_log { log_dir = '`+dir+`/acct', log_authz_allow = false }
  kumo.start_esmtp_listener { listen = '127.0.0.1:0', hostname = 'acct.test' }
  kumo.start_http_listener { listen = '127.0.0.1:0', trusted_hosts = { '192.0.2.1' } }
`, `
kumo.on('smtp_server_auth_plain', function(authz, authc, password, conn_meta)
  return authc == 'daniel' and password == 'tiger'
end)
kumo.on('http_server_validate_auth_basic', function(user, password)
  return user == 'scott' and password == 'tiger'
end)
`)
	d := startDaemon(t, nil, "--policy", policy)
	base := "http://" + d.httpAddr(t, "http")

	for _, pw := range []string{"bogus", "tiger"} {
		cl, err := smtp.Dial(d.addr)
		if err != nil {
			t.Fatal(err)
		}
		if err := cl.StartTLS(&tls.Config{InsecureSkipVerify: true}); err != nil {
			t.Fatal(err)
		}
		err = cl.Auth(smtp.PlainAuth("", "daniel", pw, "127.0.0.1"))
		if (err == nil) != (pw == "tiger") {
			t.Fatalf("AUTH with %q: %v", pw, err)
		}
		cl.Quit()
	}
	for _, c := range []struct {
		user, pass string
		want       int
	}{{"scott", "lion", 401}, {"scott", "tiger", 403}} {
		req, _ := http.NewRequest("GET", base+"/api/admin/bounce/v1", nil)
		req.SetBasicAuth(c.user, c.pass)
		r, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		if r.StatusCode != c.want {
			t.Fatalf("%s:%s: %d, want %d", c.user, c.pass, r.StatusCode, c.want)
		}
	}
	if r, err := http.Get(base + "/api/check-liveness/v1"); err != nil || r.StatusCode != 200 {
		t.Fatalf("liveness: %v %v", r, err)
	}
	d.stop(t, syscall.SIGTERM)

	recs, err := logrecord.ReadDirRaw(dir + "/acct")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range recs {
		switch r["type"] {
		case "Authentication":
			ai := r["attempted_identity"].(map[string]any)
			info := r["auth_info"].(map[string]any)
			if info["peer_address"] != "127.0.0.1" {
				t.Errorf("peer_address: %v", r)
			}
			if _, err := time.Parse(time.RFC3339Nano, r["timestamp"].(string)); err != nil {
				t.Errorf("timestamp: %v", r)
			}
			got = append(got, "authn "+ai["context"].(string)+" "+ai["identity"].(string)+" "+map[bool]string{true: "ok", false: "fail"}[r["success"].(bool)])
		case "Authorization":
			got = append(got, "authz "+r["privilege"].(string)+" "+r["target_resource"].(string)+" "+r["access"].(string)+" "+r["matching_resource"].(string))
		default:
			t.Errorf("unexpected record %v", r)
		}
	}
	httpRes := "http_listener/127.0.0.1:0/api/admin/bounce/v1"
	want := []string{
		"authn SmtpAuthPlainAuthentication daniel fail",
		"authn SmtpAuthPlainAuthentication daniel ok",
		"authn HttpBasicAuth scott fail",
		"authn HttpBasicAuth scott ok",
		"authz GET " + httpRes + " Deny http_listener/*/api/admin",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("records:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
