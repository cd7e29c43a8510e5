package spool

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/kumogo/kumogo/internal/config"
	"github.com/kumogo/kumogo/internal/message"
)

// Spools stores messages in a data and a meta Store under the message id.
// It is safe for concurrent use.
type Spools struct {
	data, meta Store
	log        zerolog.Logger

	enumMu sync.Mutex // one Enumerate at a time

	mu       sync.Mutex
	inflight map[string]int      // ids being saved
	recent   map[string]struct{} // during Enumerate: ids saved since it began
}

// OpenSpools opens the data and meta spools. Two LocalDisk spools on one
// file system share their group commit: one syncfs round serves the data
// and the meta writes of every waiting Save.
func OpenSpools(data, meta config.Spool, log zerolog.Logger) (*Spools, error) {
	d, err := Open(data, log)
	if err != nil {
		return nil, err
	}
	var shared *fsSyncer
	if ld, ok := d.(*localDisk); ok && ld.syncer != nil && (meta.Kind == "" || meta.Kind == KindLocalDisk) && sameFileSystem(ld.dataDir, meta.Path) {
		shared = ld.syncer
	}
	m, err := openShared(meta, log, true, shared)
	if err != nil {
		_ = d.Close()
		return nil, err
	}
	return NewSpools(d, m, log), nil
}

// sameFileSystem reports whether dir and path (created if missing) are on
// one file system.
func sameFileSystem(dir, path string) bool {
	if path == "" || os.MkdirAll(path, 0o750) != nil {
		return false
	}
	var a, b unix.Stat_t
	return unix.Stat(dir, &a) == nil && unix.Stat(path, &b) == nil && a.Dev == b.Dev
}

// NewSpools combines two open stores; Close closes them.
func NewSpools(data, meta Store, log zerolog.Logger) *Spools {
	return &Spools{data: data, meta: meta, log: log, inflight: make(map[string]int)}
}

// Data returns the data store.
func (s *Spools) Data() Store { return s.data }

// Meta returns the meta store.
func (s *Spools) Meta() Store { return s.meta }

// Save writes msg's data and meta and returns when both are stored
// (durable if sync). The two parts are written concurrently; two LocalDisk
// spools on one file system instead share the same two syncfs rounds. If
// either write fails, or ctx ends first, both parts are removed and the
// message must be treated as not stored.
func (s *Spools) Save(ctx context.Context, msg *message.Message, sync bool) error {
	return s.save(ctx, msg, sync, false)
}

// save is Save; with staged (and sync) the stores that can leave their
// last flush to Commit do so (stage.go).
func (s *Spools) save(ctx context.Context, msg *message.Message, sync, staged bool) error {
	id := msg.ID()
	data := msg.Data()
	if len(data) == 0 {
		return fmt.Errorf("spool: save %s: message data is empty", id)
	}
	meta, err := EncodeMeta(msg)
	if err != nil {
		return fmt.Errorf("spool: save %s: %w", id, err)
	}
	s.begin(id)
	defer s.end(id)
	if d, m, ok := sharedPair(s.data, s.meta); ok && (sync || d.flush || m.flush) {
		return putPair(ctx, d, m, id, data, meta, staged && sync)
	}
	put := func(st Store, b []byte) error {
		if sg, ok := st.(stager); ok && staged && sync {
			return sg.stage(ctx, id, b)
		}
		return st.Put(ctx, id, b, sync)
	}
	errc := make(chan error, 1)
	go func() { errc <- put(s.data, data) }()
	merr := put(s.meta, meta)
	derr := <-errc
	if derr == nil && merr == nil {
		return nil
	}
	rctx := context.WithoutCancel(ctx)
	if derr == nil {
		derr = s.data.Remove(rctx, id)
	}
	if merr == nil {
		merr = s.meta.Remove(rctx, id)
	}
	return errors.Join(derr, merr)
}

func (s *Spools) begin(id string) {
	s.mu.Lock()
	s.inflight[id]++
	if s.recent != nil {
		s.recent[id] = struct{}{}
	}
	s.mu.Unlock()
}

func (s *Spools) end(id string) {
	s.mu.Lock()
	if s.inflight[id]--; s.inflight[id] <= 0 {
		delete(s.inflight, id)
	}
	s.mu.Unlock()
}

// Load reads a stored message. An entry that cannot be loaded (data
// missing or empty, meta that does not describe a message: what Enumerate
// sets aside, and EnumerateWaiting leaves to Load) is set aside, and the
// error wraps ErrNotFound.
func (s *Spools) Load(ctx context.Context, id string) (*message.Message, error) {
	mb, err := s.meta.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	data, err := s.data.Get(ctx, id)
	switch {
	case errors.Is(err, ErrNotFound):
		return nil, s.loadCorrupt(ctx, id, "data is missing", nil)
	case err != nil:
		return nil, err
	case len(data) == 0:
		return nil, s.loadCorrupt(ctx, id, "data is empty", nil)
	}
	msg, err := DecodeMessage(id, mb, data)
	if err != nil {
		return nil, s.loadCorrupt(ctx, id, "meta does not describe a message", err)
	}
	return msg, nil
}

// loadCorrupt sets aside an entry Load found corrupt (unless it is being
// saved again meanwhile) and returns Load's error for it.
func (s *Spools) loadCorrupt(ctx context.Context, id, why string, cause error) error {
	s.mu.Lock()
	_, saving := s.inflight[id]
	s.mu.Unlock()
	if _, err := s.meta.Get(ctx, id); errors.Is(err, ErrNotFound) {
		return fmt.Errorf("spool: load %s: %w", id, ErrNotFound) // removed meanwhile
	}
	if !saving {
		s.setAside(ctx, id, why, cause)
	}
	return fmt.Errorf("spool: load %s: %s (set aside): %w", id, why, ErrNotFound)
}

// LoadData reads a stored message's body (the data spool only), for a
// queued message whose body was dropped from memory while it waited.
func (s *Spools) LoadData(ctx context.Context, id string) ([]byte, error) {
	return s.data.Get(ctx, id)
}

// Remove deletes both parts of a message; parts that are not stored are
// ignored. The meta goes first: a message is listed by its meta, so a
// crash in between leaves data without meta (set aside by the next
// enumeration or sweep), and Load never sees meta whose data was removed.
func (s *Spools) Remove(ctx context.Context, id string) error {
	merr := s.meta.Remove(ctx, id)
	return errors.Join(merr, s.data.Remove(ctx, id))
}

// Enumerate calls fn for every stored message, as a restart does. Entries
// that cannot be loaded (meta that does not parse, an id that is not a v1
// UUID, data that is missing or empty, data without meta) are logged and
// set aside, never deleted; corrupt counts them. An error from fn stops the
// enumeration and is returned.
//
// Messages saved through this Spools while Enumerate runs (or being saved
// when it starts) are skipped, so new mail may be accepted during a
// restart's enumeration without being enumerated, or set aside half
// written.
func (s *Spools) Enumerate(ctx context.Context, fn func(msg *message.Message) error) (corrupt int, err error) {
	s.enumMu.Lock()
	defer s.enumMu.Unlock()
	stop := s.trackRecent()
	defer stop()

	setAside := func(id, why string, cause error) {
		corrupt++
		s.setAside(ctx, id, why, cause)
	}
	seen := make(map[string]struct{})
	err = s.meta.Enumerate(ctx, func(id string, mb []byte) error {
		if s.isRecent(id) {
			return nil
		}
		seen[id] = struct{}{}
		if _, err := message.IDTime(id); err != nil || checkID(id) != nil {
			setAside(id, "id is not a v1 uuid", nil)
			return nil
		}
		rec, err := decodeMeta(mb)
		if err != nil {
			setAside(id, "meta does not parse", err)
			return nil
		}
		data, err := s.data.Get(ctx, id)
		switch {
		case errors.Is(err, ErrNotFound):
			setAside(id, "data is missing", nil)
			return nil
		case err != nil:
			if ctx.Err() != nil {
				return ctx.Err()
			}
			s.log.Error().Err(err).Str("id", id).Msg("cannot read spool data; skipped until the next start")
			return nil
		case len(data) == 0:
			setAside(id, "data is empty", nil)
			return nil
		}
		msg, err := rec.message(id, data)
		if err != nil {
			setAside(id, "meta does not describe a message", err)
			return nil
		}
		return fn(msg)
	})
	if err != nil {
		return corrupt, err
	}
	// Data without meta: a crash between the two writes of a Save that was
	// never acknowledged.
	var orphans []string
	err = s.data.EnumerateIDs(ctx, func(id string) error {
		if _, ok := seen[id]; !ok && !s.isRecent(id) {
			orphans = append(orphans, id)
		}
		return nil
	})
	if err != nil {
		return corrupt, err
	}
	for _, id := range orphans {
		if s.isRecent(id) {
			continue
		}
		if _, err := s.meta.Get(ctx, id); err == nil {
			continue // saved meanwhile by someone else
		}
		setAside(id, "data without meta", nil)
	}
	return corrupt, nil
}

func (s *Spools) isRecent(id string) bool {
	s.mu.Lock()
	_, ok := s.recent[id]
	s.mu.Unlock()
	return ok
}

// Health reports whether both spools accept writes, and why not.
func (s *Spools) Health() (ok bool, reason string) {
	if ok, reason := s.data.Health(); !ok {
		return false, reason
	}
	return s.meta.Health()
}

// Close closes both stores.
func (s *Spools) Close() error {
	return errors.Join(s.data.Close(), s.meta.Close())
}

// metaRecord is the meta spool's JSON record, as KumoMTA writes it.
type metaRecord struct {
	Sender string `json:"sender"`
	// Recipient is a string for one recipient, an array for several.
	Recipient json.RawMessage `json:"recipient"`
	Meta      map[string]any  `json:"meta"`
	// Schedule is KumoMTA's set_scheduling state: null, or an object.
	Schedule json.RawMessage `json:"schedule"`
}

// EncodeMeta renders the meta spool record of msg:
// {"sender": ..., "recipient": string or array, "meta": {...},
// "schedule": null or the set_scheduling constraints}.
func EncodeMeta(msg *message.Message) ([]byte, error) {
	rcpts := msg.Recipients()
	var rj []byte
	var err error
	if len(rcpts) == 1 {
		rj, err = json.Marshal(FormatAddress(rcpts[0]))
	} else {
		list := make([]string, len(rcpts))
		for i, r := range rcpts {
			list[i] = FormatAddress(r)
		}
		rj, err = json.Marshal(list)
	}
	if err != nil {
		return nil, err
	}
	meta := msg.MetaMap()
	if meta == nil {
		meta = map[string]any{}
	}
	sched, err := encodeSchedule(msg.Scheduling())
	if err != nil {
		return nil, err
	}
	if hasRaw(meta) {
		// a log record's message (metaraw.go)
		b, err := appendMetaRecord(make([]byte, 0, 1024), FormatAddress(msg.Sender()), rj, meta, sched)
		if err != nil {
			return nil, fmt.Errorf("encode meta: %w", err)
		}
		return b, nil
	}
	b, err := json.Marshal(metaRecord{
		Sender:    FormatAddress(msg.Sender()),
		Recipient: rj,
		Meta:      meta,
		Schedule:  sched,
	})
	if err != nil {
		return nil, fmt.Errorf("encode meta: %w", err)
	}
	return b, nil
}

// DecodeMessage rebuilds a message from its id, meta record and data.
func DecodeMessage(id string, meta, data []byte) (*message.Message, error) {
	rec, err := decodeMeta(meta)
	if err != nil {
		return nil, err
	}
	return rec.message(id, data)
}

func decodeMeta(b []byte) (*metaRecord, error) {
	var rec metaRecord
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&rec); err != nil {
		return nil, fmt.Errorf("decode meta: %w", err)
	}
	if dec.More() {
		return nil, errors.New("decode meta: trailing data after the record")
	}
	if len(rec.Recipient) == 0 || bytes.Equal(rec.Recipient, []byte("null")) {
		return nil, errors.New("decode meta: no recipient")
	}
	if s := bytes.TrimSpace(rec.Schedule); len(s) > 0 && s[0] != '{' && !bytes.Equal(s, []byte("null")) {
		return nil, errors.New("decode meta: schedule is neither null nor an object")
	}
	return &rec, nil
}

func (rec *metaRecord) message(id string, data []byte) (*message.Message, error) {
	var list []string
	if rec.Recipient[0] == '"' {
		var one string
		if err := json.Unmarshal(rec.Recipient, &one); err != nil {
			return nil, fmt.Errorf("decode meta recipient: %w", err)
		}
		list = []string{one}
	} else if err := json.Unmarshal(rec.Recipient, &list); err != nil {
		return nil, fmt.Errorf("decode meta recipient: %w", err)
	}
	if len(list) == 0 {
		return nil, errors.New("decode meta: no recipient")
	}
	rcpts := make([]message.Address, len(list))
	for i, r := range list {
		rcpts[i] = ParseStoredAddress(r)
	}
	sched, err := decodeSchedule(rec.Schedule)
	if err != nil {
		return nil, err
	}
	msg, err := message.Restore(id, ParseStoredAddress(rec.Sender), rcpts, rec.Meta, data)
	if err != nil {
		return nil, err
	}
	msg.SetScheduling(sched)
	return msg, nil
}

// FormatAddress renders an envelope address for the meta record:
// user@domain, with the local part quoted when it is not a dot-atom, or ""
// for the null sender.
func FormatAddress(a message.Address) string {
	if a.IsNull() {
		return ""
	}
	user := a.User
	if !isDotAtom(user) {
		var b strings.Builder
		b.WriteByte('"')
		for i := 0; i < len(user); i++ {
			if user[i] == '"' || user[i] == '\\' {
				b.WriteByte('\\')
			}
			b.WriteByte(user[i])
		}
		b.WriteByte('"')
		user = b.String()
	}
	if a.Domain == "" {
		return user
	}
	return user + "@" + a.Domain
}

// ParseStoredAddress reads an address written by FormatAddress; it is its
// exact inverse and never fails: an address was accepted once, so it is
// read back as written, not judged again. A quoted local part is unquoted
// up to its closing quote; otherwise the address is split at its last '@'.
func ParseStoredAddress(s string) message.Address {
	if len(s) > 1 && s[0] == '"' {
		var b strings.Builder
		for i := 1; i < len(s); i++ {
			c := s[i]
			if c == '\\' && i+1 < len(s) {
				i++
				b.WriteByte(s[i])
				continue
			}
			if c != '"' {
				b.WriteByte(c)
				continue
			}
			switch rest := s[i+1:]; {
			case rest == "":
				return message.Address{User: b.String()}
			case rest[0] == '@':
				return message.Address{User: b.String(), Domain: rest[1:]}
			}
			break
		}
	}
	if at := strings.LastIndexByte(s, '@'); at >= 0 {
		return message.Address{User: s[:at], Domain: s[at+1:]}
	}
	return message.Address{User: s}
}

func isDotAtom(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f && c < 0x80 || strings.IndexByte("\"(),:;<>@[\\]", c) >= 0 {
			return false
		}
	}
	return true
}
