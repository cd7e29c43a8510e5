package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// metricsPolicy relays injected mail to the sink; loopback is trusted, so
// /metrics answers it.
func metricsPolicy(t *testing.T, dir, sinkAddr string) string {
	return spooledPolicy(t, dir, `
  kumo.configure_local_logs { log_dir = '`+dir+`/logs' }
  kumo.start_esmtp_listener { listen = '127.0.0.1:0', hostname = 'relay.test' }
  kumo.start_http_listener { listen = '127.0.0.1:0', hostname = 'relay.test' }
`, `
kumo.on('http_message_generated', function(msg)
  msg:set_meta('queue', '[127.0.0.1]:`+strings.Split(sinkAddr, ":")[1]+`')
end)
kumo.on('smtp_server_message_received', function(msg)
  msg:set_meta('queue', '[127.0.0.1]:`+strings.Split(sinkAddr, ":")[1]+`')
end)
kumo.on('get_egress_path_config', function()
  return kumo.make_egress_path { enable_tls = 'Disabled', prohibited_hosts = {} }
end)
`)
}

func injectN(t *testing.T, base string, n int, tag string) {
	t.Helper()
	var rcpts []string
	for i := 0; i < n; i++ {
		rcpts = append(rcpts, fmt.Sprintf(`{"email":"%s%d@example.net"}`, tag, i))
	}
	body := `{"envelope_sender":"a@example.com","recipients":[` + strings.Join(rcpts, ",") + `],"content":"Subject: m\r\n\r\nhello\r\n"}`
	resp, err := http.Post(base+"/api/inject/v1", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(b), fmt.Sprintf(`"success_count":%d`, n)) {
		t.Fatalf("inject: %d %s", resp.StatusCode, b)
	}
}

func scrapeMetrics(t *testing.T, base string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("/metrics: %d", resp.StatusCode)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	return fams
}

func sample(f *dto.MetricFamily, label, value string) float64 {
	for _, m := range f.GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == label && l.GetValue() == value {
				if m.Counter != nil {
					return m.Counter.GetValue()
				}
				return m.Gauge.GetValue()
			}
		}
	}
	return -1
}

func TestMetricsScrapedByPrometheus(t *testing.T) {
	promBin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Fatal("prometheus is required (scripts/install-test-deps.sh installs it): ", err)
	}
	env, sinkLogs := sinkEnv(t)
	sink := startDaemon(t, env, "--policy", "sink.lua")
	dir := t.TempDir()
	relay := startDaemon(t, nil, "--policy", metricsPolicy(t, dir, sink.addr))
	addr := relay.httpAddr(t, "http")
	base := "http://" + addr

	injectN(t, base, 5, "first")
	if missing := awaitRecipients(t, sinkLogs, []string{"first0@example.net", "first4@example.net"}, 20*time.Second); len(missing) > 0 {
		t.Fatalf("not delivered: %v", missing)
	}
	fams := scrapeMetrics(t, base)
	for _, name := range []string{"total_messages_received", "total_messages_delivered", "total_messages_transfail", "total_messages_fail",
		"connection_count", "ready_count", "scheduled_count_total", "scheduled_queue_count", "message_count",
		"lua_event_latency", "lua_event_started", "lua_count", "lua_load_count", "lua_spare_count", "memory_usage", "disk_free_bytes", "disk_free_percent", "disk_free_inodes"} {
		if fams[name] == nil {
			t.Errorf("family %s missing from /metrics", name)
		}
	}
	if v := sample(fams["total_messages_received"], "service", "http_listener"); v != 5 {
		t.Errorf("total_messages_received{service=http_listener} = %v", v)
	}
	if v := sample(fams["total_messages_delivered"], "service", "smtp_client"); v != 5 {
		t.Errorf("total_messages_delivered{service=smtp_client} = %v", v)
	}
	site := "smtp_client:unspecified->" + sink.addr + "@smtp_client"
	if v := sample(fams["total_messages_delivered"], "service", site); v != 5 {
		t.Errorf("total_messages_delivered{service=%q} = %v; families: %v", site, v, fams["total_messages_delivered"])
	}
	if v := sample(fams["lua_event_started"], "event", "http_message_generated"); v != 5 {
		t.Errorf("lua_event_started{event=http_message_generated} = %v", v)
	}
	if f := fams["lua_count"]; f == nil || f.GetMetric()[0].GetGauge().GetValue() < 1 {
		t.Errorf("lua_count %v", f)
	}
	if v := sample(fams["disk_free_bytes"], "name", "data spool"); v <= 0 {
		t.Errorf("disk_free_bytes{name=data spool} = %v", v)
	}
	// /metrics.json, KumoMTA's shape
	resp, err := http.Get(base + "/metrics.json")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var js map[string]struct {
		Type  string                        `json:"type"`
		Value map[string]map[string]float64 `json:"value"`
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatalf("metrics.json: %v", err)
	}
	js = map[string]struct {
		Type  string                        `json:"type"`
		Value map[string]map[string]float64 `json:"value"`
	}{}
	var e struct {
		Type  string                        `json:"type"`
		Value map[string]map[string]float64 `json:"value"`
	}
	if err := json.Unmarshal(raw["total_messages_delivered"], &e); err != nil {
		t.Fatalf("metrics.json total_messages_delivered: %v %s", err, raw["total_messages_delivered"])
	}
	js["total_messages_delivered"] = e
	if e := js["total_messages_delivered"]; e.Type != "counter" || e.Value["service"]["smtp_client"] != 5 {
		t.Errorf("metrics.json total_messages_delivered = %+v", e)
	}

	// a real Prometheus scrapes the daemon every second
	pdir := t.TempDir()
	promAddr := freeLoopbackAddr(t)
	cfg := fmt.Sprintf("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: kumogo\n    static_configs:\n      - targets: ['%s']\n", addr)
	if err := os.WriteFile(filepath.Join(pdir, "prometheus.yml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	prom := exec.Command(promBin, "--config.file="+filepath.Join(pdir, "prometheus.yml"), "--storage.tsdb.path="+filepath.Join(pdir, "data"),
		"--web.listen-address="+promAddr, "--log.level=warn")
	var plog strings.Builder
	prom.Stderr = &plog
	if err := prom.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		prom.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- prom.Wait() }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			prom.Process.Kill()
			<-done
		}
	}()
	query := `sum(rate(total_messages_received{service="http_listener"}[30s]))`
	deadline := time.Now().Add(60 * time.Second)
	round := 0
	for {
		round++
		injectN(t, base, 10, fmt.Sprintf("r%d-", round))
		v, err := promQuery(promAddr, query)
		if err == nil && v > 0 {
			t.Logf("PromQL %s = %v", query, v)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no rate from Prometheus within 60 s: %v (%v)\n%s", v, err, plog.String())
		}
		time.Sleep(time.Second)
	}
	relay.stop(t, syscall.SIGTERM)
}

// promQuery runs an instant query and returns the first sample's value.
func promQuery(addr, q string) (float64, error) {
	resp, err := http.Get("http://" + addr + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var r struct {
		Status string `json:"status"`
		Data   struct {
			Result []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return 0, err
	}
	if r.Status != "success" || len(r.Data.Result) == 0 {
		return 0, fmt.Errorf("status %s, %d results", r.Status, len(r.Data.Result))
	}
	s, _ := r.Data.Result[0].Value[1].(string)
	var v float64
	_, err = fmt.Sscan(s, &v)
	return v, err
}
