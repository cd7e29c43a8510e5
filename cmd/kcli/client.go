package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// client calls the daemon's HTTP API.
type client struct {
	base string
	http *http.Client
}

func newClient(endpoint string) *client {
	endpoint = strings.TrimRight(endpoint, "/")
	if !strings.Contains(endpoint, "://") {
		endpoint = "http://" + endpoint
	}
	return &client{base: endpoint, http: &http.Client{Timeout: 60 * time.Second}}
}

// apiError is a non-2xx answer, with the daemon's own message.
type apiError struct {
	method, path string
	status       int
	body         string
}

func (e *apiError) Error() string {
	msg := strings.TrimSpace(e.body)
	var j struct {
		Error string `json:"error"`
	}
	if json.Unmarshal([]byte(msg), &j) == nil && j.Error != "" {
		msg = j.Error
	}
	msg = strings.TrimPrefix(msg, "Error: ")
	if msg == "" {
		msg = http.StatusText(e.status)
	}
	return fmt.Sprintf("%s %s: %d %s", e.method, e.path, e.status, msg)
}

// do sends a request (with body as JSON when not nil) and returns the
// response body of a 2xx answer.
func (c *client) do(ctx context.Context, method, path string, body any) ([]byte, error) {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, r)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot reach %s: %w", c.base, unwrapURLError(err))
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		return nil, &apiError{method: method, path: strings.SplitN(path, "?", 2)[0], status: resp.StatusCode, body: string(b)}
	}
	return b, nil
}

func unwrapURLError(err error) error {
	if ue, ok := err.(interface{ Unwrap() error }); ok {
		if inner := ue.Unwrap(); inner != nil {
			return inner
		}
	}
	return err
}

// printJSON pretty-prints a JSON answer (or says "OK" for an empty one).
// print performs the request and prints the answer to w (printJSON).
func (c *client) print(ctx context.Context, w io.Writer, method, path string, body any) error {
	b, err := c.do(ctx, method, path, body)
	if err != nil {
		return err
	}
	return printJSON(w, b)
}

func printJSON(w io.Writer, b []byte) error {
	if len(bytes.TrimSpace(b)) == 0 {
		_, err := fmt.Fprintln(w, "OK")
		return err
	}
	var out bytes.Buffer
	b = bytes.TrimSpace(b)
	if err := json.Indent(&out, b, "", "  "); err != nil {
		_, err := w.Write(b)
		return err
	}
	out.WriteByte('\n')
	_, err := w.Write(out.Bytes())
	return err
}
