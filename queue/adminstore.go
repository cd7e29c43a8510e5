package queue

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/kumogo/kumogo/internal/adminapi"
	"github.com/kumogo/kumogo/internal/message"
)

// The administrative rules (bounces, scheduled queue suspensions, ready
// queue suspensions) in effect. They are kept in one small JSON file,
// written whole to a temporary file, fsynced and renamed over the old one
// (then the directory is fsynced) at every change, so that a restart finds
// every rule that was acknowledged and not yet expired. The file is read
// once, when the Manager is built, before the spool is enumerated.

type bounceRule struct {
	ID              string             `json:"id"`
	Sel             adminapi.Selection `json:"selection"`
	Reason          string             `json:"reason"`
	SuppressLogging bool               `json:"suppress_logging,omitempty"`
	Expires         time.Time          `json:"expires"`
	Bounced         map[string]int     `json:"bounced,omitempty"`
}

type suspendRule struct {
	ID      string             `json:"id"`
	Sel     adminapi.Selection `json:"selection"`
	Reason  string             `json:"reason"`
	Expires time.Time          `json:"expires"`
}

type readySuspendRule struct {
	ID      string    `json:"id"`
	Name    string    `json:"name"`
	Reason  string    `json:"reason"`
	Expires time.Time `json:"expires"`
}

// adminRules holds the rules. n counts them so that the scheduler's hot
// path skips the lock while there are none.
type adminRules struct {
	path string
	log  zerolog.Logger

	mu   sync.Mutex
	file adminFile
	n    atomic.Int32
	// cancels counts cancelled rules (see Manager.hold)
	cancels atomic.Uint64
	saveMu  sync.Mutex // orders the writes of the file
}

type adminFile struct {
	Bounces          []*bounceRule       `json:"bounces"`
	Suspensions      []*suspendRule      `json:"suspensions"`
	ReadySuspensions []*readySuspendRule `json:"ready_suspensions"`
}

// load reads the rules file; a missing file is no rules. A file that does
// not parse is set aside (renamed with a .corrupt suffix) and logged.
func (a *adminRules) load() error {
	if a.path == "" {
		return nil
	}
	b, err := os.ReadFile(a.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("queue: reading the admin rules %s: %w", a.path, err)
	}
	var f adminFile
	if err := json.Unmarshal(b, &f); err != nil {
		aside := a.path + ".corrupt"
		a.log.Error().Err(err).Str("path", a.path).Str("moved_to", aside).Msg("admin rules file does not parse; starting without it")
		_ = os.Rename(a.path, aside)
		return nil
	}
	now := time.Now()
	a.mu.Lock()
	a.file = f
	a.pruneLocked(now)
	n := a.countLocked()
	a.mu.Unlock()
	if n > 0 {
		a.log.Info().Int("rules", n).Str("path", a.path).Msg("admin bounces and suspensions restored")
	}
	return nil
}

func (a *adminRules) countLocked() int {
	n := len(a.file.Bounces) + len(a.file.Suspensions) + len(a.file.ReadySuspensions)
	a.n.Store(int32(n))
	return n
}

// pruneLocked drops expired rules; it reports whether any went.
func (a *adminRules) pruneLocked(now time.Time) bool {
	before := len(a.file.Bounces) + len(a.file.Suspensions) + len(a.file.ReadySuspensions)
	a.file.Bounces = slices.DeleteFunc(a.file.Bounces, func(r *bounceRule) bool { return !r.Expires.After(now) })
	a.file.Suspensions = slices.DeleteFunc(a.file.Suspensions, func(r *suspendRule) bool { return !r.Expires.After(now) })
	a.file.ReadySuspensions = slices.DeleteFunc(a.file.ReadySuspensions, func(r *readySuspendRule) bool { return !r.Expires.After(now) })
	return a.countLocked() != before
}

// save writes the rules file durably.
func (a *adminRules) save() error {
	if a.path == "" {
		return nil
	}
	a.saveMu.Lock()
	defer a.saveMu.Unlock()
	a.mu.Lock()
	b, err := json.MarshalIndent(&a.file, "", "  ")
	a.mu.Unlock()
	if err != nil {
		return err
	}
	dir := filepath.Dir(a.path)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("queue: saving the admin rules: %w", err)
	}
	tmp := a.path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return fmt.Errorf("queue: saving the admin rules: %w", err)
	}
	_, err = f.Write(append(b, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, a.path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("queue: saving the admin rules: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		err = d.Sync()
		d.Close()
		if err != nil {
			return fmt.Errorf("queue: saving the admin rules: %w", err)
		}
	}
	return nil
}

// matches reports whether a selection covers the scheduled queue name:
// queue_names when given, else every field that is set.
func matches(sel *adminapi.Selection, name string, parts *message.QueueNameParts) bool {
	if len(sel.QueueNames) > 0 {
		return slices.Contains(sel.QueueNames, name)
	}
	if sel.Domain != nil && !equalFold(*sel.Domain, parts.Domain) {
		return false
	}
	if sel.Campaign != nil && (!parts.HasCampaign || *sel.Campaign != parts.Campaign) {
		return false
	}
	if sel.Tenant != nil && (!parts.HasTenant || *sel.Tenant != parts.Tenant) {
		return false
	}
	if sel.RoutingDomain != nil && (!parts.HasRoutingDomain || !equalFold(*sel.RoutingDomain, parts.RoutingDomain)) {
		return false
	}
	return true
}

func equalFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// bounceFor returns the bounce rule in effect for a scheduled queue.
func (a *adminRules) bounceFor(name string, now time.Time) *bounceRule {
	if a.n.Load() == 0 {
		return nil
	}
	parts := message.ParseQueueName(name)
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, r := range a.file.Bounces {
		if r.Expires.After(now) && matches(&r.Sel, name, &parts) {
			return r
		}
	}
	return nil
}

// suspensionFor returns the suspension in effect for a scheduled queue
// (the one that lasts longest when several match).
func (a *adminRules) suspensionFor(name string, now time.Time) *suspendRule {
	if a.n.Load() == 0 {
		return nil
	}
	parts := message.ParseQueueName(name)
	a.mu.Lock()
	defer a.mu.Unlock()
	var best *suspendRule
	for _, r := range a.file.Suspensions {
		if r.Expires.After(now) && matches(&r.Sel, name, &parts) && (best == nil || r.Expires.After(best.Expires)) {
			best = r
		}
	}
	return best
}

// readySuspensionFor returns the suspension in effect for a ready queue.
func (a *adminRules) readySuspensionFor(name string, now time.Time) *readySuspendRule {
	if a.n.Load() == 0 {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	var best *readySuspendRule
	for _, r := range a.file.ReadySuspensions {
		if r.Expires.After(now) && r.Name == name && (best == nil || r.Expires.After(best.Expires)) {
			best = r
		}
	}
	return best
}

// countBounce notes one message bounced by r from queue.
func (a *adminRules) countBounce(r *bounceRule, queue string) {
	a.mu.Lock()
	if r.Bounced == nil {
		r.Bounced = map[string]int{}
	}
	r.Bounced[queue]++
	a.mu.Unlock()
}
