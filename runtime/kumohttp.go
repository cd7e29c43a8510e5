package runtime

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/kumogo/kumogo/internal/config"
	lua "github.com/yuin/gopher-lua"
)

// httpClient is a kumo.http.build_client object: a net/http client with
// its own connection pool (KumoMTA's build_client page).
type httpClient struct {
	c         *http.Client
	tr        *http.Transport
	userAgent string
}

// httpRequest is a request being built (KumoMTA's Request object).
type httpRequest struct {
	client  *httpClient
	method  string
	url     string
	header  http.Header
	body    []byte
	user    *url.Userinfo
	bearer  string
	timeout time.Duration // request:timeout(); 0: the client's
	sent    bool
}

// httpResponse is a received response (KumoMTA's Response object); the
// body is read whole when the request is sent.
type httpResponse struct {
	status int
	header http.Header
	body   []byte
}

// maxHTTPResponseBody bounds what a response body may hold in memory.
const maxHTTPResponseBody = 64 << 20

// openHTTP builds kumo.http: build_client, and the client, request and
// response methods.
func (st *state) openHTTP() *lua.LTable {
	L := st.L
	clientMT := L.NewTypeMetatable("kumo.http.Client")
	reqMT := L.NewTypeMetatable("kumo.http.Request")
	respMT := L.NewTypeMetatable("kumo.http.Response")

	checkClient := func(L *lua.LState) *httpClient {
		ud := L.CheckUserData(1)
		c, ok := ud.Value.(*httpClient)
		if !ok {
			L.ArgError(1, "HTTP client expected (use client:method())")
		}
		return c
	}
	checkReq := func(L *lua.LState) (*lua.LUserData, *httpRequest) {
		ud := L.CheckUserData(1)
		r, ok := ud.Value.(*httpRequest)
		if !ok {
			L.ArgError(1, "HTTP request expected (use request:method())")
		}
		return ud, r
	}
	checkResp := func(L *lua.LState) *httpResponse {
		ud := L.CheckUserData(1)
		r, ok := ud.Value.(*httpResponse)
		if !ok {
			L.ArgError(1, "HTTP response expected (use response:method())")
		}
		return r
	}
	newReq := func(method string) lua.LGFunction {
		return func(L *lua.LState) int {
			c := checkClient(L)
			raw := L.CheckString(2)
			if _, err := url.Parse(raw); err != nil {
				L.RaiseError("kumo.http: %s %s: %s", method, raw, err.Error())
			}
			L.Push(&lua.LUserData{Value: &httpRequest{client: c, method: method, url: raw, header: http.Header{}}, Metatable: reqMT})
			return 1
		}
	}
	clientMethods := L.NewTable()
	L.SetFuncs(clientMethods, map[string]lua.LGFunction{
		"get":  newReq(http.MethodGet),
		"post": newReq(http.MethodPost),
		"put":  newReq(http.MethodPut),
		"close": func(L *lua.LState) int {
			checkClient(L).tr.CloseIdleConnections()
			return 0
		},
	})
	clientMT.RawSetString("__index", clientMethods)

	self := func(L *lua.LState, ud *lua.LUserData) int {
		L.Push(ud)
		return 1
	}
	reqMethods := L.NewTable()
	L.SetFuncs(reqMethods, map[string]lua.LGFunction{
		"header": func(L *lua.LState) int {
			ud, r := checkReq(L)
			r.header.Set(L.CheckString(2), L.CheckString(3))
			return self(L, ud)
		},
		"headers": func(L *lua.LState) int {
			ud, r := checkReq(L)
			L.CheckTable(2).ForEach(func(k, v lua.LValue) {
				r.header.Set(lua.LVAsString(k), lua.LVAsString(v))
			})
			return self(L, ud)
		},
		"basic_auth": func(L *lua.LState) int {
			ud, r := checkReq(L)
			if L.Get(3) == lua.LNil {
				r.user = url.User(L.CheckString(2))
			} else {
				r.user = url.UserPassword(L.CheckString(2), L.CheckString(3))
			}
			return self(L, ud)
		},
		"bearer_auth": func(L *lua.LState) int {
			ud, r := checkReq(L)
			r.bearer = L.CheckString(2)
			return self(L, ud)
		},
		"body": func(L *lua.LState) int {
			ud, r := checkReq(L)
			r.body = []byte(L.CheckString(2))
			return self(L, ud)
		},
		"form_url_encoded": func(L *lua.LState) int {
			ud, r := checkReq(L)
			vals := url.Values{}
			L.CheckTable(2).ForEach(func(k, v lua.LValue) {
				vals.Set(lua.LVAsString(k), lua.LVAsString(v))
			})
			r.body = []byte(vals.Encode())
			r.header.Set("Content-Type", "application/x-www-form-urlencoded")
			return self(L, ud)
		},
		"form_multipart_data": func(L *lua.LState) int {
			ud, r := checkReq(L)
			var buf bytes.Buffer
			w := multipart.NewWriter(&buf)
			var keys []string
			vals := map[string]string{}
			L.CheckTable(2).ForEach(func(k, v lua.LValue) {
				keys = append(keys, lua.LVAsString(k))
				vals[lua.LVAsString(k)] = lua.LVAsString(v)
			})
			sort.Strings(keys)
			for _, k := range keys {
				v := vals[k]
				var err error
				if utf8.ValidString(v) {
					err = w.WriteField(k, v)
				} else {
					var part io.Writer
					if part, err = w.CreateFormFile(k, k); err == nil {
						_, err = part.Write([]byte(v))
					}
				}
				if err != nil {
					L.RaiseError("kumo.http: form_multipart_data: %s", err.Error())
				}
			}
			w.Close()
			r.body = buf.Bytes()
			r.header.Set("Content-Type", w.FormDataContentType())
			return self(L, ud)
		},
		"timeout": func(L *lua.LState) int {
			ud, r := checkReq(L)
			d, err := config.DecodeDuration(luaDurationArg(L, 2))
			if err != nil {
				L.RaiseError("kumo.http: timeout: %s", err.Error())
			}
			r.timeout = d
			return self(L, ud)
		},
		"send": func(L *lua.LState) int {
			_, r := checkReq(L)
			resp, err := r.send(st.callCtx())
			if err != nil {
				L.RaiseError("kumo.http: %s %s: %s", r.method, r.url, err.Error())
			}
			L.Push(&lua.LUserData{Value: resp, Metatable: respMT})
			return 1
		},
	})
	reqMT.RawSetString("__index", reqMethods)

	respMethods := L.NewTable()
	rangeCheck := func(lo int) lua.LGFunction {
		return func(L *lua.LState) int {
			s := checkResp(L).status
			L.Push(lua.LBool(s >= lo && s < lo+100))
			return 1
		}
	}
	L.SetFuncs(respMethods, map[string]lua.LGFunction{
		"status_code": func(L *lua.LState) int {
			L.Push(lua.LNumber(checkResp(L).status))
			return 1
		},
		"status_reason": func(L *lua.LState) int {
			if t := http.StatusText(checkResp(L).status); t != "" {
				L.Push(lua.LString(t))
			} else {
				L.Push(lua.LNil)
			}
			return 1
		},
		"status_is_informational": rangeCheck(100),
		"status_is_success":       rangeCheck(200),
		"status_is_redirection":   rangeCheck(300),
		"status_is_client_error":  rangeCheck(400),
		"status_is_server_error":  rangeCheck(500),
		"headers": func(L *lua.LState) int {
			r := checkResp(L)
			t := L.CreateTable(0, len(r.header))
			for k, v := range r.header {
				t.RawSetString(strings.ToLower(k), lua.LString(strings.Join(v, ", ")))
			}
			// KumoMTA's headermap is indexed case-insensitively
			mt := L.CreateTable(0, 1)
			mt.RawSetString("__index", L.NewFunction(func(L *lua.LState) int {
				L.Push(t.RawGetString(strings.ToLower(L.CheckString(2))))
				return 1
			}))
			L.SetMetatable(t, mt)
			L.Push(t)
			return 1
		},
		"content_length": func(L *lua.LState) int {
			r := checkResp(L)
			if n, err := strconv.ParseInt(r.header.Get("Content-Length"), 10, 64); err == nil {
				L.Push(lua.LNumber(n))
				return 1
			}
			L.Push(lua.LNil)
			return 1
		},
		"bytes": func(L *lua.LState) int {
			L.Push(lua.LString(checkResp(L).body))
			return 1
		},
		"text": func(L *lua.LState) int {
			L.Push(lua.LString(strings.ToValidUTF8(string(checkResp(L).body), "\uFFFD")))
			return 1
		},
	})
	respMT.RawSetString("__index", respMethods)

	t := L.NewTable()
	t.RawSetString("build_client", L.NewFunction(func(L *lua.LState) int {
		c, err := buildHTTPClient(st.tableOpt(L))
		if err != nil {
			L.RaiseError("kumo.http.build_client: %s", err.Error())
		}
		L.Push(&lua.LUserData{Value: c, Metatable: clientMT})
		return 1
	}))
	st.addWebSocket(t, respMT)
	return t
}

// luaDurationArg reads a duration argument (seconds or a string).
func luaDurationArg(L *lua.LState, n int) any {
	switch v := L.Get(n).(type) {
	case lua.LNumber:
		return float64(v)
	case lua.LString:
		return string(v)
	}
	L.ArgError(n, "duration expected")
	return nil
}

// tableOpt converts an optional table argument 1 to a Go value.
func (st *state) tableOpt(L *lua.LState) any {
	if L.Get(1) == lua.LNil {
		return nil
	}
	return st.tableArg(L)
}

// buildHTTPClient decodes build_client's parameters.
func buildHTTPClient(v any) (*httpClient, error) {
	o := config.NewObject(v, v, "struct ClientParams", "user_agent", "connection_verbose", "pool_idle_timeout", "timeout", "accept_invalid_certs")
	var ua string
	verbose, insecure := false, false
	idle, timeout := 90*time.Second, 60*time.Second
	o.Str("user_agent", &ua)
	o.Bool("connection_verbose", &verbose)
	o.Duration("pool_idle_timeout", &idle)
	o.Duration("timeout", &timeout)
	o.Bool("accept_invalid_certs", &insecure)
	if o.Err() != nil {
		return nil, o.Err()
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.IdleConnTimeout = idle
	tr.MaxIdleConnsPerHost = 32
	if insecure {
		tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // the policy asked for it (accept_invalid_certs)
	}
	return &httpClient{c: &http.Client{Transport: tr, Timeout: timeout}, tr: tr, userAgent: ua}, nil
}

// send performs the request and reads the whole response.
func (r *httpRequest) send(ctx context.Context) (*httpResponse, error) {
	if r.sent {
		return nil, fmt.Errorf("the request was already sent")
	}
	r.sent = true
	if ctx == nil {
		ctx = context.Background()
	}
	if r.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, r.timeout)
		defer cancel()
	}
	var body io.Reader
	if r.body != nil {
		body = bytes.NewReader(r.body)
	}
	req, err := http.NewRequestWithContext(ctx, r.method, r.url, body)
	if err != nil {
		return nil, err
	}
	req.Header = r.header
	if r.client.userAgent != "" && req.Header.Get("User-Agent") == "" {
		req.Header.Set("User-Agent", r.client.userAgent)
	}
	if r.user != nil {
		pw, _ := r.user.Password()
		req.SetBasicAuth(r.user.Username(), pw)
	}
	if r.bearer != "" {
		req.Header.Set("Authorization", "Bearer "+r.bearer)
	}
	resp, err := r.client.c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxHTTPResponseBody))
	if err != nil {
		return nil, fmt.Errorf("reading the response body: %w", err)
	}
	return &httpResponse{status: resp.StatusCode, header: resp.Header, body: b}, nil
}
