package tsa

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// DefaultDBPath is KumoMTA's default for tsa.configure_tsa_db_path.
const DefaultDBPath = "/var/spool/kumomta/tsa.db"

// The tables: threshold events, ready-queue and scheduled-queue
// suspensions, bounces and configuration overrides. Every effect row is
// keyed by its rule hash (rule + action + scope), so a rule that matches
// again extends the effect rather than adding a second one.
const schema = `
CREATE TABLE IF NOT EXISTS events (scope TEXT NOT NULL, ts INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS events_scope ON events (scope, ts);
CREATE TABLE IF NOT EXISTS ready_q_suspensions (rule_hash TEXT PRIMARY KEY, site_name TEXT NOT NULL,
  source TEXT NOT NULL, reason TEXT NOT NULL, expires INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS sched_q_suspensions (rule_hash TEXT PRIMARY KEY, tenant TEXT NOT NULL,
  domain TEXT NOT NULL, campaign TEXT, reason TEXT NOT NULL, expires INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS bounces (rule_hash TEXT PRIMARY KEY, domain TEXT NOT NULL, tenant TEXT,
  campaign TEXT, reason TEXT NOT NULL, expires INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS config_overrides (rule_hash TEXT PRIMARY KEY, domain TEXT NOT NULL,
  mx_rollup INTEGER NOT NULL, source TEXT NOT NULL, name TEXT NOT NULL, value TEXT NOT NULL,
  reason TEXT NOT NULL, expires INTEGER NOT NULL);
`

// Store is the daemon's SQLite database.
type Store struct{ db *sql.DB }

// OpenStore opens (creating) the database at path; ":memory:" keeps it in
// memory, as with KumoMTA's sqlite URI names.
func OpenStore(ctx context.Context, path string) (*Store, error) {
	dsn := "file:" + path + "?_pragma=busy_timeout(30000)&_pragma=journal_mode(WAL)"
	if path == ":memory:" || strings.HasPrefix(path, "file:") {
		dsn = path
	}
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("tsa database %s: %w", path, err)
	}
	db.SetMaxOpenConns(1)
	if _, err := db.ExecContext(ctx, schema); err != nil {
		db.Close()
		return nil, fmt.Errorf("tsa database %s: %w", path, err)
	}
	return &Store{db: db}, nil
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// recordEvent stores one match of a threshold rule at now and returns how
// many matches of scope fall within the window ending at now. Older
// events are pruned.
func (s *Store) recordEvent(ctx context.Context, scope string, now time.Time, window time.Duration) (int, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	cut := now.Add(-window).UnixNano()
	if _, err := tx.ExecContext(ctx, `DELETE FROM events WHERE scope = ? AND ts <= ?`, scope, cut); err != nil {
		return 0, err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO events (scope, ts) VALUES (?, ?)`, scope, now.UnixNano()); err != nil {
		return 0, err
	}
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM events WHERE scope = ?`, scope).Scan(&n); err != nil {
		return 0, err
	}
	return n, tx.Commit()
}

// ReadyQSuspension suspends a ready queue: the site from one source.
type ReadyQSuspension struct {
	RuleHash string    `json:"rule_hash"`
	SiteName string    `json:"site_name"`
	Reason   string    `json:"reason"`
	Source   string    `json:"source"`
	Expires  time.Time `json:"expires"`
}

// SchedQSuspension suspends the scheduled queues of a tenant (and
// campaign) to a domain.
type SchedQSuspension struct {
	RuleHash string    `json:"rule_hash"`
	Tenant   string    `json:"tenant"`
	Domain   string    `json:"domain"`
	Campaign *string   `json:"campaign"`
	Reason   string    `json:"reason"`
	Expires  time.Time `json:"expires"`
}

// SchedQBounce bounces the scheduled queues of a domain (and tenant,
// campaign).
type SchedQBounce struct {
	RuleHash string    `json:"rule_hash"`
	Domain   string    `json:"domain"`
	Tenant   *string   `json:"tenant"`
	Campaign *string   `json:"campaign"`
	Reason   string    `json:"reason"`
	Expires  time.Time `json:"expires"`
}

// Suspensions is the body of /get_suspension_v1/suspended.json.
type Suspensions struct {
	ReadyQ []ReadyQSuspension `json:"ready_q"`
	SchedQ []SchedQSuspension `json:"sched_q"`
}

// ConfigOverride is one SetConfig effect.
type ConfigOverride struct {
	RuleHash string
	Domain   string // the site name when MXRollup
	MXRollup bool
	Source   string
	Name     string
	Value    any
	Reason   string
	Expires  time.Time
}

// extend keeps the later expiry of an existing row.
const extendExpiry = ` ON CONFLICT (rule_hash) DO UPDATE SET expires = max(expires, excluded.expires), reason = excluded.reason`

func (s *Store) putReadyQ(ctx context.Context, v ReadyQSuspension) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO ready_q_suspensions (rule_hash, site_name, source, reason, expires) VALUES (?, ?, ?, ?, ?)`+extendExpiry,
		v.RuleHash, v.SiteName, v.Source, v.Reason, v.Expires.UnixNano())
	return err
}

func (s *Store) putSchedQ(ctx context.Context, v SchedQSuspension) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO sched_q_suspensions (rule_hash, tenant, domain, campaign, reason, expires) VALUES (?, ?, ?, ?, ?, ?)`+extendExpiry,
		v.RuleHash, v.Tenant, v.Domain, v.Campaign, v.Reason, v.Expires.UnixNano())
	return err
}

func (s *Store) putBounce(ctx context.Context, v SchedQBounce) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO bounces (rule_hash, domain, tenant, campaign, reason, expires) VALUES (?, ?, ?, ?, ?, ?)`+extendExpiry,
		v.RuleHash, v.Domain, v.Tenant, v.Campaign, v.Reason, v.Expires.UnixNano())
	return err
}

func (s *Store) putConfig(ctx context.Context, v ConfigOverride) error {
	val, err := json.Marshal(v.Value)
	if err != nil {
		return err
	}
	_, err = s.db.ExecContext(ctx, `INSERT INTO config_overrides (rule_hash, domain, mx_rollup, source, name, value, reason, expires) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`+extendExpiry+`, value = excluded.value`,
		v.RuleHash, v.Domain, v.MXRollup, v.Source, v.Name, string(val), v.Reason, v.Expires.UnixNano())
	return err
}

// Suspensions returns the suspensions that have not expired at now.
func (s *Store) Suspensions(ctx context.Context, now time.Time) (Suspensions, error) {
	out := Suspensions{ReadyQ: []ReadyQSuspension{}, SchedQ: []SchedQSuspension{}}
	rows, err := s.db.QueryContext(ctx, `SELECT rule_hash, site_name, source, reason, expires FROM ready_q_suspensions WHERE expires > ? ORDER BY expires, rule_hash`, now.UnixNano())
	if err != nil {
		return out, err
	}
	for rows.Next() {
		var v ReadyQSuspension
		var exp int64
		if err := rows.Scan(&v.RuleHash, &v.SiteName, &v.Source, &v.Reason, &exp); err != nil {
			rows.Close()
			return out, err
		}
		v.Expires = time.Unix(0, exp).UTC()
		out.ReadyQ = append(out.ReadyQ, v)
	}
	rows.Close()
	rows, err = s.db.QueryContext(ctx, `SELECT rule_hash, tenant, domain, campaign, reason, expires FROM sched_q_suspensions WHERE expires > ? ORDER BY expires, rule_hash`, now.UnixNano())
	if err != nil {
		return out, err
	}
	defer rows.Close()
	for rows.Next() {
		var v SchedQSuspension
		var exp int64
		var camp sql.NullString
		if err := rows.Scan(&v.RuleHash, &v.Tenant, &v.Domain, &camp, &v.Reason, &exp); err != nil {
			return out, err
		}
		if camp.Valid {
			v.Campaign = &camp.String
		}
		v.Expires = time.Unix(0, exp).UTC()
		out.SchedQ = append(out.SchedQ, v)
	}
	return out, rows.Err()
}

// Bounces returns the bounces that have not expired at now.
func (s *Store) Bounces(ctx context.Context, now time.Time) ([]SchedQBounce, error) {
	out := []SchedQBounce{}
	rows, err := s.db.QueryContext(ctx, `SELECT rule_hash, domain, tenant, campaign, reason, expires FROM bounces WHERE expires > ? ORDER BY expires, rule_hash`, now.UnixNano())
	if err != nil {
		return out, err
	}
	defer rows.Close()
	for rows.Next() {
		var v SchedQBounce
		var exp int64
		var tenant, camp sql.NullString
		if err := rows.Scan(&v.RuleHash, &v.Domain, &tenant, &camp, &v.Reason, &exp); err != nil {
			return out, err
		}
		if tenant.Valid {
			v.Tenant = &tenant.String
		}
		if camp.Valid {
			v.Campaign = &camp.String
		}
		v.Expires = time.Unix(0, exp).UTC()
		out = append(out, v)
	}
	return out, rows.Err()
}

// Configs returns the configuration overrides that have not expired at
// now, ordered as KumoMTA's export orders them (expiry, domain, source,
// name).
func (s *Store) Configs(ctx context.Context, now time.Time) ([]ConfigOverride, error) {
	var out []ConfigOverride
	rows, err := s.db.QueryContext(ctx, `SELECT rule_hash, domain, mx_rollup, source, name, value, reason, expires FROM config_overrides WHERE expires > ? ORDER BY expires, domain, source, name`, now.UnixNano())
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var v ConfigOverride
		var exp int64
		var val string
		if err := rows.Scan(&v.RuleHash, &v.Domain, &v.MXRollup, &v.Source, &v.Name, &val, &v.Reason, &exp); err != nil {
			return nil, err
		}
		if v.Value, err = decodeValue(val); err != nil {
			return nil, fmt.Errorf("tsa: config override %s: %w", v.Name, err)
		}
		v.Expires = time.Unix(0, exp).UTC()
		out = append(out, v)
	}
	return out, rows.Err()
}

// Prune deletes rows that expired before now.
func (s *Store) Prune(ctx context.Context, now time.Time) error {
	for _, t := range []string{"ready_q_suspensions", "sched_q_suspensions", "bounces", "config_overrides"} {
		if _, err := s.db.ExecContext(ctx, `DELETE FROM `+t+` WHERE expires <= ?`, now.UnixNano()); err != nil {
			return err
		}
	}
	return nil
}

// decodeValue reads a stored override value back with its integers as
// integers: a connection_limit of 1 must be served as 1, not 1.0, which
// the nodes' shaping loader refuses.
func decodeValue(val string) (any, error) {
	dec := json.NewDecoder(strings.NewReader(val))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return numbers(v), nil
}

func numbers(v any) any {
	switch x := v.(type) {
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return i
		}
		f, _ := x.Float64()
		return f
	case []any:
		for i := range x {
			x[i] = numbers(x[i])
		}
	case map[string]any:
		for k := range x {
			x[k] = numbers(x[k])
		}
	}
	return v
}
