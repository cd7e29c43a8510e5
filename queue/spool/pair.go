package spool

import (
	"context"
	"os"
)

// sharedPair returns the two LocalDisk stores of a Spools when they share
// one group-commit syncer, so that Save can make both parts durable with
// the same two rounds.
func sharedPair(data, meta Store) (*localDisk, *localDisk, bool) {
	d, ok1 := data.(*localDisk)
	m, ok2 := meta.(*localDisk)
	if !ok1 || !ok2 || d.syncer == nil || d.syncer != m.syncer {
		return nil, nil, false
	}
	return d, m, true
}

// putPair stores the data and meta parts of one message in two LocalDisk
// stores that share a syncer: both temporary files are written, one round
// makes both contents durable, both are renamed into place, and one more
// round makes both names durable. Two syncfs rounds per Save instead of two
// per part, which halves the latency of a lone writer. On failure neither
// part is left in place. With staged the second round is left to the
// caller's commit (stage.go).
func putPair(ctx context.Context, d, m *localDisk, id string, data, meta []byte, staged bool) error {
	if err := checkID(id); err != nil {
		return d.errf("put", err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	for _, s := range []*localDisk{d, m} {
		if err := s.health.get(); err != nil {
			return s.errf("put "+id, err)
		}
	}
	if err := d.enter(); err != nil {
		return d.errf("put "+id, err)
	}
	defer d.exit()
	if err := m.enter(); err != nil {
		return m.errf("put "+id, err)
	}
	defer m.exit()

	stores := [2]*localDisk{d, m}
	bodies := [2][]byte{data, meta}
	var tmps [2]string
	cleanup := func() {
		for _, t := range tmps {
			if t != "" {
				_ = os.Remove(t)
			}
		}
	}
	for i, s := range stores {
		tmp, err := s.writeTemp(id, bodies[i])
		if err != nil {
			cleanup()
			return s.errf("put "+id, err)
		}
		tmps[i] = tmp
	}
	if err := d.syncer.round(ctx); err != nil {
		cleanup()
		return d.roundErr(id, err)
	}
	var placed [2]string
	unplace := func() {
		for i, p := range placed {
			if p != "" {
				_ = stores[i].removePath(p)
			}
		}
	}
	for i, s := range stores {
		final := s.path(id)
		if _, err := s.place(tmps[i], final); err != nil {
			cleanup()
			unplace()
			return s.errf("put "+id, err)
		}
		tmps[i], placed[i] = "", final
	}
	if staged {
		for _, s := range stores {
			s.puts.Add(1)
			s.syncedPuts.Add(1)
		}
		return nil
	}
	if err := d.syncer.round(ctx); err != nil {
		unplace() // not acknowledged: a duplicate at worst, never a loss
		return d.roundErr(id, err)
	}
	for _, s := range stores {
		s.puts.Add(1)
		s.syncedPuts.Add(1)
	}
	return nil
}

// writeTemp writes b to a new temporary file in new/ and returns its name.
func (s *localDisk) writeTemp(id string, b []byte) (string, error) {
	f, tmp, err := s.createTemp(id, b)
	if err != nil {
		return "", err
	}
	if err := f.Close(); err != nil {
		_ = os.Remove(tmp)
		return "", err
	}
	return tmp, nil
}
