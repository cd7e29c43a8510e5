package httpapi

import (
	"bufio"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// errBodyLimit is KumoMTA's text for a body over request_body_limit.
const errBodyLimit = "Failed to buffer the request body: length limit exceeded"

// readBody reads the request body, decompressing gzip or deflate
// (Content-Encoding), and enforces request_body_limit on the decompressed
// size. On failure it has written the response and returns ok=false.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	limit := s.cfg.RequestBodyLimit
	if limit <= 0 {
		limit = 2 * 1024 * 1024
	}
	var src io.Reader = http.MaxBytesReader(w, r.Body, limit+1)
	enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding")))
	switch enc {
	case "", "identity":
	case "gzip", "x-gzip":
		zr, err := gzip.NewReader(src)
		if err != nil {
			textError(w, http.StatusBadRequest, "invalid gzip request body: "+err.Error())
			return nil, false
		}
		defer zr.Close()
		src = zr
	case "deflate":
		// RFC 9110's deflate is zlib-wrapped; some clients send raw
		// DEFLATE, which starts without zlib's header: accept both.
		br := bufio.NewReader(src)
		if hdr, err := br.Peek(2); err == nil && (uint16(hdr[0])<<8|uint16(hdr[1]))%31 == 0 && hdr[0]&0x0f == 8 {
			zr, err := zlib.NewReader(br)
			if err != nil {
				textError(w, http.StatusBadRequest, "invalid deflate request body: "+err.Error())
				return nil, false
			}
			defer zr.Close()
			src = zr
		} else {
			fr := flate.NewReader(br)
			defer fr.Close()
			src = fr
		}
	default:
		textError(w, http.StatusUnsupportedMediaType, fmt.Sprintf("unsupported Content-Encoding %q", enc))
		return nil, false
	}
	body, err := io.ReadAll(io.LimitReader(src, limit+1))
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe) || int64(len(body)) > limit:
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusRequestEntityTooLarge)
		io.WriteString(w, errBodyLimit)
		return nil, false
	case err != nil:
		textError(w, http.StatusBadRequest, "reading the request body: "+err.Error())
		return nil, false
	}
	return body, true
}
