package runtime

import (
	"encoding/json"
	"time"

	lua "github.com/yuin/gopher-lua"

	"github.com/kumogo/kumogo/internal/config"
	"github.com/kumogo/kumogo/internal/mailreport"
	"github.com/kumogo/kumogo/internal/message"
)

// Delivery reports: kumo.generate_rfc3464_message, msg:parse_rfc3464 and
// msg:parse_rfc5965 (KumoMTA's pages of those names). The formats live in
// internal/mailreport.

func (st *state) reportMethods() map[string]lua.LGFunction {
	return map[string]lua.LGFunction{
		"parse_rfc3464": func(L *lua.LState) int {
			rep, err := mailreport.ParseDSN(st.checkMessage(L).Data())
			st.pushReport(L, rep, rep == nil, err, "parse_rfc3464")
			return 1
		},
		"parse_rfc5965": func(L *lua.LState) int {
			rep, err := mailreport.ParseARF(st.checkMessage(L).Data())
			st.pushReport(L, rep, rep == nil, err, "parse_rfc5965")
			return 1
		},
	}
}

// pushReport pushes rep as a table (through its JSON form), nil when
// there is none, or raises err.
func (st *state) pushReport(L *lua.LState, rep any, none bool, err error, fn string) {
	if err != nil {
		L.RaiseError("%s: %s", fn, err.Error())
	}
	if none {
		L.Push(lua.LNil)
		return
	}
	raw, err := json.Marshal(rep)
	if err != nil {
		L.RaiseError("%s: %s", fn, err.Error())
	}
	var v any
	_ = json.Unmarshal(raw, &v)
	L.Push(st.fromGo(v))
}

// kumoGenerateRFC3464 is kumo.generate_rfc3464_message(PARAMS,
// OPT_ORIG_MSG, LOG_RECORD): a report Message (null sender, to the
// original sender) or nil when the record calls for none.
func (st *state) kumoGenerateRFC3464(L *lua.LState) int {
	pv := st.tableArg(L)
	o := config.NewObject(pv, pv, "struct ReportGenerationParams", "include_original_message", "enable_expiration",
		"enable_bounce", "reporting_mta", "stable_content")
	var p mailreport.GenerateParams
	o.Enum("include_original_message", &p.IncludeOriginalMessage, "FullContent", "HeadersOnly", "No")
	o.Bool("enable_expiration", &p.EnableExpiration)
	o.Bool("enable_bounce", &p.EnableBounce)
	o.Bool("stable_content", &p.StableContent)
	if _, ok := o.Get("include_original_message"); !ok && o.Err() == nil {
		o.Fail("missing field `include_original_message`")
	}
	if mv, ok := o.Get("reporting_mta"); ok {
		mo := config.NewObject(mv, pv, "struct RemoteMta", "mta_type", "name")
		mo.Str("mta_type", &p.ReportingMTA.MTAType)
		mo.Str("name", &p.ReportingMTA.Name)
		if mo.Err() == nil && (p.ReportingMTA.MTAType == "" || p.ReportingMTA.Name == "") {
			mo.Fail("missing field `mta_type` or `name`")
		}
		o.Merge(mo)
	} else if o.Err() == nil {
		o.Fail("missing field `reporting_mta`")
	}
	if o.Err() != nil {
		L.RaiseError("generate_rfc3464_message: %s", o.Err().Error())
	}
	var orig []byte
	if ud, ok := L.Get(2).(*lua.LUserData); ok && ud.Metatable == st.msgMT {
		m, ok := ud.Value.(*message.Message)
		if !ok {
			L.RaiseError(staleHandle, "message")
		}
		orig = m.Data()
	} else if L.Get(2) != lua.LNil {
		L.ArgError(2, "a message or nil expected")
	}
	if orig == nil && p.IncludeOriginalMessage != "No" {
		L.RaiseError("generate_rfc3464_message: include_original_message is %s but no original message was passed", p.IncludeOriginalMessage)
	}
	rv, err := st.toGo(L.CheckTable(3))
	if err != nil {
		L.ArgError(3, err.Error())
	}
	ev := reportEvent(rv)
	g := mailreport.Generate(p, ev, orig)
	if g == nil {
		L.Push(lua.LNil)
		return 1
	}
	rcpt, err := message.ParseAddress(g.Recipient)
	if err != nil {
		L.Push(lua.LNil)
		return 1
	}
	st.rt.idsOnce.Do(func() { st.rt.ids = message.NewIDGenerator() })
	L.Push(st.newMessage(message.New(st.rt.ids, message.Address{}, []message.Address{rcpt}, g.Data)))
	return 1
}

// reportEvent reads the fields of a log record table that a report uses.
func reportEvent(v any) mailreport.Event {
	m, _ := v.(map[string]any)
	str := func(m map[string]any, k string) string { s, _ := m[k].(string); return s }
	ev := mailreport.Event{Type: str(m, "type"), Sender: str(m, "sender"), DeliveryProtocol: str(m, "delivery_protocol")}
	switch r := m["recipient"].(type) {
	case string:
		ev.Recipient = r
	case []any:
		if len(r) > 0 {
			ev.Recipient, _ = r[0].(string)
		}
	}
	if resp, ok := m["response"].(map[string]any); ok {
		ev.Code = int(num(resp["code"]))
		ev.Content = str(resp, "content")
		if ec, ok := resp["enhanced_code"].(map[string]any); ok {
			ev.Enhanced = &mailreport.Status{Class: int(num(ec["class"])), Subject: int(num(ec["subject"])), Detail: int(num(ec["detail"]))}
		}
	}
	if pa, ok := m["peer_address"].(map[string]any); ok {
		ev.PeerName, ev.PeerAddr = str(pa, "name"), str(pa, "addr")
	}
	ev.Created = recordTime(m["created"])
	ev.Timestamp = recordTime(m["timestamp"])
	return ev
}

func num(v any) float64 {
	switch x := v.(type) {
	case int64:
		return float64(x)
	case float64:
		return x
	case int:
		return float64(x)
	}
	return 0
}

// recordTime reads a record time: unix seconds or RFC 3339.
func recordTime(v any) time.Time {
	if s, ok := v.(string); ok {
		if t, err := time.Parse(time.RFC3339, s); err == nil {
			return t
		}
		return time.Now()
	}
	if n := num(v); n > 0 {
		return time.Unix(int64(n), 0)
	}
	return time.Now()
}
