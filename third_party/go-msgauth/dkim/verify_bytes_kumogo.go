package dkim

// kumogo: verification of a message held in memory.
//
// VerifyWithOptions reads the message through a bufio.Reader and
// net/textproto, and with several signatures hashes the body once per
// signature, each in its own goroutine fed through an io.Pipe. kumogo
// holds every received message in one slice: VerifyBytes splits the
// header from it the way readHeader does, and hashes the body (a
// sub-slice, not copied) once per body canonicalization and hash
// algorithm, whatever the number of signatures; the signatures are then
// checked in turn by the same code as upstream's (verifyWith).
// verify_bytes_kumogo_test.go checks that both give the same results.

import (
	"bytes"
	"crypto"
	"fmt"
	"io"
	"strings"
)

// VerifyBytes is VerifyWithOptions for a message in memory; msg is not
// modified or kept.
func VerifyBytes(msg []byte, options *VerifyOptions) ([]*Verification, error) {
	h, body, err := splitHeader(msg)
	if err != nil {
		return nil, err
	}
	var signatures []*signature
	for i, kv := range h {
		k, v := parseHeaderField(kv)
		if strings.EqualFold(k, headerFieldName) {
			signatures = append(signatures, &signature{i, v})
		}
	}
	tooManySignatures := false
	if options != nil && options.MaxVerifications > 0 && len(signatures) > options.MaxVerifications {
		tooManySignatures = true
		signatures = signatures[:options.MaxVerifications]
	}

	type bodyKey struct {
		can  Canonicalization
		hash crypto.Hash
	}
	sums := map[bodyKey][]byte{}
	bodyHash := func(can Canonicalization, hash crypto.Hash) ([]byte, error) {
		k := bodyKey{can, hash}
		if sum, ok := sums[k]; ok {
			return sum, nil
		}
		hasher := hash.New()
		wc := canonicalizers[can].CanonicalizeBody(hasher)
		if _, err := wc.Write(body); err != nil {
			return nil, err
		}
		if err := wc.Close(); err != nil {
			return nil, err
		}
		sums[k] = hasher.Sum(nil)
		return sums[k], nil
	}

	verifs := make([]*Verification, len(signatures))
	for i, sig := range signatures {
		v, err := verifyWith(h, h[sig.i], sig.v, options, bodyHash)
		v.Err = err
		verifs[i] = v
	}
	// an error other than the verification's own fails the whole call,
	// as in VerifyWithOptions (only a key lookup can give one here)
	for _, v := range verifs {
		if err := v.Err; err != nil && !IsTempFail(err) && !IsPermFail(err) && !isFail(err) {
			return nil, err
		}
	}
	if tooManySignatures {
		return verifs, ErrTooManySignatures
	}
	return verifs, nil
}

// splitHeader is readHeader on msg: the header fields (lines without
// their line ends, continuation lines appended, each field ending in
// CRLF) and the body after the empty line.
func splitHeader(msg []byte) (header, []byte, error) {
	var h header
	for {
		if len(msg) == 0 {
			return h, nil, fmt.Errorf("failed to read header: %v", io.EOF)
		}
		var l []byte
		if i := bytes.IndexByte(msg, '\n'); i >= 0 {
			l, msg = msg[:i], msg[i+1:]
			l = bytes.TrimSuffix(l, []byte{'\r'})
		} else {
			l, msg = msg, nil
		}
		if len(l) == 0 {
			return h, msg, nil
		}
		if len(h) > 0 && (l[0] == ' ' || l[0] == '\t') {
			h[len(h)-1] += string(l) + crlf
		} else {
			h = append(h, string(l)+crlf)
		}
	}
}
