package runtime

import (
	lua "github.com/yuin/gopher-lua"

	"github.com/kumogo/kumogo/internal/datafile"
)

// openSerdeData adds the TOML and YAML functions of kumo.serde
// (KumoMTA's kumo.serde reference pages) to serde, and the deprecated
// top-level kumo.toml_* aliases that KumoMTA still has (there are no
// kumo.yaml_* aliases).
func (st *state) openSerdeData(k, serde *lua.LTable) {
	L := st.L
	L.SetFuncs(serde, map[string]lua.LGFunction{
		"toml_load":                  st.dataLoad("toml_load", datafile.TOML),
		"toml_parse":                 st.dataParse("toml_parse", datafile.TOML),
		"toml_encode":                st.tomlEncode("toml_encode", datafile.TOMLCompact),
		"toml_encode_pretty":         st.tomlEncode("toml_encode_pretty", datafile.TOMLPretty),
		"toml_encode_pretty_compact": st.tomlEncode("toml_encode_pretty_compact", datafile.TOMLPrettyCompact),
		"yaml_load":                  st.dataLoad("yaml_load", datafile.YAML),
		"yaml_parse":                 st.dataParse("yaml_parse", datafile.YAML),
		"yaml_encode":                st.yamlEncode,
	})
	for _, name := range []string{"toml_load", "toml_parse", "toml_encode", "toml_encode_pretty"} {
		k.RawSetString(name, serde.RawGetString(name))
	}
}

// dataLoad builds NAME(filename): the file parsed as format f. Errors
// name the file and, for syntax errors, the line.
func (st *state) dataLoad(name string, f datafile.Format) lua.LGFunction {
	return func(L *lua.LState) int {
		p := L.CheckString(1)
		d, err := datafile.LoadAs(p, f)
		if err != nil {
			L.RaiseError("%s: %s", name, err.Error())
		}
		L.Push(st.fromGo(d.Value))
		return 1
	}
}

// dataParse builds NAME(text).
func (st *state) dataParse(name string, f datafile.Format) lua.LGFunction {
	return func(L *lua.LState) int {
		d, err := datafile.Parse(f, []byte(L.CheckString(1)))
		if err != nil {
			L.RaiseError("%s: %s", name, err.Error())
		}
		L.Push(st.fromGo(d.Value))
		return 1
	}
}

// encodeArg converts argument 1 for an encoder: integral numbers become
// integers, others floats; config objects become their tables.
func (st *state) encodeArg(L *lua.LState, name string) any {
	v, err := st.toGo(L.CheckAny(1))
	if err != nil {
		L.RaiseError("%s: %s", name, err.Error())
	}
	return configsAsMaps(v)
}

func (st *state) tomlEncode(name string, style datafile.TOMLStyle) lua.LGFunction {
	return func(L *lua.LState) int {
		s, err := datafile.EncodeTOML(st.encodeArg(L, name), style)
		if err != nil {
			L.RaiseError("%s: %s", name, err.Error())
		}
		L.Push(lua.LString(s))
		return 1
	}
}

func (st *state) yamlEncode(L *lua.LState) int {
	s, err := datafile.EncodeYAML(st.encodeArg(L, "yaml_encode"))
	if err != nil {
		L.RaiseError("yaml_encode: %s", err.Error())
	}
	L.Push(lua.LString(s))
	return 1
}
