package runtime

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"sort"
	"strconv"

	lua "github.com/yuin/gopher-lua"

	"github.com/kumogo/kumogo/internal/config"
	"github.com/kumogo/kumogo/internal/datafile"
	"github.com/kumogo/kumogo/internal/message"
)

// maxConvertDepth bounds nesting (and catches cyclic tables) when
// converting Lua values to Go.
const maxConvertDepth = 64

// toGo converts a Lua value to a JSON-style Go value: nil, bool, int64
// (integral numbers), float64, string, []any (sequences), map[string]any
// (other tables, including the empty table). Envelope addresses become
// their string form; config objects are returned as their Go pointer.
func (st *state) toGo(v lua.LValue) (any, error) { return st.toGoDepth(v, 0) }

func (st *state) toGoDepth(v lua.LValue, depth int) (any, error) {
	switch x := v.(type) {
	case *lua.LNilType:
		return nil, nil
	case lua.LBool:
		return bool(x), nil
	case lua.LNumber:
		return numberToGo(x), nil
	case lua.LString:
		return string(x), nil
	case *lua.LTable:
		if depth >= maxConvertDepth {
			return nil, errors.New("table nesting too deep (or cyclic)")
		}
		return st.tableToGo(x, depth+1)
	case *lua.LUserData:
		switch val := x.Value.(type) {
		case *message.Address:
			return val.String(), nil
		case nil:
			return nil, errors.New("cannot convert a stale object")
		case *message.Message, *message.ConnMeta:
			return nil, fmt.Errorf("cannot convert %s userdata to a value", typeName(x))
		default:
			return val, nil
		}
	default:
		return nil, fmt.Errorf("cannot convert a Lua %s to a value", v.Type().String())
	}
}

// numberToGo returns int64 for integral numbers, float64 otherwise.
func numberToGo(n lua.LNumber) any {
	if isInteger(n) {
		return int64(n)
	}
	return float64(n)
}

func (st *state) tableToGo(t *lua.LTable, depth int) (any, error) {
	n := t.MaxN()
	count := 0
	allInts := true
	var keyErr error
	t.ForEach(func(k, _ lua.LValue) {
		count++
		if kn, ok := k.(lua.LNumber); !ok || !isInteger(kn) || kn < 1 || int(kn) > n {
			allInts = false
		}
	})
	if n > 0 && allInts && count == n {
		out := make([]any, n)
		for i := 1; i <= n; i++ {
			v, err := st.toGoDepth(t.RawGetInt(i), depth)
			if err != nil {
				return nil, err
			}
			out[i-1] = v
		}
		return out, nil
	}
	out := make(map[string]any, count)
	var err error
	t.ForEach(func(k, v lua.LValue) {
		if err != nil || keyErr != nil {
			return
		}
		var key string
		switch kk := k.(type) {
		case lua.LString:
			key = string(kk)
		case lua.LNumber:
			if isInteger(kk) {
				key = strconv.FormatInt(int64(kk), 10)
			} else {
				key = strconv.FormatFloat(float64(kk), 'g', -1, 64)
			}
		default:
			keyErr = fmt.Errorf("cannot convert a table with a %s key", k.Type().String())
			return
		}
		var gv any
		gv, err = st.toGoDepth(v, depth)
		out[key] = gv
	})
	if keyErr != nil {
		return nil, keyErr
	}
	if err != nil {
		return nil, err
	}
	return out, nil
}

// fromGo converts a JSON-style Go value (and a few kumogo types) to Lua.
func (st *state) fromGo(v any) lua.LValue {
	L := st.L
	switch x := v.(type) {
	case nil:
		return lua.LNil
	case lua.LValue:
		return x
	case bool:
		return lua.LBool(x)
	case int:
		return lua.LNumber(x)
	case int32:
		return lua.LNumber(x)
	case int64:
		return lua.LNumber(x)
	case uint64:
		return lua.LNumber(x)
	case float64:
		return lua.LNumber(x)
	case float32:
		return lua.LNumber(x)
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return lua.LNumber(i)
		}
		f, _ := x.Float64()
		return lua.LNumber(f)
	case string:
		return lua.LString(x)
	case json.RawMessage:
		// a value kept encoded until Lua reads it (a log record's
		// log_record meta); integral numbers stay integers
		d := json.NewDecoder(bytes.NewReader(x))
		d.UseNumber()
		var v any
		if err := d.Decode(&v); err != nil {
			return lua.LString(x)
		}
		return st.fromGo(v)
	case []byte:
		return lua.LString(x)
	case []string:
		t := L.CreateTable(len(x), 0)
		for i, s := range x {
			t.RawSetInt(i+1, lua.LString(s))
		}
		return t
	case []any:
		t := L.CreateTable(len(x), 0)
		for i, e := range x {
			t.RawSetInt(i+1, st.fromGo(e))
		}
		return t
	case map[string]any:
		t := L.CreateTable(0, len(x))
		for k, e := range x {
			t.RawSetString(k, st.fromGo(e))
		}
		return t
	case map[string]string:
		t := L.CreateTable(0, len(x))
		for k, e := range x {
			t.RawSetString(k, lua.LString(e))
		}
		return t
	case message.Address:
		return st.newAddress(x)
	case *message.Address:
		return st.newAddress(*x)
	case []message.Address:
		t := L.CreateTable(len(x), 0)
		for i, a := range x {
			t.RawSetInt(i+1, st.newAddress(a))
		}
		return t
	case luaObject:
		return x.toLua(st)
	case *config.ListenerDomain, *config.QueueConfig, *config.EgressPath, *config.EgressSource, *config.EgressPool:
		return st.newConfigObject(x)
	case fmt.Stringer:
		return lua.LString(x.String())
	default:
		return st.fromGoReflect(reflect.ValueOf(v))
	}
}

// fromGoReflect converts the remaining shapes (maps with string or
// integer keys, slices and arrays of anything, numeric kinds) by
// reflection; anything else becomes its fmt.Sprint string.
func (st *state) fromGoReflect(rv reflect.Value) lua.LValue {
	L := st.L
	switch rv.Kind() {
	case reflect.Invalid:
		return lua.LNil
	case reflect.Pointer, reflect.Interface:
		if rv.IsNil() {
			return lua.LNil
		}
		return st.fromGo(rv.Elem().Interface())
	case reflect.Bool:
		return lua.LBool(rv.Bool())
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return lua.LNumber(rv.Int())
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return lua.LNumber(rv.Uint())
	case reflect.Float32, reflect.Float64:
		return lua.LNumber(rv.Float())
	case reflect.String:
		return lua.LString(rv.String())
	case reflect.Slice, reflect.Array:
		if rv.Kind() == reflect.Slice && rv.IsNil() {
			return L.CreateTable(0, 0)
		}
		n := rv.Len()
		t := L.CreateTable(n, 0)
		for i := 0; i < n; i++ {
			t.RawSetInt(i+1, st.fromGo(rv.Index(i).Interface()))
		}
		return t
	case reflect.Map:
		t := L.CreateTable(0, rv.Len())
		iter := rv.MapRange()
		for iter.Next() {
			k := iter.Key()
			var lk lua.LValue
			switch k.Kind() {
			case reflect.String:
				lk = lua.LString(k.String())
			case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
				lk = lua.LNumber(k.Int())
			case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
				lk = lua.LNumber(k.Uint())
			default:
				lk = lua.LString(fmt.Sprint(k.Interface()))
			}
			t.RawSet(lk, st.fromGo(iter.Value().Interface()))
		}
		return t
	}
	return lua.LString(fmt.Sprint(rv.Interface()))
}

// fromGoArg is fromGo plus the event-scoped objects.
func (st *state) fromGoArg(v any) lua.LValue {
	switch x := v.(type) {
	case *message.Message:
		return st.newMessage(x)
	case *message.ConnMeta:
		return st.newConnMeta(x)
	}
	return st.fromGo(v)
}

// jsonEncode renders v as compact (or two-space indented) JSON without
// HTML escaping, with map keys sorted.
func jsonEncode(v any, pretty bool) (string, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if pretty {
		enc.SetIndent("", "  ")
	}
	if err := enc.Encode(v); err != nil {
		return "", err
	}
	return string(bytes.TrimRight(buf.Bytes(), "\n")), nil
}

// jsonParse decodes JSON that may contain //, /* */ and # comments;
// syntax errors name the line.
func jsonParse(data []byte) (any, error) {
	d, err := datafile.ParseJSON(data)
	if err != nil {
		return nil, err
	}
	return d.Value, nil
}

// sortedKeys returns the keys of m in order.
func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// finite reports whether f is a finite number.
func finite(f float64) bool { return !math.IsInf(f, 0) && !math.IsNaN(f) }
