package metrics

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/kumogo/kumogo/internal/logrecord"
)

func scrape(t *testing.T, r *Registry, query string) map[string]*dto.MetricFamily {
	t.Helper()
	rec := httptest.NewRecorder()
	r.TextHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics"+query, nil))
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(rec.Body)
	if err != nil {
		t.Fatalf("parsing the exposition: %v", err)
	}
	return fams
}

func value(f *dto.MetricFamily, label, v string) (float64, bool) {
	if f == nil {
		return 0, false
	}
	for _, m := range f.GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == label && l.GetValue() == v {
				switch {
				case m.Counter != nil:
					return m.Counter.GetValue(), true
				case m.Gauge != nil:
					return m.Gauge.GetValue(), true
				}
			}
		}
	}
	return 0, false
}

func TestRecordsBecomeServiceCounters(t *testing.T) {
	r := New(time.Minute)
	site := "unspecified->[127.0.0.1]:2026@smtp_client"
	for _, rec := range []logrecord.Record{
		{Type: logrecord.Reception, ReceptionProtocol: "ESMTP"},
		{Type: logrecord.Reception, ReceptionProtocol: "HTTP"},
		{Type: logrecord.Delivery, Site: site, Queue: "q", DeliveryProtocol: "ESMTP"},
		{Type: logrecord.Delivery, Site: site, Queue: "q", DeliveryProtocol: "ESMTP"},
		{Type: logrecord.TransientFailure, Site: site, Queue: "q", DeliveryProtocol: "ESMTP"},
		{Type: logrecord.TransientFailure, Site: "q", Queue: "q"}, // suspension: not a delivery attempt
		{Type: logrecord.Bounce, Site: site, Queue: "q", DeliveryProtocol: "ESMTP"},
	} {
		rec := rec
		r.ObserveRecord(&rec)
	}
	r.ObserveLuaEvent("smtp_server_message_received", 3*time.Millisecond)
	fams := scrape(t, r, "")
	checks := []struct {
		fam, label, val string
		want            float64
	}{
		{"total_messages_received", "service", "esmtp_listener", 1},
		{"total_messages_received", "service", "http_listener", 1},
		{"total_messages_delivered", "service", "smtp_client", 2},
		{"total_messages_delivered", "service", "smtp_client:" + site, 2},
		{"total_messages_transfail", "service", "smtp_client", 1},
		{"total_messages_fail", "service", "smtp_client:" + site, 1},
	}
	for _, c := range checks {
		if got, ok := value(fams[c.fam], c.label, c.val); !ok || got != c.want {
			t.Errorf("%s{%s=%q} = %v (present %v), want %v", c.fam, c.label, c.val, got, ok, c.want)
		}
	}
	h := fams["lua_event_latency"]
	if h == nil || h.GetType() != dto.MetricType_HISTOGRAM || h.GetMetric()[0].GetHistogram().GetSampleCount() != 1 {
		t.Fatalf("lua_event_latency %v", h)
	}
	// ?prefix= renames every family
	if p := scrape(t, r, "?prefix=kumomta_"); p["kumomta_total_messages_delivered"] == nil || p["total_messages_delivered"] != nil {
		t.Fatal("prefix not applied")
	}
}

// With 10,000 queues, idle per-queue series are dropped and a scrape
// stays fast.
func TestTenThousandQueuesCardinality(t *testing.T) {
	r := New(time.Minute)
	now := time.Now()
	r.now = func() time.Time { return now }
	sched := map[string]int{}
	ready := map[string]int{}
	for i := 0; i < 10000; i++ {
		site := fmt.Sprintf("unspecified->mx%d.example@smtp_client", i)
		rec := logrecord.Record{Type: logrecord.Delivery, Site: site, Queue: fmt.Sprintf("d%d.example", i)}
		r.ObserveRecord(&rec)
		sched[fmt.Sprintf("d%d.example", i)] = 1 + i%3
		if i%2 == 1 { // half the ready queues were reaped already
			ready[site] = 1
		}
	}
	r.SetQueueSource(func() QueueSizes { return QueueSizes{Scheduled: sched, Ready: ready} })
	start := time.Now()
	rec := httptest.NewRecorder()
	r.TextHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	took := time.Since(start)
	fams := scrape(t, r, "")
	if n := len(fams["total_messages_delivered"].GetMetric()); n != 10001 {
		t.Fatalf("%d delivered series, want 10001", n)
	}
	if n := len(fams["scheduled_count"].GetMetric()); n != 10000 {
		t.Fatalf("%d scheduled_count series", n)
	}
	if n := len(fams["ready_count"].GetMetric()); n != 5001 { // the ready queues + the aggregate
		t.Fatalf("%d ready_count series", n)
	}
	if v, _ := value(fams["ready_count"], "service", "smtp_client"); v != 5000 {
		t.Fatalf("aggregate ready_count %v", v)
	}
	// the time is reported, not asserted: the target is measured by a
	// benchmark (BENCHMARKS.md), never by a timed test
	t.Logf("scrape of 10,000 queues took %v", took)
	// an hour later with the queues drained and reaped: only the
	// aggregates remain
	now = now.Add(time.Hour)
	sched, ready = map[string]int{}, map[string]int{}
	fams = scrape(t, r, "")
	if n := len(fams["total_messages_delivered"].GetMetric()); n != 1 {
		t.Fatalf("%d delivered series after idling, want the aggregate only", n)
	}
	if v, _ := value(fams["total_messages_delivered"], "service", "smtp_client"); v != 10000 {
		t.Fatalf("aggregate lost its count: %v", v)
	}
	if fams["scheduled_count"] != nil {
		t.Fatalf("scheduled_count of reaped queues: %d series", len(fams["scheduled_count"].GetMetric()))
	}
}

// An empty queue keeps its series (0) until it is reaped, and a reaped
// ready queue's delivery counters go at once, not after the idle TTL.
func TestEmptyQueueSeriesUntilReaped(t *testing.T) {
	r := New(time.Hour)
	site := "unspecified->mx.a.example@smtp_client"
	rec := logrecord.Record{Type: logrecord.Delivery, Site: site, Queue: "a.example"}
	r.ObserveRecord(&rec)
	qs := QueueSizes{Scheduled: map[string]int{"a.example": 0}, Ready: map[string]int{site: 0}}
	r.SetQueueSource(func() QueueSizes { return qs })
	fams := scrape(t, r, "")
	if v, ok := value(fams["scheduled_count"], "queue", "a.example"); !ok || v != 0 {
		t.Fatalf("scheduled_count of an empty queue: %v %v", v, ok)
	}
	if v, ok := single(fams["scheduled_queue_count"]); !ok || v != 1 {
		t.Fatalf("scheduled_queue_count %v %v", v, ok)
	}
	if v, ok := single(fams["ready_queue_count"]); !ok || v != 1 {
		t.Fatalf("ready_queue_count %v %v", v, ok)
	}
	if _, ok := value(fams["total_messages_delivered"], "service", "smtp_client:"+site); !ok {
		t.Fatal("no delivered series for the ready queue")
	}
	// reaped
	qs = QueueSizes{Scheduled: map[string]int{}, Ready: map[string]int{}}
	r.ForgetReadyQueue(site)
	fams = scrape(t, r, "")
	if fams["scheduled_count"] != nil {
		t.Fatal("scheduled_count series of a reaped queue")
	}
	if _, ok := value(fams["total_messages_delivered"], "service", "smtp_client:"+site); ok {
		t.Fatal("delivered series of a reaped ready queue")
	}
	if v, _ := value(fams["total_messages_delivered"], "service", "smtp_client"); v != 1 {
		t.Fatalf("aggregate %v", v)
	}
	if v, ok := single(fams["scheduled_queue_count"]); !ok || v != 0 {
		t.Fatalf("scheduled_queue_count after reaping %v %v", v, ok)
	}
}

func TestJSONShape(t *testing.T) {
	r := New(0)
	r.GaugeFunc("memory_usage", "number of bytes of used memory", func() float64 { return 42 })
	rec := logrecord.Record{Type: logrecord.Reception, ReceptionProtocol: "ESMTP"}
	r.ObserveRecord(&rec)
	w := httptest.NewRecorder()
	r.JSONHandler().ServeHTTP(w, httptest.NewRequest("GET", "/metrics.json", nil))
	body, _ := io.ReadAll(w.Body)
	var got map[string]struct {
		Help  string          `json:"help"`
		Type  string          `json:"type"`
		Value json.RawMessage `json:"value"`
	}
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	if m := got["memory_usage"]; m.Type != "gauge" || string(m.Value) != "42" {
		t.Errorf("memory_usage %+v", m)
	}
	if m := got["total_messages_received"]; m.Type != "counter" || !strings.Contains(string(m.Value), `{"service":{"esmtp_listener":1`) {
		t.Errorf("total_messages_received %+v %s", m, m.Value)
	}
}

// single is the value of an unlabelled gauge.
func single(f *dto.MetricFamily) (float64, bool) {
	if f == nil || len(f.GetMetric()) != 1 || f.GetMetric()[0].Gauge == nil {
		return 0, false
	}
	return f.GetMetric()[0].Gauge.GetValue(), true
}
