package queue

import (
	"context"
	"maps"
	"slices"
	"sort"
	"time"

	"github.com/kumogo/kumogo/internal/message"
)

// MessageInfo is a waiting message as the admin inspections show it
// (KumoMTA's inspect-message and inspect-sched-q).
type MessageInfo struct {
	ID         string
	Queue      string
	Sender     string
	Recipients []string
	Meta       map[string]any
	Due        time.Time // zero while in a ready queue
	Attempts   int
	Data       []byte // only when asked for
}

// info copies what the inspections show of e; the caller holds the lock
// that owns e. load reports that e is held compactly (compact.go): only
// the id, queue, due time and attempts are filled in, and the rest must
// be read from the spool (fill).
func info(e *entry, wantBody bool) (mi MessageInfo, load bool) {
	mi = MessageInfo{ID: e.ID(), Queue: e.queue, Due: e.due, Attempts: e.Attempts()}
	msg := e.msg
	if msg == nil {
		return mi, true
	}
	fillFrom(&mi, msg, wantBody)
	return mi, false
}

// fillFrom copies the envelope, meta and (with wantBody) the body of msg
// into mi.
func fillFrom(mi *MessageInfo, msg *message.Message, wantBody bool) {
	mi.Sender = msg.Sender().String()
	mi.Meta = maps.Clone(msg.MetaMap())
	for _, r := range msg.Recipients() {
		mi.Recipients = append(mi.Recipients, r.String())
	}
	if mi.Meta == nil {
		mi.Meta = map[string]any{}
	}
	if wantBody {
		mi.Data = append([]byte(nil), msg.Data()...)
	}
}

// fill completes the info of a compactly held message from the spool.
func (m *Manager) fill(ctx context.Context, mi *MessageInfo, wantBody bool) error {
	msg, err := m.o.Spool.Load(ctx, mi.ID)
	if err != nil {
		return err
	}
	fillFrom(mi, msg, wantBody)
	return nil
}

// InspectMessage finds a waiting message by spool id, in the scheduled
// queues first, then in the ready queues.
func (m *Manager) InspectMessage(ctx context.Context, id string, wantBody bool) (MessageInfo, bool, error) {
	var found *MessageInfo
	load := false
	m.mu.Lock()
	var bid [16]byte
	if len(id) != 32 || hexDecode(bid[:], id) != nil {
		bid = [16]byte{} // matches only messages held in full
	}
	for _, e := range m.timers {
		if e.msg == nil && e.id == bid || e.msg != nil && e.msg.ID() == id {
			mi, l := info(e, wantBody)
			found, load = &mi, l
			break
		}
	}
	var rqs []*readyQueue
	if found == nil {
		for _, rq := range m.ready {
			rqs = append(rqs, rq)
		}
	}
	m.mu.Unlock()
	for _, rq := range rqs {
		rq.mu.Lock()
		for _, e := range rq.items[rq.head:] {
			if e != nil && e.msg.ID() == id {
				mi, l := info(e, wantBody)
				mi.Due = time.Time{}
				found, load = &mi, l
				break
			}
		}
		rq.mu.Unlock()
		if found != nil {
			break
		}
	}
	if found == nil {
		return MessageInfo{}, false, nil
	}
	if load {
		if err := m.fill(ctx, found, wantBody); err != nil {
			if isNotFound(err) {
				return MessageInfo{}, false, nil // finished meanwhile
			}
			return MessageInfo{}, true, err
		}
	}
	return *found, true, nil
}

// InspectScheduledQueue lists up to limit (0: all) messages waiting in
// the scheduled queue name, soonest due first, and how many wait there.
func (m *Manager) InspectScheduledQueue(ctx context.Context, name string, wantBody bool, limit int) ([]MessageInfo, int, error) {
	var list []MessageInfo
	var toLoad []int
	total := 0
	m.mu.Lock()
	var matching []*entry
	for _, e := range m.timers {
		if e.queue == name {
			matching = append(matching, e)
		}
	}
	total = len(matching)
	sortByDue(matching)
	if limit > 0 && len(matching) > limit {
		matching = matching[:limit]
	}
	for _, e := range matching {
		mi, l := info(e, wantBody)
		if l {
			toLoad = append(toLoad, len(list))
		}
		list = append(list, mi)
	}
	m.mu.Unlock()
	gone := 0
	for _, i := range toLoad {
		if err := m.fill(ctx, &list[i], wantBody); err != nil {
			if !isNotFound(err) {
				return nil, total, err
			}
			list[i].ID, gone = "", gone+1 // finished meanwhile
		}
	}
	if gone > 0 {
		list = slices.DeleteFunc(list, func(mi MessageInfo) bool { return mi.ID == "" })
	}
	return list, total, nil
}

func sortByDue(es []*entry) {
	sort.Slice(es, func(i, j int) bool { return es[i].due.Before(es[j].due) })
}
