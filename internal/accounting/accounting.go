// Package accounting keeps KumoMTA's accounting database: the number of
// messages received and delivered, per day, in an SQLite file that any
// SQLite client reads (`sqlite3 PATH 'select * from accounting'`).
//
// The table is KumoMTA's (kumo.configure_accounting_db_path, and
// crates/kumod/src/accounting.rs for the schema):
//
//	CREATE TABLE accounting (
//	    event_time DATETIME NOT NULL PRIMARY KEY,
//	    received int NOT NULL,
//	    delivered int NOT NULL)
//
// KumoMTA keys its rows by month ("YYYY-MM-01 00:00:00"); kumogo keys them
// by day ("YYYY-MM-DD 00:00:00", UTC), so that a month is the sum of its
// days and the daily volume can still be read. Counts are kept in memory
// and added to the file every flush interval (KumoMTA's is 5 minutes) and
// at Close, so the file costs nothing per message. The SQLite driver is
// modernc.org/sqlite, SQLite translated to Go: no cgo.
package accounting

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// DefaultFlushInterval is KumoMTA's: counts reach the file every 5 minutes.
const DefaultFlushInterval = 5 * time.Minute

// DB counts receptions and deliveries and adds them to the file.
type DB struct {
	path      string
	db        *sql.DB
	log       zerolog.Logger
	received  atomic.Int64
	delivered atomic.Int64

	flushMu sync.Mutex
	stop    chan struct{}
	done    chan struct{}
	once    sync.Once
	now     func() time.Time
}

const schema = `CREATE TABLE IF NOT EXISTS accounting (
    event_time DATETIME NOT NULL PRIMARY KEY,
    received int NOT NULL,
    delivered int NOT NULL
)`

const upsert = `INSERT INTO accounting (event_time, received, delivered) VALUES (?, ?, ?)
ON CONFLICT (event_time) DO UPDATE SET received = received + excluded.received, delivered = delivered + excluded.delivered`

// Open opens (creating it and its table if needed) the database at path
// and flushes the counts every interval (DefaultFlushInterval when 0)
// until Close.
func Open(path string, interval time.Duration, log zerolog.Logger) (*DB, error) {
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(30000)")
	if err != nil {
		return nil, fmt.Errorf("accounting database %s: %w", path, err)
	}
	db.SetMaxOpenConns(1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := db.ExecContext(ctx, schema); err != nil {
		db.Close()
		return nil, fmt.Errorf("accounting database %s: %w", path, err)
	}
	if interval <= 0 {
		interval = DefaultFlushInterval
	}
	a := &DB{path: path, db: db, log: log, stop: make(chan struct{}), done: make(chan struct{}), now: time.Now}
	go a.run(interval)
	return a, nil
}

// Received counts one message received.
func (a *DB) Received() { a.received.Add(1) }

// Delivered counts one delivery.
func (a *DB) Delivered() { a.delivered.Add(1) }

func (a *DB) run(interval time.Duration) {
	defer close(a.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-a.stop:
			return
		case <-t.C:
			if err := a.Flush(context.Background()); err != nil {
				a.log.Error().Err(err).Msg("accounting: will retry at the next flush")
			}
		}
	}
}

// Flush adds the counts gathered since the last flush to today's row. On
// failure they are kept for the next one.
func (a *DB) Flush(ctx context.Context) error {
	a.flushMu.Lock()
	defer a.flushMu.Unlock()
	r, d := a.received.Swap(0), a.delivered.Swap(0)
	if r == 0 && d == 0 {
		return nil
	}
	day := a.now().UTC().Format("2006-01-02") + " 00:00:00"
	if _, err := a.db.ExecContext(ctx, upsert, day, r, d); err != nil {
		a.received.Add(r)
		a.delivered.Add(d)
		return fmt.Errorf("accounting: recording %d receptions and %d deliveries in %s: %w", r, d, a.path, err)
	}
	return nil
}

// Close stops the flusher, flushes what is left and closes the file.
func (a *DB) Close(ctx context.Context) error {
	a.once.Do(func() { close(a.stop) })
	<-a.done
	err := a.Flush(ctx)
	if cerr := a.db.Close(); err == nil {
		err = cerr
	}
	return err
}
