package spool

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kumogo/kumogo/internal/config"
)

// defaultFloor is KumoMTA's default for min_free_space and min_free_inodes.
const defaultFloor = "10%"

// healthTTL is how long a statfs result is reused.
const healthTTL = time.Second

// floor is a minimum amount of free space or free inodes: either a fraction
// of the file system's total or an absolute number.
type floor struct {
	spec      string
	percent   float64 // used when isPercent
	absolute  uint64
	isPercent bool
}

// below reports whether free (of total) is under the floor.
func (f floor) below(free, total uint64) bool {
	if f.isPercent {
		if total == 0 {
			return false // the file system does not report this resource
		}
		return float64(free)*100 < f.percent*float64(total)
	}
	return free < f.absolute
}

// floors holds both floors of one spool.
type floors struct {
	space, inodes floor
}

func parseFloors(cfg config.Spool) (floors, error) {
	space, err := parseFloor(cfg.MinFreeSpace, true)
	if err != nil {
		return floors{}, fmt.Errorf("min_free_space: %w", err)
	}
	inodes, err := parseFloor(cfg.MinFreeInodes, false)
	if err != nil {
		return floors{}, fmt.Errorf("min_free_inodes: %w", err)
	}
	return floors{space: space, inodes: inodes}, nil
}

// parseFloor parses "10%", "0.5%" or an absolute amount: for space a byte
// size such as "2GB", "512 MiB", "1.5G" or "1000000"; for inodes a count
// such as "100000" or "100k". Decimal units (k, KB, M, MB, ...) are powers
// of 1000 and binary ones (KiB, MiB, ...) powers of 1024. Empty means "10%".
func parseFloor(s string, bytes bool) (floor, error) {
	spec := strings.TrimSpace(s)
	if spec == "" {
		spec = defaultFloor
	}
	if num, ok := strings.CutSuffix(spec, "%"); ok {
		p, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
		if err != nil || p < 0 || p > 100 {
			return floor{}, fmt.Errorf("invalid percentage %q", s)
		}
		return floor{spec: spec, percent: p, isPercent: true}, nil
	}
	i := 0
	for i < len(spec) && (spec[i] >= '0' && spec[i] <= '9' || spec[i] == '.') {
		i++
	}
	n, err := strconv.ParseFloat(spec[:i], 64)
	if err != nil || n < 0 {
		return floor{}, fmt.Errorf("invalid amount %q", s)
	}
	unit := strings.ToLower(strings.TrimSpace(spec[i:]))
	if bytes {
		unit = strings.TrimSuffix(unit, "b") // "GB" -> "g", "GiB" -> "gi", "B" -> ""
	}
	mult := 1.0
	switch unit {
	case "":
	case "k":
		mult = 1e3
	case "m":
		mult = 1e6
	case "g":
		mult = 1e9
	case "t":
		mult = 1e12
	case "ki":
		mult = 1 << 10
	case "mi":
		mult = 1 << 20
	case "gi":
		mult = 1 << 30
	case "ti":
		mult = 1 << 40
	default:
		return floor{}, fmt.Errorf("invalid unit in %q", s)
	}
	return floor{spec: spec, absolute: uint64(n * mult)}, nil
}

// health checks a spool's file system against its floors, caching the
// answer for healthTTL.
type health struct {
	path   string
	floors floors
	now    func() time.Time

	mu      sync.Mutex
	checked time.Time
	err     error // nil when healthy
}

func newHealth(path string, f floors) *health {
	return &health{path: path, floors: f, now: time.Now}
}

// get returns nil when the file system is above both floors, or why not
// (wrapping ErrDiskFull when a floor is the reason). The answer is cached
// for healthTTL.
func (h *health) get() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	now := h.now()
	if !h.checked.IsZero() && now.Sub(h.checked) >= 0 && now.Sub(h.checked) < healthTTL {
		return h.err
	}
	h.err = h.check()
	h.checked = now
	return h.err
}

func (h *health) check() error {
	var st unix.Statfs_t
	if err := unix.Statfs(h.path, &st); err != nil {
		return fmt.Errorf("cannot check free space: %w", err)
	}
	bsize := uint64(st.Bsize)
	free, total := st.Bavail*bsize, st.Blocks*bsize
	if h.floors.space.below(free, total) {
		return fmt.Errorf("%w: %s free of %s on %s, below min_free_space %s",
			ErrDiskFull, humanBytes(free), humanBytes(total), h.path, h.floors.space.spec)
	}
	if h.floors.inodes.below(st.Ffree, st.Files) {
		return fmt.Errorf("%w: %d inodes free of %d on %s, below min_free_inodes %s",
			ErrDiskFull, st.Ffree, st.Files, h.path, h.floors.inodes.spec)
	}
	return nil
}

func humanBytes(n uint64) string {
	const unit = 1000
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %cB", float64(n)/float64(div), "kMGTPE"[exp])
}

// gate is what beginPut needs from a store: its error annotation and its
// open/closed guard.
type gate interface {
	errf(op string, err error) error
	enter() error
}

// beginPut runs the checks every Put makes before writing: a valid id, a
// live ctx, the free-space floors, and an open store (entered; the caller
// must call exit).
func beginPut(ctx context.Context, id string, g gate, h *health) error {
	if err := checkID(id); err != nil {
		return g.errf("put", err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := h.get(); err != nil {
		return g.errf("put "+id, err)
	}
	if err := g.enter(); err != nil {
		return g.errf("put "+id, err)
	}
	return nil
}
