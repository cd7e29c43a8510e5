package spool

import (
	"context"
	"fmt"

	"github.com/kumogo/kumogo/internal/message"
)

// SaveMeta rewrites the meta of a stored message, leaving its data alone
// (an admin rebind changes the meta that names the message's queue). A
// failed write leaves the previous meta in place.
func (s *Spools) SaveMeta(ctx context.Context, msg *message.Message, sync bool) error {
	id := msg.ID()
	meta, err := EncodeMeta(msg)
	if err != nil {
		return fmt.Errorf("spool: save meta %s: %w", id, err)
	}
	s.begin(id)
	defer s.end(id)
	return s.meta.Put(ctx, id, meta, sync)
}
