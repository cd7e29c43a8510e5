package queue

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kumogo/kumogo/internal/message"
)

// groupSpool is a stagingSpool that also writes and removes groups,
// counting the calls.
type groupSpool struct {
	*stagingSpool
	stageGroups, removeGroups, groupRemovals atomic.Int64
}

func (s *groupSpool) StageGroup(ctx context.Context, msgs []*message.Message) error {
	s.stageGroups.Add(1)
	for _, msg := range msgs {
		if err := s.Stage(ctx, msg); err != nil {
			return err
		}
	}
	return nil
}

func (s *groupSpool) RemoveGroup(ctx context.Context, ids []string) error {
	s.removeGroups.Add(1)
	s.groupRemovals.Add(int64(len(ids)))
	for _, id := range ids {
		_ = s.Remove(ctx, id)
	}
	return nil
}

func newGroupManager(t *testing.T) (*Manager, *groupSpool) {
	t.Helper()
	m, sp, _ := newStagingManager(t)
	gs := &groupSpool{stagingSpool: sp}
	m.o.Spool = gs
	m.staged = gs
	return m, gs
}

func groupMsgs(n int) []*message.Message {
	gen := message.NewIDGenerator()
	msgs := make([]*message.Message, n)
	for i := range msgs {
		msgs[i] = message.New(gen, message.Address{User: "s", Domain: "x.com"}, []message.Address{{User: fmt.Sprintf("u%d", i), Domain: "example.com"}}, []byte("Subject: t\r\n\r\nbody\r\n"))
	}
	return msgs
}

// TestQueueGroupOneWriteOneCommit: QueueGroup stores a group of messages
// with one group write and one commit round, every message is durable when
// it returns, and once delivered they leave the spool in groups (the
// remover's batches), not one removal per message.
func TestQueueGroupOneWriteOneCommit(t *testing.T) {
	m, sp := newGroupManager(t)
	m.Start()
	const n = 200
	msgs := groupMsgs(n)
	for i, err := range m.QueueGroup(context.Background(), msgs) {
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
	}
	if g, c := sp.stageGroups.Load(), sp.commits.Load(); g != 1 || c != 1 {
		t.Fatalf("%d group writes and %d commits for a group of %d messages, want 1 and 1", g, c, n)
	}
	if s := sp.saves.Load(); s != n {
		t.Fatalf("%d messages written, want %d", s, n)
	}
	for _, msg := range msgs {
		if !sp.isDurable(msg.ID()) {
			t.Fatalf("QueueGroup returned before %s was committed", msg.ID())
		}
	}
	waitFor(t, "every message delivered and out of the spool", 10*time.Second, func() bool { return sp.len() == 0 })
	if r, g := sp.groupRemovals.Load(), sp.removeGroups.Load(); r < n/2 || g > r/4 {
		t.Fatalf("%d of %d messages removed in %d groups: the remover does not remove in groups", r, n, g)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := m.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestQueueGroupCommitFails: when the commit fails, every message of the
// group is reported as not queued and none is left stored or queued.
func TestQueueGroupCommitFails(t *testing.T) {
	m, sp := newGroupManager(t)
	m.Start()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = m.Shutdown(ctx)
	}()
	sp.fail.Store(true)
	msgs := groupMsgs(10)
	for i, err := range m.QueueGroup(context.Background(), msgs) {
		if err == nil {
			t.Fatalf("message %d queued although the commit failed", i)
		}
	}
	if l := sp.len(); l != 0 {
		t.Fatalf("%d messages of a group whose commit failed are still stored", l)
	}
	sched, ready := m.QueueSizes()
	for name, k := range sched {
		if k != 0 {
			t.Fatalf("a message whose commit failed was queued in %s", name)
		}
	}
	for name, k := range ready {
		if k != 0 {
			t.Fatalf("a message whose commit failed is ready in %s", name)
		}
	}
}
