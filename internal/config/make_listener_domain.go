package config

// DecodeListenerDomain decodes a make_listener_domain table.
func DecodeListenerDomain(v any) (*ListenerDomain, error) {
	d := &ListenerDomain{LogOOB: "Ignore", LogARF: "Ignore"}
	o := NewObject(v, v, "struct ListenerDomain", "relay_to", "relay_from", "log_oob", "log_arf", "ttl")
	o.Bool("relay_to", &d.RelayTo)
	o.CIDRList("relay_from", &d.RelayFrom)
	o.logDisposition("log_oob", &d.LogOOB)
	o.logDisposition("log_arf", &d.LogARF)
	// ttl is deprecated: accepted (and checked) but ignored.
	if t, ok := o.Get("ttl"); ok {
		if _, err := DecodeDuration(t); err != nil {
			o.Fail(err.Error())
		}
	}
	if o.err != nil {
		return nil, o.err
	}
	return d, nil
}

// logDisposition reads log_oob/log_arf: a variant name or a boolean.
func (o *Object) logDisposition(key string, dst *string) {
	v, ok := o.Get(key)
	if !ok {
		return
	}
	if b, ok := v.(bool); ok {
		if b {
			*dst = "LogThenRelay"
		} else {
			*dst = "Ignore"
		}
		return
	}
	o.Enum(key, dst, "Ignore", "LogThenRelay", "LogThenDrop")
}
