package metrics

import (
	"bufio"
	"encoding/json"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"google.golang.org/protobuf/proto"
)

// TextHandler serves the Prometheus text exposition format; KumoMTA's
// optional ?prefix= is prepended to every metric name.
func (r *Registry) TextHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		fams, err := r.reg.Gather()
		if err != nil {
			http.Error(w, "Error: "+err.Error(), http.StatusInternalServerError)
			return
		}
		prefix := req.URL.Query().Get("prefix")
		format := expfmt.NewFormat(expfmt.TypeTextPlain)
		w.Header().Set("Content-Type", string(format))
		bw := bufio.NewWriterSize(w, 64*1024)
		defer bw.Flush()
		enc := expfmt.NewEncoder(bw, format)
		for _, f := range fams {
			if prefix != "" {
				f = proto.Clone(f).(*dto.MetricFamily)
				f.Name = proto.String(prefix + f.GetName())
			}
			if err := enc.Encode(f); err != nil {
				return
			}
		}
		var buf []byte
		for _, f := range r.bigFamilies() {
			buf = f.appendText(buf[:0], prefix)
			if _, err := bw.Write(buf); err != nil {
				return
			}
		}
	})
}

// appendText writes the family in the text exposition format, samples
// sorted by label value.
func (f *family) appendText(b []byte, prefix string) []byte {
	if len(f.points) == 0 {
		return b
	}
	name := prefix + f.name
	b = append(b, "# HELP "+name+" "+f.help+"\n# TYPE "+name+" "+f.typ+"\n"...)
	// slices.SortFunc, not sort.Slice: no reflection on the swaps, which
	// matters with 10,000 queues per scrape
	slices.SortFunc(f.points, func(a, b point) int { return strings.Compare(a.label, b.label) })
	for _, p := range f.points {
		b = append(b, name...)
		if f.label != "" {
			b = append(b, '{')
			b = append(b, f.label...)
			b = append(b, `="`...)
			b = appendEscaped(b, p.label)
			b = append(b, `"}`...)
		}
		b = append(b, ' ')
		b = strconv.AppendFloat(b, p.value, 'g', -1, 64)
		b = append(b, '\n')
	}
	return b
}

// appendEscaped escapes a label value as the text format requires.
func appendEscaped(b []byte, s string) []byte {
	if !strings.ContainsAny(s, "\\\"\n") {
		return append(b, s...)
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\':
			b = append(b, `\\`...)
		case '"':
			b = append(b, `\"`...)
		case '\n':
			b = append(b, `\n`...)
		default:
			b = append(b, c)
		}
	}
	return b
}

// JSONHandler serves KumoMTA's /metrics.json shape: per metric name
// {"help", "type", "value"}, where value is a number for an unlabelled
// metric and {label: {label value: number}} for a labelled one; a
// histogram's value is {"count", "sum", "buckets"} (per label value when
// labelled).
func (r *Registry) JSONHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		fams, err := r.reg.Gather()
		if err != nil {
			http.Error(w, "Error: "+err.Error(), http.StatusInternalServerError)
			return
		}
		out := make(map[string]any, len(fams)+10)
		for _, f := range fams {
			out[f.GetName()] = familyJSON(f)
		}
		for _, f := range r.bigFamilies() {
			if len(f.points) == 0 {
				continue
			}
			entry := map[string]any{"help": f.help, "type": f.typ}
			if f.label == "" {
				entry["value"] = f.points[0].value
			} else {
				vals := make(map[string]float64, len(f.points))
				for _, p := range f.points {
					vals[p.label] = p.value
				}
				entry["value"] = map[string]any{f.label: vals}
			}
			out[f.name] = entry
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(out)
	})
}

func familyJSON(f *dto.MetricFamily) map[string]any {
	typ := "gauge"
	switch f.GetType() {
	case dto.MetricType_COUNTER:
		typ = "counter"
	case dto.MetricType_HISTOGRAM:
		typ = "histogram"
	}
	entry := map[string]any{"help": f.GetHelp(), "type": typ}
	value := func(m *dto.Metric) any {
		switch {
		case m.Counter != nil:
			return finite(m.Counter.GetValue())
		case m.Gauge != nil:
			return finite(m.Gauge.GetValue())
		case m.Histogram != nil:
			buckets := make([][2]float64, 0, len(m.Histogram.Bucket))
			for _, b := range m.Histogram.Bucket {
				buckets = append(buckets, [2]float64{b.GetUpperBound(), float64(b.GetCumulativeCount())})
			}
			return map[string]any{"count": m.Histogram.GetSampleCount(), "sum": m.Histogram.GetSampleSum(), "buckets": buckets}
		case m.Untyped != nil:
			return finite(m.Untyped.GetValue())
		}
		return nil
	}
	ms := f.GetMetric()
	if len(ms) == 1 && len(ms[0].GetLabel()) == 0 {
		entry["value"] = value(ms[0])
		return entry
	}
	byLabel := map[string]map[string]any{}
	for _, m := range ms {
		for _, l := range m.GetLabel() {
			if byLabel[l.GetName()] == nil {
				byLabel[l.GetName()] = map[string]any{}
			}
			byLabel[l.GetName()][l.GetValue()] = value(m)
		}
	}
	entry["value"] = byLabel
	return entry
}

func finite(v float64) float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0
	}
	return v
}
