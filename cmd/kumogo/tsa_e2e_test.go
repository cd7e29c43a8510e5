package main

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// tsaProc is a running `kumogo tsa`.
type tsaProc struct {
	cmd  *exec.Cmd
	url  string
	mu   sync.Mutex
	logs strings.Builder
	done chan error
}

func (p *tsaProc) log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logs.String()
}

// writeTSAPolicy writes a tsa_init.lua in KumoMTA's shape: a loopback
// listener, the database in dir, shaping data from shapingFile.
func writeTSAPolicy(t *testing.T, dir, shapingFile string) string {
	t.Helper()
	p := filepath.Join(dir, "tsa_init.lua")
	src := `local tsa = require 'tsa'
local kumo = require 'kumo'
kumo.on('tsa_init', function()
  tsa.start_http_listener { listen = '127.0.0.1:0', trusted_hosts = { '127.0.0.1' } }
  tsa.configure_tsa_db_path '` + dir + `/tsa.db'
end)
local cached_load_shaping_data = kumo.memoize(kumo.shaping.load, { name = 'tsa_load_shaping_data', ttl = '5 minutes', capacity = 4 })
kumo.on('tsa_load_shaping_data', function()
  return cached_load_shaping_data { '` + shapingFile + `' }
end)
`
	if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func startTSA(t *testing.T, policy string) *tsaProc {
	t.Helper()
	cmd := exec.Command(kumogoBin, "tsa", "--policy", policy)
	cmd.Dir = t.TempDir()
	pipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &tsaProc{cmd: cmd, done: make(chan error, 1)}
	ready := make(chan struct{})
	re := regexp.MustCompile(`tsa http listener on (\S+?)"?$`)
	go func() {
		sc := bufio.NewScanner(pipe)
		once := sync.Once{}
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.logs.WriteString(line + "\n")
			if m := re.FindStringSubmatch(line); m != nil && p.url == "" {
				p.url = "http://" + m[1]
			}
			p.mu.Unlock()
			if strings.Contains(line, "initialization complete") {
				once.Do(func() { close(ready) })
			}
		}
		p.done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-p.done
		}
	})
	select {
	case <-ready:
	case err := <-p.done:
		t.Fatalf("kumogo tsa exited: %v\n%s", err, p.log())
	case <-time.After(20 * time.Second):
		t.Fatalf("kumogo tsa did not initialize:\n%s", p.log())
	}
	if p.url == "" {
		t.Fatalf("no listener line:\n%s", p.log())
	}
	return p
}

func (p *tsaProc) get(t *testing.T, path string) string {
	t.Helper()
	resp, err := http.Get(p.url + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
	}
	return string(b)
}

type tsaSuspensions struct {
	ReadyQ []struct {
		SiteName string    `json:"site_name"`
		Source   string    `json:"source"`
		Reason   string    `json:"reason"`
		Expires  time.Time `json:"expires"`
	} `json:"ready_q"`
	SchedQ []struct {
		Tenant   string    `json:"tenant"`
		Domain   string    `json:"domain"`
		Campaign *string   `json:"campaign"`
		Reason   string    `json:"reason"`
		Expires  time.Time `json:"expires"`
	} `json:"sched_q"`
}

func (p *tsaProc) suspensions(t *testing.T) tsaSuspensions {
	t.Helper()
	var s tsaSuspensions
	if err := json.Unmarshal([]byte(p.get(t, "/get_suspension_v1/suspended.json")), &s); err != nil {
		t.Fatal(err)
	}
	return s
}

const tsaShaping = `["tsa.test"]
mx_rollup = false
prohibited_hosts = []
enable_tls = "Disabled"

[["tsa.test".automation]]
regex = "4\\.7\\.28 .*rate limited"
action = "Suspend"
duration = "%DURATION%"
`

func writeShaping(t *testing.T, dir, duration string) string {
	t.Helper()
	p := filepath.Join(dir, "shaping.toml")
	if err := os.WriteFile(p, []byte(strings.ReplaceAll(tsaShaping, "%DURATION%", duration)), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestTSADaemonBinary: `kumogo tsa` runs a KumoMTA-style tsa_init.lua,
// turns a published TransientFailure into a ready-queue suspension from
// the tsa_load_shaping_data rules, and serves it again after a restart
// (the SQLite file).
func TestTSADaemonBinary(t *testing.T) {
	dir := t.TempDir()
	policy := writeTSAPolicy(t, dir, writeShaping(t, dir, "1 hour"))
	p := startTSA(t, policy)
	if got := p.get(t, "/tsa/status"); got != "OK\n" {
		t.Fatalf("status %q", got)
	}
	rec := `{"type":"TransientFailure","recipient":"u@tsa.test","queue":"tsa.test","site":"src1->127.0.0.1:25@smtp_client",
"egress_source":"src1","timestamp":` + jsonNow() + `,"response":{"code":421,"enhanced_code":{"class":4,"subject":7,"detail":28},"content":"sink rate limited","command":"."}}`
	resp, err := http.Post(p.url+"/publish_log_v1", "application/json", strings.NewReader(rec))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("publish: %d\n%s", resp.StatusCode, p.log())
	}
	s := p.suspensions(t)
	if len(s.ReadyQ) != 1 || s.ReadyQ[0].SiteName != "127.0.0.1:25" || s.ReadyQ[0].Source != "src1" ||
		s.ReadyQ[0].Reason != "421 4.7.28 sink rate limited" || time.Until(s.ReadyQ[0].Expires) < 59*time.Minute {
		t.Fatalf("suspensions %+v", s)
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		if err != nil {
			t.Fatalf("exit: %v\n%s", err, p.log())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("kumogo tsa did not stop on SIGTERM")
	}
	p2 := startTSA(t, policy)
	if s := p2.suspensions(t); len(s.ReadyQ) != 1 || s.ReadyQ[0].SiteName != "127.0.0.1:25" {
		t.Fatalf("after restart: %+v", s)
	}
}

func jsonNow() string {
	b, _ := json.Marshal(time.Now().Unix())
	return string(b)
}
