package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kumogo/kumogo/internal/dnszone"
	"github.com/kumogo/kumogo/internal/logrecord"
)

// writeSelfSigned writes a self-signed certificate for name (and
// 127.0.0.1) and its key as PEM files in dir, and returns their paths and
// the certificate.
func writeSelfSigned(t *testing.T, dir, name string) (certPath, keyPath string, cert *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:   time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	if cert, err = x509.ParseCertificate(der); err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPath, keyPath = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certPath, keyPath, cert
}

// TestDANEThroughDaemon: the kumogo binary, with enable_dane and its
// resolver pointed at a DNS server that sets the AD bit, delivers over
// STARTTLS to a peer whose self-signed certificate matches the DANE-EE
// record of its MX host (PKIX alone would refuse it: the path says
// Opportunistic, which verifies), and refuses a peer whose TLSA record
// does not match with a TransientFailure naming DANE, also when that host
// comes from an mx_list with treat_mx_list_as_secure; nothing is sent in
// the clear. /metrics counts the decisions in dane_result_count.
func TestDANEThroughDaemon(t *testing.T) {
	sdir := t.TempDir()
	certPath, keyPath, cert := writeSelfSigned(t, sdir, "mx.dane.test")
	// the peer: a kumogo with that certificate that takes everything
	sinkPolicy := spooledPolicy(t, sdir, `
  kumo.configure_local_logs { log_dir = '`+sdir+`/logs', max_segment_duration = '1s' }
  kumo.start_esmtp_listener { listen = '127.0.0.1:0', hostname = 'mx.dane.test', relay_hosts = { '127.0.0.1' },
    tls_certificate = '`+certPath+`', tls_private_key = '`+keyPath+`' }`, `
kumo.on('smtp_server_message_received', function(msg) msg:set_meta('queue', 'null') end)
`)
	sink := startDaemon(t, nil, "--policy", sinkPolicy)
	sinkPort := portOf(sink.addr)

	spki := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	z, err := dnszone.Parse([]string{`
dane.test.     MX 10 mx.dane.test.
mx.dane.test.  A  127.0.0.1
_` + sinkPort + `._tcp.mx.dane.test. TLSA 3 1 1 ` + hex.EncodeToString(spki[:]) + `
wrong.test.    MX 10 mx.wrong.test.
mx.wrong.test. A  127.0.0.1
_` + sinkPort + `._tcp.mx.wrong.test. TLSA 3 1 1 ` + strings.Repeat("ab", 32) + `
`})
	if err != nil {
		t.Fatal(err)
	}
	z.AD = true // a DNSSEC-validating resolver's answers
	dns, err := dnszone.Serve(z)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dns.Close() })

	dir := t.TempDir()
	policy := spooledPolicy(t, dir, `
  kumo.dns.configure_resolver { name_servers = { '`+dns.Addr+`' } }
  kumo.configure_local_logs { log_dir = '`+dir+`/logs', max_segment_duration = '1s' }
  kumo.start_esmtp_listener { listen = '127.0.0.1:0', hostname = 'dane-relay.test' }
  kumo.start_http_listener { listen = '127.0.0.1:0', hostname = 'dane-relay.test' }`, `
kumo.on('get_queue_config', function(domain)
  if domain == 'listed.test' then
    -- a trusted mx_list: DANE applies to its host as to a validated MX
    return kumo.make_queue_config { retry_interval = '1h',
      protocol = { smtp = { mx_list = { 'mx.wrong.test' }, treat_mx_list_as_secure = true } } }
  end
  return kumo.make_queue_config { retry_interval = '1h' }
end)
kumo.on('get_egress_path_config', function()
  return kumo.make_egress_path { smtp_port = `+sinkPort+`, prohibited_hosts = {}, enable_tls = 'Opportunistic', enable_dane = true }
end)
`)
	relay := startDaemon(t, nil, "--policy", policy)
	rcpts := []string{"good@dane.test", "bad@wrong.test", "list@listed.test"}
	out, err := exec.Command("python3", append([]string{"-c", pySendTimed, relay.addr}, rcpts...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("smtplib: %v\n%s\n%s", err, out, tail(relay.log(), 20))
	}
	if missing := awaitRecipients(t, filepath.Join(sdir, "logs"), rcpts[:1], 20*time.Second); len(missing) > 0 {
		t.Fatalf("not delivered: %v\n%s", missing, tail(relay.log(), 20))
	}
	var failure, listFailure, delivery *logrecord.Record
	deadline := time.Now().Add(15 * time.Second)
	for (failure == nil || listFailure == nil || delivery == nil) && time.Now().Before(deadline) {
		recs, _ := logrecord.ReadDir(filepath.Join(dir, "logs"))
		for i, r := range recs {
			switch {
			case r.Type == logrecord.TransientFailure && r.Recipient[0] == "bad@wrong.test":
				failure = &recs[i]
			case r.Type == logrecord.TransientFailure && r.Recipient[0] == "list@listed.test":
				listFailure = &recs[i]
			case r.Type == logrecord.Delivery && r.Recipient[0] == "good@dane.test":
				delivery = &recs[i]
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	if delivery == nil || delivery.TLSCipher == "" {
		t.Fatalf("Delivery record of the DANE-pinned host %+v: want one over TLS\n%s", delivery, tail(relay.log(), 20))
	}
	if failure == nil || failure.Response.Code != 400 ||
		!strings.Contains(failure.Response.Content, "DANE: the certificate of mx.wrong.test matches none of its 1 TLSA records") {
		t.Fatalf("TransientFailure of the mismatching host: %+v\n%s", failure, tail(relay.log(), 20))
	}
	if listFailure == nil || !strings.Contains(listFailure.Response.Content, "DANE: the certificate of mx.wrong.test matches none") {
		t.Fatalf("TransientFailure of the trusted mx_list host: %+v\n%s", listFailure, tail(relay.log(), 20))
	}
	if got := sinkRecipients(t, filepath.Join(sdir, "logs")); got["bad@wrong.test"] != 0 || got["list@listed.test"] != 0 {
		t.Errorf("the mismatching host got the message: %v", got)
	}

	m := regexp.MustCompile(`http listener on (\S+)`).FindStringSubmatch(relay.log())
	if m == nil {
		t.Fatalf("no http listener line:\n%s", relay.log())
	}
	fams := scrapeMetrics(t, "http://"+m[1])
	f := fams["dane_result_count"]
	if f == nil {
		t.Fatal("dane_result_count missing from /metrics")
	}
	counts := map[string]float64{}
	for _, s := range f.GetMetric() {
		for _, l := range s.GetLabel() {
			if l.GetName() == "result" {
				counts[l.GetValue()] += s.GetCounter().GetValue()
			}
		}
	}
	if counts["ok"] < 2 || len(counts) != 1 {
		t.Errorf("dane_result_count %v: want ok for both hosts and nothing else", counts)
	}
	relay.stop(t, syscall.SIGINT)
	sink.stop(t, syscall.SIGINT)
}
