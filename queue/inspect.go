package queue

import (
	"context"
	"maps"
	"sort"
	"time"
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
// that owns e. The body is copied when in memory; body reports whether it
// must be read from the spool.
func info(e *entry, wantBody bool) (MessageInfo, bool) {
	msg := e.msg
	mi := MessageInfo{
		ID:       msg.ID(),
		Queue:    e.queue,
		Sender:   msg.Sender().String(),
		Meta:     maps.Clone(msg.MetaMap()),
		Due:      e.due,
		Attempts: msg.Attempts(),
	}
	for _, r := range msg.Recipients() {
		mi.Recipients = append(mi.Recipients, r.String())
	}
	if mi.Meta == nil {
		mi.Meta = map[string]any{}
	}
	if !wantBody {
		return mi, false
	}
	if e.shrunk {
		return mi, true
	}
	mi.Data = append([]byte(nil), msg.Data()...)
	return mi, false
}

// InspectMessage finds a waiting message by spool id, in the scheduled
// queues first, then in the ready queues.
func (m *Manager) InspectMessage(ctx context.Context, id string, wantBody bool) (MessageInfo, bool, error) {
	var found *MessageInfo
	load := false
	m.mu.Lock()
	for _, e := range m.timers {
		if e.msg.ID() == id {
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
		data, err := m.o.Spool.LoadData(ctx, id)
		if err != nil {
			return MessageInfo{}, true, err
		}
		found.Data = data
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
	for _, i := range toLoad {
		data, err := m.o.Spool.LoadData(ctx, list[i].ID)
		if err != nil {
			return nil, total, err
		}
		list[i].Data = data
	}
	return list, total, nil
}

func sortByDue(es []*entry) {
	sort.Slice(es, func(i, j int) bool { return es[i].due.Before(es[j].due) })
}
