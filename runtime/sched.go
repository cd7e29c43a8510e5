package runtime

import (
	"fmt"
	"time"

	lua "github.com/yuin/gopher-lua"

	"github.com/kumogo/kumogo/internal/config"
	"github.com/kumogo/kumogo/internal/message"
)

// schedulingMethods are the msg:* methods for attempts and scheduling
// (KumoMTA docs: "msg:set_scheduling", "msg:num_attempts",
// "msg:increment_num_attempts").
func (st *state) schedulingMethods() map[string]lua.LGFunction {
	return map[string]lua.LGFunction{
		"num_attempts": func(L *lua.LState) int {
			L.Push(lua.LNumber(st.checkMessage(L).Attempts()))
			return 1
		},
		"increment_num_attempts": func(L *lua.LState) int {
			st.checkMessage(L).IncrementAttempts()
			return 0
		},
		"set_due":                  st.msgSetDue,
		"set_scheduling":           st.msgSetScheduling,
		"import_scheduling_header": st.msgImportSchedulingHeader,
	}
}

// parseTimestamp reads an ISO 8601 / RFC 3339 date and time.
func parseTimestamp(s string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02 15:04:05Z07:00", "2006-01-02T15:04:05.999999999Z0700"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not an ISO 8601 date and time (like 2024-03-08T17:51:42Z)", s)
}

// msgSetDue is msg:set_due(t): t is an ISO 8601 timestamp, or nil for as
// soon as possible. A delivery window set by set_scheduling moves the time
// to the next opening.
func (st *state) msgSetDue(L *lua.LState) int {
	m := st.checkMessage(L)
	switch v := L.Get(2).(type) {
	case *lua.LNilType:
		m.SetDue(time.Time{})
	case lua.LString:
		t, err := parseTimestamp(string(v))
		if err != nil {
			L.ArgError(2, err.Error())
		}
		m.SetDue(m.Scheduling().AdjustDue(t))
	default:
		L.ArgError(2, "ISO 8601 timestamp string or nil expected, got "+v.Type().String())
	}
	return 0
}

// decodeScheduling decodes a set_scheduling table strictly.
func decodeScheduling(v any) (*message.Scheduling, error) {
	o := config.NewObject(v, v, "struct Scheduling", "first_attempt", "expires", "dow", "tz", "start", "end")
	s := &message.Scheduling{}
	for _, f := range []struct {
		key string
		dst *time.Time
	}{{"first_attempt", &s.FirstAttempt}, {"expires", &s.Expires}} {
		var str string
		o.Str(f.key, &str)
		if o.Err() != nil || str == "" {
			continue
		}
		t, err := parseTimestamp(str)
		if err != nil {
			o.Fail("invalid value: " + config.Describe(str) + ", expected an ISO 8601 date and time")
			continue
		}
		*f.dst = t
	}
	var dow, tz, start, end string
	o.Str("dow", &dow)
	o.Str("tz", &tz)
	o.Str("start", &start)
	o.Str("end", &end)
	if o.Err() != nil {
		return nil, o.Err()
	}
	given := 0
	for _, x := range []string{dow, tz, start, end} {
		if x != "" {
			given++
		}
	}
	switch given {
	case 0:
	case 4:
		w, err := message.ParseDeliveryWindow(dow, tz, start, end)
		if err != nil {
			o.Fail("invalid value: " + err.Error())
			return nil, o.Err()
		}
		s.Window = w
	default:
		o.Fail("invalid value: dow, tz, start and end must be given together")
		return nil, o.Err()
	}
	return s, nil
}

// schedulingTable renders s as set_scheduling returns it.
func (st *state) schedulingTable(s *message.Scheduling) lua.LValue {
	if s == nil {
		return lua.LNil
	}
	t := st.L.CreateTable(0, 6)
	if !s.FirstAttempt.IsZero() {
		t.RawSetString("first_attempt", lua.LString(s.FirstAttempt.Format(time.RFC3339Nano)))
	}
	if !s.Expires.IsZero() {
		t.RawSetString("expires", lua.LString(s.Expires.Format(time.RFC3339Nano)))
	}
	if w := s.Window; w != nil {
		t.RawSetString("dow", lua.LString(w.DOW))
		t.RawSetString("tz", lua.LString(w.TZ))
		t.RawSetString("start", lua.LString(timeOfDay(w.Start)))
		t.RawSetString("end", lua.LString(timeOfDay(w.End)))
	}
	return t
}

func timeOfDay(d time.Duration) string {
	return fmt.Sprintf("%02d:%02d:%02d", int(d/time.Hour), int(d%time.Hour/time.Minute), int(d%time.Minute/time.Second))
}

// applyScheduling stores s on m; first_attempt (adjusted to the delivery
// window) becomes the due time.
func applyScheduling(m *message.Message, s *message.Scheduling) {
	m.SetScheduling(s)
	if s != nil && !s.FirstAttempt.IsZero() {
		m.SetDue(s.AdjustDue(s.FirstAttempt))
	}
}

// msgSetScheduling is msg:set_scheduling(sched_or_nil); it returns the
// scheduling as a table (nil when cleared).
func (st *state) msgSetScheduling(L *lua.LState) int {
	m := st.checkMessage(L)
	v := L.Get(2)
	if v == lua.LNil {
		m.SetScheduling(nil)
		L.Push(lua.LNil)
		return 1
	}
	gv, err := st.toGo(v)
	if err != nil {
		L.RaiseError("set_scheduling: %s", err.Error())
	}
	s, err := decodeScheduling(gv)
	if err != nil {
		L.RaiseError("set_scheduling: %s", err.Error())
	}
	applyScheduling(m, s)
	L.Push(st.schedulingTable(s))
	return 1
}

// msgImportSchedulingHeader is msg:import_scheduling_header(name,
// remove): the header holds the JSON of a set_scheduling table. It
// returns the scheduling table, or nil when the header is absent.
func (st *state) msgImportSchedulingHeader(L *lua.LState) int {
	m := st.checkMessage(L)
	name := L.CheckString(2)
	remove := L.OptBool(3, false)
	raw, ok := m.FirstHeader(name)
	if !ok {
		L.Push(lua.LNil)
		return 1
	}
	gv, err := jsonParse([]byte(raw))
	if err != nil {
		L.RaiseError("import_scheduling_header %s: invalid JSON: %s", name, err.Error())
	}
	s, err := decodeScheduling(gv)
	if err != nil {
		L.RaiseError("import_scheduling_header %s: %s", name, err.Error())
	}
	applyScheduling(m, s)
	if remove {
		m.RemoveAllNamedHeaders(name)
	}
	L.Push(st.schedulingTable(s))
	return 1
}
