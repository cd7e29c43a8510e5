package runtime

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-msgauth/dkim"
	lua "github.com/yuin/gopher-lua"

	"github.com/kumogo/kumogo/internal/config"
)

// DKIM signing: kumo.dkim.rsa_sha256_signer{...} and
// kumo.dkim.ed25519_signer{...} make a signer; msg:dkim_sign(signer)
// prepends its DKIM-Signature. The signature itself is computed by
// github.com/emersion/go-msgauth.

// dkimFields are the keys of a signer table, in KumoMTA's order.
var dkimFields = []string{
	"domain", "selector", "headers", "key", "atps", "atpsh", "agent_user_identifier",
	"expiration", "body_length", "reporting", "header_canonicalization",
	"body_canonicalization", "ttl", "over_sign",
}

// dkimSigner is a decoded signer with its key.
type dkimSigner struct {
	opts     dkim.SignOptions
	expireIn time.Duration // expiration: x= is this long after signing
}

// dkimKeyTTL is how long a loaded key is reused when the signer does not
// say (KumoMTA's signer cache ttl default).
const dkimKeyTTL = 300 * time.Second

// dkimKeys caches parsed private keys per runtime: policies usually build
// their signer per message.
type dkimKeys struct {
	mu     sync.Mutex
	m      map[[32]byte]dkimKeyEntry
	warned map[string]bool
}

// warnOnce logs, once per runtime, that a signer option is ignored.
func (d *dkimKeys) warnOnce(r *Runtime, option string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.warned[option] {
		return
	}
	if d.warned == nil {
		d.warned = map[string]bool{}
	}
	d.warned[option] = true
	r.log.Warn().Str("option", option).Msg("dkim signer option is not implemented by kumogo; signatures are made without it")
}

type dkimKeyEntry struct {
	key     crypto.Signer
	expires time.Time
}

func (st *state) openDKIM() *lua.LTable {
	L := st.L
	t := L.NewTable()
	L.SetFuncs(t, map[string]lua.LGFunction{
		"rsa_sha256_signer":   st.dkimSignerFunc(false),
		"ed25519_signer":      st.dkimSignerFunc(true),
		"set_signing_threads": noop,
	})
	return t
}

func (st *state) dkimSignerFunc(ed bool) lua.LGFunction {
	return func(L *lua.LState) int {
		s, err := st.decodeDKIMSigner(st.tableArg(L), ed)
		if err != nil {
			L.RaiseError("%s", err.Error())
		}
		L.Push(&lua.LUserData{Value: s, Metatable: st.dkimMT()})
		return 1
	}
}

// dkimMT is the metatable of signer userdata, made once per state.
func (st *state) dkimMT() *lua.LTable {
	if st.dkimMeta == nil {
		mt := st.L.NewTable()
		mt.RawSetString("__name", lua.LString("DkimSigner"))
		mt.RawSetString("__tostring", st.L.NewFunction(func(L *lua.LState) int {
			ud := L.CheckUserData(1)
			s, _ := ud.Value.(*dkimSigner)
			if s == nil {
				L.Push(lua.LString("DkimSigner"))
				return 1
			}
			L.Push(lua.LString("DkimSigner(d=" + s.opts.Domain + " s=" + s.opts.Selector + ")"))
			return 1
		}))
		mt.RawSetString("__metatable", lua.LFalse)
		st.dkimMeta = mt
	}
	return st.dkimMeta
}

func (st *state) decodeDKIMSigner(v any, ed bool) (*dkimSigner, error) {
	what := "struct SignerParams"
	o := config.NewObject(v, v, what, dkimFields...)
	var domain, selector, auid, hcanon, bcanon string
	var headers []string
	var key config.KeySource
	var expiration, ttl time.Duration
	var bodyLength, reporting, overSign bool
	var atps, atpsh string
	o.Str("domain", &domain)
	o.Str("selector", &selector)
	o.StrList("headers", &headers)
	o.KeySource("key", &key)
	o.Str("atps", &atps)
	o.Str("atpsh", &atpsh)
	o.Str("agent_user_identifier", &auid)
	o.Duration("expiration", &expiration)
	o.Bool("body_length", &bodyLength)
	o.Bool("reporting", &reporting)
	o.Enum("header_canonicalization", &hcanon, "Relaxed", "Simple")
	o.Enum("body_canonicalization", &bcanon, "Relaxed", "Simple")
	o.Duration("ttl", &ttl)
	o.Bool("over_sign", &overSign)
	switch {
	case o.Err() != nil:
	case domain == "":
		o.Fail("missing field `domain`")
	case selector == "":
		o.Fail("missing field `selector`")
	case headers == nil:
		o.Fail("missing field `headers`")
	case key.IsZero():
		o.Fail("missing field `key`")
	}
	if o.Err() != nil {
		return nil, o.Err()
	}
	for _, opt := range []struct {
		set  bool
		name string
	}{{atps != "", "atps"}, {atpsh != "", "atpsh"}, {bodyLength, "body_length"}, {reporting, "reporting"}} {
		if opt.set {
			// leaving the tag out still gives a valid (stricter or plainer)
			// signature, so mail keeps flowing; say so once
			st.rt.dkim.warnOnce(st.rt, opt.name)
		}
	}
	if ttl <= 0 {
		ttl = dkimKeyTTL
	}
	priv, err := st.rt.dkimKey(key, ttl)
	if err != nil {
		return nil, fmt.Errorf("dkim signer %s/%s: %w", domain, selector, err)
	}
	_, isEd := priv.Public().(ed25519.PublicKey)
	if isEd != ed {
		want := "an RSA"
		if ed {
			want = "an ed25519"
		}
		return nil, fmt.Errorf("dkim signer %s/%s: the key is not %s key", domain, selector, want)
	}
	canon := func(s string) dkim.Canonicalization {
		if s == "Simple" {
			return dkim.CanonicalizationSimple
		}
		return dkim.CanonicalizationRelaxed // KumoMTA's default
	}
	keys := append([]string(nil), headers...)
	if overSign {
		// each listed header is signed once more than it occurs, so that
		// none can be added later (the extra instances sign as empty)
		keys = append(keys, headers...)
	}
	return &dkimSigner{
		opts: dkim.SignOptions{
			Domain:                 domain,
			Selector:               selector,
			Identifier:             auid,
			Signer:                 priv,
			Hash:                   crypto.SHA256,
			HeaderCanonicalization: canon(hcanon),
			BodyCanonicalization:   canon(bcanon),
			HeaderKeys:             keys,
		},
		expireIn: expiration,
	}, nil
}

// dkimKey loads and parses the private key of k, from the cache while it
// is younger than ttl.
func (r *Runtime) dkimKey(k config.KeySource, ttl time.Duration) (crypto.Signer, error) {
	raw, err := k.Read()
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(raw)
	r.dkim.mu.Lock()
	defer r.dkim.mu.Unlock()
	if e, ok := r.dkim.m[sum]; ok && time.Now().Before(e.expires) {
		return e.key, nil
	}
	key, err := parsePrivateKey(raw)
	if err != nil {
		return nil, err
	}
	if r.dkim.m == nil {
		r.dkim.m = map[[32]byte]dkimKeyEntry{}
	}
	for s, e := range r.dkim.m { // drop expired entries now and then
		if time.Now().After(e.expires) {
			delete(r.dkim.m, s)
		}
	}
	r.dkim.m[sum] = dkimKeyEntry{key: key, expires: time.Now().Add(ttl)}
	return key, nil
}

// parsePrivateKey reads an RSA (PKCS#1 or PKCS#8) or ed25519 (PKCS#8)
// private key, PEM or DER.
func parsePrivateKey(raw []byte) (crypto.Signer, error) {
	der := raw
	if b, _ := pem.Decode(raw); b != nil {
		der = b.Bytes
	} else if bytes.Contains(raw, []byte("-----BEGIN")) {
		return nil, errors.New("invalid PEM private key")
	}
	if k, err := x509.ParsePKCS1PrivateKey(der); err == nil {
		return k, nil
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("private key is neither PKCS#1 RSA nor PKCS#8: %w", err)
	}
	switch s := k.(type) {
	case *rsa.PrivateKey:
		return s, nil
	case ed25519.PrivateKey:
		return s, nil
	}
	return nil, fmt.Errorf("unsupported private key type %T", k)
}

// dkimSign is msg:dkim_sign(signer): the DKIM-Signature over the
// message's current data is prepended to it.
func (st *state) dkimSign(L *lua.LState) int {
	m := st.checkMessage(L)
	ud, ok := L.Get(2).(*lua.LUserData)
	var s *dkimSigner
	if ok {
		s, _ = ud.Value.(*dkimSigner)
	}
	if s == nil {
		L.ArgError(2, "DkimSigner expected (from kumo.dkim.rsa_sha256_signer or ed25519_signer)")
	}
	opts := s.opts
	if s.expireIn > 0 {
		opts.Expiration = time.Now().Add(s.expireIn)
	}
	signer, err := dkim.NewSigner(&opts)
	if err != nil {
		L.RaiseError("dkim_sign: %s", err.Error())
	}
	_, werr := signer.Write(m.Data())
	if cerr := signer.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		L.RaiseError("dkim_sign: %s", werr.Error())
	}
	sig := signer.Signature()
	if !strings.HasSuffix(sig, "\r\n") {
		sig += "\r\n"
	}
	m.PrependRaw([]byte(sig))
	return 0
}
