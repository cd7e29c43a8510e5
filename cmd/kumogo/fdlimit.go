package main

import (
	"fmt"

	"github.com/kumogo/kumogo/queue/spool"
)

// File descriptors the daemon needs beside its inbound connections. They
// are estimates to warn against, not limits that are enforced:
//
//   - a RocksDB spool is a pebble store, which keeps up to 1,000 table
//     files open (pebble's MaxOpenFiles default), and there are two
//     (data and meta); a LocalDisk spool holds a few files per write in
//     flight, counted with the connections;
//   - delivery keeps a connection per dispatcher: 32 per ready queue by
//     default (connection_limit), and a node talks to tens of sites at
//     once; 1,024 is budgeted;
//   - logs, DNS, the HTTP listener, pprof and the runtime: 256.
const (
	fdPerPebbleSpool = 1000
	fdEgress         = 1024
	fdOther          = 256
)

// fdNeed is what the listeners and the engine may hold open at once.
type fdNeed struct {
	connections, spool, egress, other uint64
}

func (n fdNeed) total() uint64 { return n.connections + n.spool + n.egress + n.other }

// fdNeeds adds up the listeners' max_connections and the spools' and
// delivery's needs. Called after init, when both are known.
func (d *daemon) fdNeeds() fdNeed {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := fdNeed{connections: d.maxConns, egress: fdEgress, other: fdOther}
	for _, s := range d.spools {
		if s.Kind == spool.KindRocksDB {
			n.spool += fdPerPebbleSpool
		}
	}
	return n
}

// warnFileLimit says at start when the open file limit (RLIMIT_NOFILE,
// already raised to its hard limit) is below what the listeners and the
// engine may need: past it, accept fails and new clients wait in the
// kernel's backlog. README's tuning section says how to raise it.
func (d *daemon) warnFileLimit(limit uint64) {
	if limit == 0 {
		return // unknown (no RLIMIT_NOFILE on this system)
	}
	n := d.fdNeeds()
	if n.total() <= limit {
		return
	}
	d.log.Warn().
		Uint64("nofile", limit).
		Uint64("max_connections", n.connections).
		Uint64("spool", n.spool).
		Uint64("egress", n.egress).
		Uint64("other", n.other).
		Msg(fmt.Sprintf("the open file limit (%d) is below what this configuration may need (%d: the listeners' max_connections %d, spool %d, delivery %d, other %d); raise the hard RLIMIT_NOFILE (LimitNOFILE= for systemd, ulimit -Hn) or lower max_connections",
			limit, n.total(), n.connections, n.spool, n.egress, n.other))
}
