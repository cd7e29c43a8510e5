package queue

import (
	"fmt"
	"net/http/httptest"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/kumogo/kumogo/internal/config"
	"github.com/kumogo/kumogo/internal/logrecord"
	"github.com/kumogo/kumogo/internal/message"
	"github.com/kumogo/kumogo/internal/metrics"
)

// BenchmarkScrapeTenThousandQueues: one GET /metrics of a daemon whose
// scheduler holds 10,000 scheduled queues (10 waiting messages each) and
// 10,000 ready queues (one message each), with a delivery service series
// per ready queue: the scheduler's pass over its queues plus the text
// encoding. Run with
//
//	go test -run '^$' -bench ScrapeTenThousandQueues -benchtime 20x ./queue/
func BenchmarkScrapeTenThousandQueues(b *testing.B) {
	const queues, perQueue = 10000, 10
	m, err := New(Options{Policy: &fakePolicy{cfg: config.DefaultQueueConfig(), path: config.DefaultEgressPath()},
		Spool: &memSpool{ids: map[string]bool{}}, Router: &fakeRouter{}, Connector: &fakeConnector{}, Log: zerolog.Nop()})
	if err != nil {
		b.Fatal(err)
	}
	gen := message.NewIDGenerator()
	reg := metrics.New(0)
	later := time.Now().Add(time.Hour)
	for q := 0; q < queues; q++ {
		domain := fmt.Sprintf("d%d.example", q)
		for i := 0; i < perQueue; i++ {
			msg := message.New(gen, message.Address{User: "s", Domain: "x.example"}, []message.Address{{User: "r", Domain: domain}}, []byte("Subject: t\r\n\r\nx\r\n"))
			m.schedule(&entry{msg: msg, queue: domain, index: -1}, later)
		}
		site := fmt.Sprintf("mx%d.example", q)
		name := "unspecified->" + site + "@smtp_client"
		rq := newReadyQueue(m, name, site, config.DefaultEgressPath(), config.EgressSource{Name: "unspecified"}, siteRoute(site), "unspecified", 0)
		msg := message.New(gen, message.Address{User: "s", Domain: "x.example"}, []message.Address{{User: "r", Domain: domain}}, []byte("Subject: t\r\n\r\nx\r\n"))
		rq.items = append(rq.items, &entry{msg: msg, queue: domain, index: -1})
		m.ready[name] = rq
		reg.ObserveRecord(&logrecord.Record{Type: logrecord.Delivery, Site: name, Queue: domain})
	}
	reg.SetQueueSource(func() metrics.QueueSizes {
		s, r := m.QueueSizes()
		return metrics.QueueSizes{Scheduled: s, Ready: r}
	})
	h := reg.TextHandler()
	cpu := func() time.Duration {
		var ru syscall.Rusage
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	b.ResetTimer()
	cpu0 := cpu()
	for i := 0; i < b.N; i++ {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		if rec.Code != 200 || rec.Body.Len() < queues*100 {
			b.Fatalf("scrape: %d, %d bytes", rec.Code, rec.Body.Len())
		}
	}
	// wall time, and the process's CPU time (all threads, GC included),
	// which says more on a shared machine
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/scrape")
	b.ReportMetric(float64((cpu()-cpu0).Microseconds())/1000/float64(b.N), "cpu-ms/scrape")
}
