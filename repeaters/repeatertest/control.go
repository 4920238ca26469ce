package repeatertest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The control endpoints, for a process other than the receiver's:
//
//	GET  /_sink/stats                          → Stats
//	POST /_sink/lookup ["msg_1", ...]          → {"msg_1": first arrival, Unix ns, ...}
//	GET  /_sink/wait?id=msg_1&timeout=10s      → {"at": Unix ns}, or 504 at the timeout
//	GET  /_sink/wait-count?path=/a&n=5&timeout=10s → {"ok": true}, or 504 at the timeout
//	POST /_sink/reset                          → {"ok": true}
const controlPrefix = "/_sink/"

// DefaultWaitTimeout is how long a control wait lasts when it names no
// timeout.
const DefaultWaitTimeout = 10 * time.Second

func (rc *Receiver) serveControl(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	q := r.URL.Query()
	switch strings.TrimPrefix(r.URL.Path, controlPrefix) {
	case "stats":
		_ = json.NewEncoder(w).Encode(rc.Stats())
	case "lookup":
		var ids []string
		if err := json.NewDecoder(r.Body).Decode(&ids); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		out := map[string]int64{}
		for id, at := range rc.Lookup(ids) {
			out[id] = at.UnixNano()
		}
		_ = json.NewEncoder(w).Encode(out)
	case "wait":
		ctx, cancel := waitContext(r)
		defer cancel()
		at, ok := rc.Wait(ctx, q.Get("id"))
		if !ok {
			w.WriteHeader(http.StatusGatewayTimeout)
		}
		_ = json.NewEncoder(w).Encode(map[string]int64{"at": at.UnixNano()})
	case "wait-count":
		n, err := strconv.Atoi(q.Get("n"))
		if err != nil {
			http.Error(w, "n: "+err.Error(), http.StatusBadRequest)
			return
		}
		ctx, cancel := waitContext(r)
		defer cancel()
		ok := rc.WaitCount(ctx, q.Get("path"), n)
		if !ok {
			w.WriteHeader(http.StatusGatewayTimeout)
		}
		_ = json.NewEncoder(w).Encode(map[string]bool{"ok": ok})
	case "reset":
		rc.Reset()
		_ = json.NewEncoder(w).Encode(map[string]bool{"ok": true})
	default:
		http.NotFound(w, r)
	}
}

// waitContext is the request's context bounded by its ?timeout=.
func waitContext(r *http.Request) (context.Context, context.CancelFunc) {
	timeout, err := time.ParseDuration(r.URL.Query().Get("timeout"))
	if err != nil {
		timeout = DefaultWaitTimeout
	}
	return context.WithTimeout(r.Context(), timeout)
}

// Client reads a receiver's bookkeeping over its control endpoints, from
// another process.
type Client struct {
	base string
	http *http.Client
}

// lookupChunk bounds the ids one lookup request carries.
const lookupChunk = 20_000

// NewClient returns a client of the receiver at baseURL (http://host:port).
func NewClient(baseURL string) *Client {
	return &Client{base: strings.TrimSuffix(baseURL, "/"), http: &http.Client{Timeout: 2 * time.Minute}}
}

// Stats returns the receiver's counters.
func (c *Client) Stats(ctx context.Context) (Stats, error) {
	var s Stats
	_, err := c.do(ctx, http.MethodGet, "stats", nil, nil, &s)
	return s, err
}

// Lookup returns the first arrival of each of ids that has arrived.
func (c *Client) Lookup(ctx context.Context, ids []string) (map[string]time.Time, error) {
	out := make(map[string]time.Time, len(ids))
	for chunk := range slices.Chunk(ids, lookupChunk) {
		var got map[string]int64
		if _, err := c.do(ctx, http.MethodPost, "lookup", nil, chunk, &got); err != nil {
			return nil, err
		}
		for id, ns := range got {
			out[id] = time.Unix(0, ns)
		}
	}
	return out, nil
}

// Wait blocks until webhook-id id arrives, up to timeout, and returns its
// first arrival; false when it did not arrive in time.
func (c *Client) Wait(ctx context.Context, id string, timeout time.Duration) (time.Time, bool, error) {
	var body struct{ At int64 }
	ok, err := c.do(ctx, http.MethodGet, "wait", url.Values{"id": {id}, "timeout": {timeout.String()}}, nil, &body)
	if err != nil || !ok {
		return time.Time{}, false, err
	}
	return time.Unix(0, body.At), true, nil
}

// WaitCount blocks until at least n deliveries have arrived on path (any
// path when ""), up to timeout; false when they did not in time.
func (c *Client) WaitCount(ctx context.Context, path string, n int, timeout time.Duration) (bool, error) {
	var body struct{ OK bool }
	q := url.Values{"path": {path}, "n": {strconv.Itoa(n)}, "timeout": {timeout.String()}}
	ok, err := c.do(ctx, http.MethodGet, "wait-count", q, nil, &body)
	return ok && body.OK, err
}

// Reset makes the receiver forget every delivery.
func (c *Client) Reset(ctx context.Context) error {
	var ok map[string]bool
	_, err := c.do(ctx, http.MethodPost, "reset", nil, nil, &ok)
	return err
}

// do calls a control endpoint and decodes its answer into out. It reports
// false, without an error, when a wait timed out (504).
func (c *Client) do(ctx context.Context, method, endpoint string, q url.Values, in, out any) (bool, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return false, err
		}
		body = bytes.NewReader(b)
	}
	target := c.base + controlPrefix + endpoint
	if q != nil {
		target += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, target, body)
	if err != nil {
		return false, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
		return true, json.NewDecoder(resp.Body).Decode(out)
	case http.StatusGatewayTimeout:
		return false, nil
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	return false, fmt.Errorf("repeatertest: %s: %s %s", endpoint, resp.Status, strings.TrimSpace(string(b)))
}
