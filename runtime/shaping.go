package runtime

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"sort"
	"strings"
	"time"

	lua "github.com/yuin/gopher-lua"

	"github.com/kumogo/kumogo/internal/config"
	"github.com/kumogo/kumogo/internal/shaping"
)

// bundledSharePrefix is KumoMTA's install prefix for shipped data; a file
// under it that does not exist on disk is served from kumogo's bundled
// modules (policies/policy-extras/shaping.toml), so that policies naming
// '/opt/kumomta/share/policy-extras/shaping.toml' work without KumoMTA.
const bundledSharePrefix = "/opt/kumomta/share/"

// shapingObject is the userdata of kumo.shaping.load.
type shapingObject struct{ s *shaping.Shaping }

func (o *shapingObject) toLua(st *state) lua.LValue {
	return &lua.LUserData{Value: o, Metatable: st.shapingMT()}
}

// openShaping builds the kumo.shaping module (KumoMTA's kumo.shaping/load
// page; kumod has it too, the shaping helper uses it).
func (st *state) openShaping() *lua.LTable {
	t := st.L.NewTable()
	t.RawSetString("load", st.L.NewFunction(st.shapingLoad))
	return t
}

// shapingLoad is kumo.shaping.load({paths}, {options}).
func (st *state) shapingLoad(L *lua.LState) int {
	pt := L.CheckTable(1)
	var paths []string
	for i := 1; i <= pt.Len(); i++ {
		s, ok := pt.RawGetInt(i).(lua.LString)
		if !ok {
			L.ArgError(1, "paths must be strings")
		}
		paths = append(paths, string(s))
	}
	opts := shaping.DefaultOptions()
	if L.GetTop() >= 2 && L.Get(2) != lua.LNil {
		v, err := st.toGo(L.Get(2))
		if err == nil {
			err = decodeShapingOptions(v, &opts)
		}
		if err != nil {
			L.RaiseError("kumo.shaping.load: %s", err.Error())
		}
	}
	s, err := shaping.Load(st.callCtx(), paths, opts, st.shapingEnv())
	if err != nil {
		L.RaiseError("kumo.shaping.load: %s", err.Error())
	}
	L.Push((&shapingObject{s}).toLua(st))
	return 1
}

// decodeShapingOptions reads the options table strictly.
func decodeShapingOptions(v any, o *shaping.Options) error {
	ob := config.NewObject(v, v, "struct ShapingMergeOptions", "provider_overlap", "dns_fail", "null_mx",
		"aliased_site", "skip_remote", "remote_load", "local_load", "http_timeout")
	for key, dst := range map[string]*shaping.Level{
		"provider_overlap": &o.ProviderOverlap, "dns_fail": &o.DNSFail, "null_mx": &o.NullMX,
		"aliased_site": &o.AliasedSite, "remote_load": &o.RemoteLoad, "local_load": &o.LocalLoad,
	} {
		var s string
		ob.Str(key, &s)
		if s == "" || ob.Err() != nil {
			continue
		}
		l, err := shaping.ParseLevel(s)
		if err != nil {
			ob.Fail("invalid value: " + err.Error())
			continue
		}
		*dst = l
	}
	ob.Bool("skip_remote", &o.SkipRemote)
	ob.Duration("http_timeout", &o.HTTPTimeout)
	return ob.Err()
}

// shapingEnv connects the shaping merge to kumo.dns, the strict egress
// path decoder, the bundled default file and HTTP.
func (st *state) shapingEnv() shaping.Env {
	env := shaping.Env{
		ValidatePath: func(m map[string]any) error {
			_, err := config.DecodeEgressPath(m)
			return err
		},
		ReadFile: st.rt.readShareFile,
		Fetch:    httpGet,
	}
	if d := st.rt.opts.DNS; d != nil {
		env.Resolve = func(ctx context.Context, domain string) (shaping.MX, error) {
			res, err := d.LookupMX(ctx, domain)
			if err != nil {
				return shaping.MX{}, err
			}
			return shaping.MX{SiteName: res.SiteName, Hosts: res.Hosts}, nil
		}
	}
	return env
}

// readShareFile reads path from disk; a missing file under KumoMTA's
// share prefix is served from the bundled modules when they have it.
func (r *Runtime) readShareFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) || r.opts.Modules == nil {
		return b, err
	}
	if rel, ok := strings.CutPrefix(path, bundledSharePrefix); ok && fs.ValidPath(rel) {
		if b, berr := fs.ReadFile(r.opts.Modules, rel); berr == nil {
			return b, nil
		}
	}
	return nil, err
}

// httpGet fetches remote shaping data.
func httpGet(ctx context.Context, url string, timeout time.Duration) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("making HTTP request to %s: %w", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("reading text from %s: %w", url, err)
	}
	if resp.StatusCode/100 != 2 {
		return nil, fmt.Errorf("HTTP request to %s failed: status %s %s", url, resp.Status, strings.TrimSpace(string(body)))
	}
	return body, nil
}

// shapingMT returns the metatable of shaping objects.
func (st *state) shapingMT() *lua.LTable {
	L := st.L
	mt := L.NewTypeMetatable("kumo.shaping")
	if mt.RawGetString("__index") != lua.LNil {
		return mt
	}
	check := func(L *lua.LState) *shaping.Shaping { return checkSelf[*shapingObject](L, "shaping object expected").s }
	strs := func(L *lua.LState, list []string) int {
		t := L.CreateTable(len(list), 0)
		for i, s := range list {
			t.RawSetInt(i+1, lua.LString(s))
		}
		L.Push(t)
		return 1
	}
	methods := L.NewTable()
	L.SetFuncs(methods, map[string]lua.LGFunction{
		"get_egress_path_config": func(L *lua.LState) int {
			s := check(L)
			params := s.EgressPathConfig(st.callCtx(), L.CheckString(2), L.CheckString(3), L.CheckString(4))
			L.Push(st.fromGo(params))
			return 1
		},
		"get_errors":   func(L *lua.LState) int { return strs(L, check(L).Errors()) },
		"get_warnings": func(L *lua.LState) int { return strs(L, check(L).Warnings()) },
		"hash":         func(L *lua.LState) int { L.Push(lua.LString(check(L).Hash())); return 1 },
		"get_referenced_sources": func(L *lua.LState) int {
			refs := check(L).ReferencedSources()
			names := make([]string, 0, len(refs))
			for k := range refs {
				names = append(names, k)
			}
			sort.Strings(names)
			t := L.CreateTable(0, len(refs))
			for _, k := range names {
				t.RawSetString(k, st.fromGo(refs[k]))
			}
			L.Push(t)
			return 1
		},
		"match_rules": func(L *lua.LState) int {
			L.RaiseError("kumo.shaping: match_rules (traffic shaping automation) is not provided by kumogo")
			return 0
		},
	})
	mt.RawSetString("__index", methods)
	mt.RawSetString("__name", lua.LString("Shaping"))
	return mt
}
