package main

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// snapshot is what queue-summary and top read from /metrics.
type snapshot struct {
	at                                   time.Time
	received, delivered, transfail, fail float64 // totals
	connections                          float64
	scheduledTotal                       float64
	ready                                map[string]*readyRow
	scheduled                            map[string]float64
}

type readyRow struct {
	name, source, site, proto string
	d, t, f, q, c             float64
}

func fetch(ctx context.Context, c *client) (*snapshot, error) {
	b, err := c.do(ctx, "GET", "/metrics", nil)
	if err != nil {
		return nil, err
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(string(b)))
	if err != nil {
		return nil, fmt.Errorf("parsing /metrics: %w", err)
	}
	s := &snapshot{at: time.Now(), ready: map[string]*readyRow{}, scheduled: map[string]float64{}}
	row := func(service string) *readyRow {
		name, ok := strings.CutPrefix(service, "smtp_client:")
		if !ok {
			return nil
		}
		r := s.ready[name]
		if r == nil {
			r = &readyRow{name: name, proto: "smtp_client"}
			src, rest, ok := strings.Cut(name, "->")
			if ok {
				r.source = src
				r.site = rest
				if i := strings.LastIndexByte(rest, '@'); i >= 0 {
					r.site, r.proto = rest[:i], rest[i+1:]
				}
			} else {
				r.site = name
			}
			s.ready[name] = r
		}
		return r
	}
	each := func(name string, fn func(labels map[string]string, v float64)) {
		f := fams[name]
		if f == nil {
			return
		}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			fn(labels, value(m))
		}
	}
	each("total_messages_received", func(l map[string]string, v float64) { s.received += v })
	for _, x := range []struct {
		name  string
		total *float64
		field func(*readyRow) *float64
	}{
		{"total_messages_delivered", &s.delivered, func(r *readyRow) *float64 { return &r.d }},
		{"total_messages_transfail", &s.transfail, func(r *readyRow) *float64 { return &r.t }},
		{"total_messages_fail", &s.fail, func(r *readyRow) *float64 { return &r.f }},
		{"ready_count", nil, func(r *readyRow) *float64 { return &r.q }},
		{"connection_count", nil, func(r *readyRow) *float64 { return &r.c }},
	} {
		each(x.name, func(l map[string]string, v float64) {
			svc := l["service"]
			if r := row(svc); r != nil {
				*x.field(r) = v
			} else if x.total != nil && svc == "smtp_client" {
				*x.total = v
			}
		})
	}
	each("connection_count", func(l map[string]string, v float64) {
		if !strings.Contains(l["service"], ":") {
			s.connections += v
		}
	})
	each("scheduled_count", func(l map[string]string, v float64) { s.scheduled[l["queue"]] = v })
	each("scheduled_count_total", func(l map[string]string, v float64) { s.scheduledTotal = v })
	return s, nil
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Untyped != nil:
		return m.Untyped.GetValue()
	}
	return 0
}

func queueSummary(ctx context.Context, c *client, args []string, w io.Writer) error {
	fs := newFlags("queue-summary")
	limit := fs.Int("limit", 0, "show at most this many queues of each kind")
	byVolume := fs.Bool("by-volume", false, "order by the number of queued messages instead of by name")
	domain := fs.String("domain", "", "only queues whose name contains this domain")
	if err := parse(fs, args); err != nil {
		return err
	}
	s, err := fetch(ctx, c)
	if err != nil {
		return err
	}
	rows := make([]*readyRow, 0, len(s.ready))
	for _, r := range s.ready {
		if *domain == "" || strings.Contains(r.name, *domain) {
			rows = append(rows, r)
		}
	}
	sort.Slice(rows, func(i, j int) bool {
		if *byVolume && rows[i].q != rows[j].q {
			return rows[i].q > rows[j].q
		}
		return rows[i].name < rows[j].name
	})
	if *limit > 0 && len(rows) > *limit {
		rows = rows[:*limit]
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "SITE\tSOURCE\tPROTO\tD\tT\tF\tQ\tC\t")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.0f\t%.0f\t%.0f\t%.0f\t%.0f\t\n", r.site, r.source, r.proto, r.d, r.t, r.f, r.q, r.c)
	}
	tw.Flush()
	readyStates(ctx, c, w, func(name string) bool { return *domain == "" || strings.Contains(name, *domain) })
	fmt.Fprintln(w)
	names := make([]string, 0, len(s.scheduled))
	for n := range s.scheduled {
		if *domain == "" || strings.Contains(n, *domain) {
			names = append(names, n)
		}
	}
	sort.Slice(names, func(i, j int) bool {
		if *byVolume && s.scheduled[names[i]] != s.scheduled[names[j]] {
			return s.scheduled[names[i]] > s.scheduled[names[j]]
		}
		return names[i] < names[j]
	})
	if *limit > 0 && len(names) > *limit {
		names = names[:*limit]
	}
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "SCHEDULED QUEUE\tCOUNT\t")
	for _, n := range names {
		fmt.Fprintf(tw, "%s\t%.0f\t\n", n, s.scheduled[n])
	}
	return tw.Flush()
}

// top redraws a view of rates and queues every --interval until
// interrupted (or after --iterations views).
func top(ctx context.Context, c *client, args []string, w io.Writer) error {
	fs := newFlags("top")
	interval := fs.Duration("interval", time.Second, "refresh interval")
	iterations := fs.Int("iterations", 0, "stop after this many views (0: until interrupted)")
	if err := parse(fs, args); err != nil {
		return err
	}
	prev, err := fetch(ctx, c)
	if err != nil {
		return err
	}
	for i := 0; *iterations == 0 || i < *iterations; i++ {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(*interval):
		}
		cur, err := fetch(ctx, c)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		secs := cur.at.Sub(prev.at).Seconds()
		rate := func(a, b float64) float64 { return max(a-b, 0) / secs }
		fmt.Fprint(w, "\x1b[H\x1b[2J")
		fmt.Fprintf(w, "kumogo top  %s  %s\n\n", c.base, cur.at.Format("15:04:05"))
		fmt.Fprintf(w, "received %8.1f/s   delivered %8.1f/s   transfail %8.1f/s   fail %8.1f/s\n",
			rate(cur.received, prev.received), rate(cur.delivered, prev.delivered), rate(cur.transfail, prev.transfail), rate(cur.fail, prev.fail))
		readyTotal := 0.0
		for _, r := range cur.ready {
			readyTotal += r.q
		}
		fmt.Fprintf(w, "scheduled %7.0f      ready %11.0f      connections %6.0f\n\n", cur.scheduledTotal, readyTotal, cur.connections)
		rows := make([]*readyRow, 0, len(cur.ready))
		for _, r := range cur.ready {
			rows = append(rows, r)
		}
		sort.Slice(rows, func(i, j int) bool {
			if rows[i].q != rows[j].q {
				return rows[i].q > rows[j].q
			}
			return rows[i].name < rows[j].name
		})
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "READY QUEUE\tQ\tDELIVERED/s\t")
		for j, r := range rows {
			if j == 15 {
				break
			}
			d := r.d
			if p := prev.ready[r.name]; p != nil {
				d = rate(r.d, p.d)
			} else {
				d = 0
			}
			fmt.Fprintf(tw, "%s\t%.0f\t%.1f\t\n", r.name, r.q, d)
		}
		tw.Flush()
		prev = cur
	}
	return nil
}
