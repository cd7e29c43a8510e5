package config

import "strconv"

// DecodeLocalLogs decodes a configure_local_logs table.
func DecodeLocalLogs(v any) (*LocalLogs, error) {
	l := DefaultLocalLogs()
	o := NewObject(v, v, "struct LogFileParams", "log_dir", "max_file_size", "max_segment_duration", "compression_level", "back_pressure", "meta", "headers", "per_record", "filter_event", "min_free_space", "min_free_inodes")
	o.Str("log_dir", &l.LogDir)
	o.Int64("max_file_size", &l.MaxFileSize)
	o.Duration("max_segment_duration", &l.MaxSegmentDuration)
	o.Int("compression_level", &l.CompressionLevel)
	o.Int("back_pressure", &l.BackPressure)
	o.StrList("meta", &l.Meta)
	o.StrList("headers", &l.Headers)
	o.Str("filter_event", &l.FilterEvent)
	o.freeSpace("min_free_space", &l.MinFreeSpace)
	o.freeSpace("min_free_inodes", &l.MinFreeInodes)
	if _, ok := o.Get("per_record"); ok {
		var m map[string]any
		o.Map("per_record", &m)
		if o.err == nil {
			l.PerRecord = make(map[string]PerRecord, len(m))
			for _, k := range sortedKeys(m) {
				rec := PerRecord{Enable: true}
				r := NewObject(m[k], o.input, "struct LogRecordParams", "suffix", "log_dir", "enable", "template", "segment_header")
				r.Str("suffix", &rec.Suffix)
				r.Str("log_dir", &rec.LogDir)
				r.Bool("enable", &rec.Enable)
				r.Str("template", &rec.Template)
				r.Str("segment_header", &rec.SegmentHeader)
				if r.err != nil {
					o.err = r.err
					break
				}
				l.PerRecord[k] = rec
			}
		}
	}
	if o.err == nil && l.LogDir == "" {
		o.Fail("missing field `log_dir`")
	}
	if o.err == nil && l.CompressionLevel > 21 {
		o.Fail("invalid value: integer `" + strconv.Itoa(l.CompressionLevel) + "`, expected a compression level between 0 and 21")
	}
	if o.err != nil {
		return nil, o.err
	}
	return &l, nil
}
