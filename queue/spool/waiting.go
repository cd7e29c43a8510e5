package spool

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/valyala/fastjson"

	"github.com/kumogo/kumogo/internal/message"
)

// Waiting is what a restart needs of a stored message to queue it: its id,
// the name of its scheduled queue and its set_scheduling constraints. The
// queue reads the whole message (Load) only when it is due, so a restart
// neither reads the bodies nor builds the metadata maps.
type Waiting struct {
	ID         string
	Queue      string
	Scheduling *message.Scheduling
}

// waitingBatch is how many meta records go to a decoding worker at once.
const waitingBatch = 256

// EnumerateWaiting is Enumerate for a restart that queues messages by id
// (queue.Manager.RestoreCompact): it walks the meta spool only, decodes
// just the fields that name the queue (in parallel, on every core) and
// calls fn, possibly from several goroutines at once. A meta record that
// does not parse, or an id that is not a spool id, is set aside as in
// Enumerate. What Enumerate also checks by reading every body (data
// missing or empty) is checked when the message is loaded (Load sets such
// an entry aside then); data without meta is found by SweepOrphans, which
// need not hold up the start.
func (s *Spools) EnumerateWaiting(ctx context.Context, fn func(w Waiting) error) (corrupt int, err error) {
	s.enumMu.Lock()
	defer s.enumMu.Unlock()
	stop := s.trackRecent()
	defer stop()

	var nCorrupt atomic.Int64
	parent := ctx
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	type rec struct {
		id string
		mb []byte
	}
	work := make(chan []rec, 4)
	var wg sync.WaitGroup
	for range max(runtime.GOMAXPROCS(0), 1) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var p fastjson.Parser
			for batch := range work {
				for _, r := range batch {
					if ctx.Err() != nil {
						continue // drain
					}
					w, err := decodeWaiting(&p, r.id, r.mb)
					if err != nil {
						nCorrupt.Add(1)
						s.setAside(ctx, r.id, "meta does not parse", err)
						continue
					}
					if err := fn(w); err != nil {
						cancel(err)
					}
				}
			}
		}()
	}
	batch := make([]rec, 0, waitingBatch)
	err = s.meta.Enumerate(ctx, func(id string, mb []byte) error {
		if s.isRecent(id) {
			return nil
		}
		if _, err := message.IDTime(id); err != nil || checkID(id) != nil {
			nCorrupt.Add(1)
			s.setAside(ctx, id, "id is not a v1 uuid", nil)
			return nil
		}
		batch = append(batch, rec{id, mb})
		if len(batch) == waitingBatch {
			select {
			case work <- batch:
			case <-ctx.Done():
				return context.Cause(ctx)
			}
			batch = make([]rec, 0, waitingBatch)
		}
		return nil
	})
	if err == nil && len(batch) > 0 {
		work <- batch
	}
	close(work)
	wg.Wait()
	if cause := context.Cause(ctx); cause != nil && parent.Err() == nil {
		err = cause // fn's error, which cancelled the walk
	}
	return int(nCorrupt.Load()), err
}

// trackRecent starts recording the ids saved from now on (and those being
// saved now), which an enumeration skips; the returned func stops it.
func (s *Spools) trackRecent() func() {
	s.mu.Lock()
	s.recent = make(map[string]struct{}, len(s.inflight))
	for id := range s.inflight {
		s.recent[id] = struct{}{}
	}
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		s.recent = nil
		s.mu.Unlock()
	}
}

// setAside logs a corrupt entry and moves both of its parts out of the
// live spool.
func (s *Spools) setAside(ctx context.Context, id, why string, cause error) {
	ev := s.log.Error().Str("id", id).Str("problem", why)
	if cause != nil {
		ev = ev.AnErr("cause", cause)
	}
	ev.Msg("corrupt spool entry set aside")
	for _, st := range []Store{s.meta, s.data} {
		if err := st.SetAside(context.WithoutCancel(ctx), id); err != nil && !errors.Is(err, ErrNotFound) {
			s.log.Error().Err(err).Str("id", id).Msg("cannot set aside corrupt spool entry")
		}
	}
}

// decodeWaiting reads a Waiting from a meta record with p (one parser per
// goroutine: it reuses its memory). It reads only the recipient (whose
// domain names the queue by default), the four meta keys of
// msg:queue_name and the schedule, and names the queue as
// message.QueueName does. fastjson validates the whole record while it
// parses, so a torn record is refused here, as decodeMeta refuses it;
// the rest of the record is checked when the message is loaded.
func decodeWaiting(p *fastjson.Parser, id string, b []byte) (Waiting, error) {
	v, err := p.ParseBytes(b)
	if err != nil {
		return Waiting{}, fmt.Errorf("decode meta: %w", err)
	}
	if v.Type() != fastjson.TypeObject {
		return Waiting{}, errors.New("decode meta: not an object")
	}
	w := Waiting{ID: id}
	if sv := v.Get("schedule"); sv != nil && sv.Type() != fastjson.TypeNull {
		if sv.Type() != fastjson.TypeObject {
			return Waiting{}, errors.New("decode meta: schedule is neither null nor an object")
		}
		if w.Scheduling, err = decodeSchedule(sv.MarshalTo(nil)); err != nil {
			return Waiting{}, err
		}
	}
	first, err := firstRecipient(v.Get("recipient"))
	if err != nil {
		return Waiting{}, err
	}
	meta := v.Get("meta")
	if q, ok := metaString(meta, "queue"); ok {
		w.Queue = q
		return w, nil
	}
	campaign, hasCampaign := metaString(meta, "campaign")
	tenant, hasTenant := metaString(meta, "tenant")
	routing, hasRouting := metaString(meta, "routing_domain")
	w.Queue = message.FormatQueueName(campaign, hasCampaign, tenant, hasTenant,
		strings.ToLower(ParseStoredAddress(first).Domain), routing, hasRouting)
	return w, nil
}

// metaString is a meta value that is a JSON string (msg:queue_name
// ignores values of other types).
func metaString(meta *fastjson.Value, key string) (string, bool) {
	if meta == nil {
		return "", false
	}
	v := meta.Get(key)
	if v == nil || v.Type() != fastjson.TypeString {
		return "", false
	}
	return string(v.GetStringBytes()), true
}

// firstRecipient is the first address of the recipient field (a string or
// an array of strings).
func firstRecipient(v *fastjson.Value) (string, error) {
	if v == nil || v.Type() == fastjson.TypeNull {
		return "", errors.New("decode meta: no recipient")
	}
	if v.Type() == fastjson.TypeArray {
		list := v.GetArray()
		if len(list) == 0 {
			return "", errors.New("decode meta: no recipient")
		}
		v = list[0]
	}
	if v.Type() != fastjson.TypeString {
		return "", errors.New("decode meta: a recipient is not a string")
	}
	return string(v.GetStringBytes()), nil
}

// SweepOrphans sets aside data without meta (a crash between the two
// writes of a Save that was never acknowledged), which EnumerateWaiting
// does not look for. It reads no bodies and may run while the queue
// works: it skips what is saved meanwhile, and checks an orphan again
// before setting it aside.
func (s *Spools) SweepOrphans(ctx context.Context) (orphans int, err error) {
	s.enumMu.Lock()
	defer s.enumMu.Unlock()
	stop := s.trackRecent()
	defer stop()
	var found []string
	err = s.data.EnumerateIDs(ctx, func(id string) error {
		if s.isRecent(id) {
			return nil
		}
		if _, err := s.meta.Get(ctx, id); errors.Is(err, ErrNotFound) {
			found = append(found, id)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	for _, id := range found {
		if s.isRecent(id) {
			continue
		}
		if _, err := s.meta.Get(ctx, id); !errors.Is(err, ErrNotFound) {
			continue // saved meanwhile
		}
		if _, err := s.data.Get(ctx, id); err != nil {
			continue // removed meanwhile
		}
		orphans++
		s.setAside(ctx, id, "data without meta", nil)
	}
	return orphans, nil
}
