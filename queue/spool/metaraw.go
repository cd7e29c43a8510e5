package spool

import (
	"encoding/json"
	"fmt"
	"slices"
)

// Meta values kept encoded. A log record's message carries its record in
// the log_record meta as the JSON the log hook encoded (json.RawMessage);
// encoding/json would scan and compact those bytes again for every
// record spooled. hasRaw finds such values, and appendMetaRecord writes
// the meta record as json.Marshal of metaRecord does (same field order,
// keys sorted, values encoded by json.Marshal) except that raw values are
// copied as they are.

// hasRaw reports whether meta holds a json.RawMessage value.
func hasRaw(meta map[string]any) bool {
	for _, v := range meta {
		if _, ok := v.(json.RawMessage); ok {
			return true
		}
	}
	return false
}

// appendMetaRecord appends the meta record of sender, recipient (JSON),
// meta and schedule (JSON, nil for null) to b.
func appendMetaRecord(b []byte, sender string, recipient json.RawMessage, meta map[string]any, schedule json.RawMessage) ([]byte, error) {
	s, err := json.Marshal(sender)
	if err != nil {
		return nil, err
	}
	b = append(b, `{"sender":`...)
	b = append(b, s...)
	b = append(b, `,"recipient":`...)
	b = append(b, recipient...)
	b = append(b, `,"meta":{`...)
	keys := make([]string, 0, len(meta))
	for k := range meta {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		kj, err := json.Marshal(k)
		if err != nil {
			return nil, err
		}
		b = append(b, kj...)
		b = append(b, ':')
		if raw, ok := meta[k].(json.RawMessage); ok && len(raw) > 0 {
			b = append(b, raw...)
			continue
		}
		vj, err := json.Marshal(meta[k])
		if err != nil {
			return nil, fmt.Errorf("meta %s: %w", k, err)
		}
		b = append(b, vj...)
	}
	b = append(b, `},"schedule":`...)
	if schedule == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, schedule...)
	}
	return append(b, '}'), nil
}
