package accounting

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// TestDailyRowsAccumulate: counts go to the row of their UTC day; flushes
// on the same day add up, also across a reopen of the file; nothing is
// written when nothing was counted.
func TestDailyRowsAccumulate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "accounting.db")
	ctx := context.Background()
	a, err := Open(path, time.Hour, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	day1 := time.Date(2026, 3, 4, 23, 59, 0, 0, time.UTC)
	a.now = func() time.Time { return day1 }
	for i := 0; i < 3; i++ {
		a.Received()
	}
	a.Delivered()
	if err := a.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	a.Received()
	a.Delivered()
	if err := a.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	a.now = func() time.Time { return day1.Add(2 * time.Minute) } // the next day
	a.Delivered()
	if err := a.Close(ctx); err != nil {
		t.Fatal(err)
	}
	b, err := Open(path, time.Hour, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	b.now = func() time.Time { return day1 }
	b.Received()
	if err := b.Close(ctx); err != nil {
		t.Fatal(err)
	}

	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query("SELECT event_time || '', received, delivered FROM accounting ORDER BY event_time")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got []string
	for rows.Next() {
		var day string
		var r, d int
		if err := rows.Scan(&day, &r, &d); err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprintf("%s %d %d", day, r, d))
	}
	want := []string{"2026-03-04 00:00:00 5 2", "2026-03-05 00:00:00 0 1"}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("rows %q, want %q", got, want)
	}
}
