package main

import (
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kumogo/kumogo/internal/metrics"
)

// registerGauges adds the daemon's scrape-time figures: connections,
// memory, free disk space of the spools and log directories, and queue
// sizes once the queue manager runs.
func (d *daemon) registerGauges(reg *metrics.Registry) {
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name:        "connection_count",
		Help:        "number of active connections",
		ConstLabels: prometheus.Labels{"service": "esmtp_listener"},
	}, func() float64 {
		d.mu.Lock()
		defer d.mu.Unlock()
		n := 0
		for _, l := range d.listeners {
			n += l.ActiveConnections()
		}
		return float64(n)
	}))
	reg.GaugeFunc("memory_usage", "number of bytes of used memory", func() float64 { return float64(rss()) })
	reg.GaugeFunc("lua_count", "the number of lua contexts currently alive", func() float64 {
		if d.rt == nil {
			return 0
		}
		alive, _ := d.rt.PoolStats()
		return float64(alive)
	})
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "lua_load_count", Help: "how many times the policy lua script has been loaded into a new context",
	}, func() float64 {
		if d.rt == nil {
			return 0
		}
		return float64(d.rt.LoadCount())
	}))
	reg.GaugeFunc("lua_spare_count", "the number of lua contexts available for reuse in the pool", func() float64 {
		if d.rt == nil {
			return 0
		}
		_, spare := d.rt.PoolStats()
		return float64(spare)
	})
	reg.MustRegister(&diskCollector{d: d})
}

// rss is the resident set size from /proc/self/statm.
func rss() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, _ := strconv.ParseInt(f[1], 10, 64)
	return pages * int64(os.Getpagesize())
}

var (
	descDiskBytes   = prometheus.NewDesc("disk_free_bytes", "number of available bytes in a monitored location", []string{"name"}, nil)
	descDiskPct     = prometheus.NewDesc("disk_free_percent", "percentage of available bytes in a monitored location", []string{"name"}, nil)
	descInodes      = prometheus.NewDesc("disk_free_inodes", "number of available inodes in a monitored location", []string{"name"}, nil)
	descInodesPct   = prometheus.NewDesc("disk_free_inodes_percent", "percentage of available inodes in a monitored location", []string{"name"}, nil)
	diskDescriptors = []*prometheus.Desc{descDiskBytes, descDiskPct, descInodes, descInodesPct}
)

// diskCollector reports free space where the spools and logs live, named
// as KumoMTA names them ("data spool", "meta spool", "log dir <path>").
type diskCollector struct{ d *daemon }

func (c *diskCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range diskDescriptors {
		ch <- d
	}
}

func (c *diskCollector) Collect(ch chan<- prometheus.Metric) {
	c.d.mu.Lock()
	places := map[string]string{}
	for name, s := range c.d.spools {
		places[name+" spool"] = s.Path
	}
	for _, dir := range c.d.logDirs {
		places["log dir "+dir] = dir
	}
	c.d.mu.Unlock()
	for name, path := range places {
		var st syscall.Statfs_t
		if err := syscall.Statfs(path, &st); err != nil {
			continue
		}
		free := float64(st.Bavail) * float64(st.Bsize)
		total := float64(st.Blocks) * float64(st.Bsize)
		ch <- prometheus.MustNewConstMetric(descDiskBytes, prometheus.GaugeValue, free, name)
		if total > 0 {
			ch <- prometheus.MustNewConstMetric(descDiskPct, prometheus.GaugeValue, 100*free/total, name)
		}
		ch <- prometheus.MustNewConstMetric(descInodes, prometheus.GaugeValue, float64(st.Ffree), name)
		if st.Files > 0 {
			ch <- prometheus.MustNewConstMetric(descInodesPct, prometheus.GaugeValue, 100*float64(st.Ffree)/float64(st.Files), name)
		}
	}
}
