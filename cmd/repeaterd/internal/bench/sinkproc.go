package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// sinkProc is a `repeaterd bench-sink` child process and a client of its
// control endpoints. It runs in its own process so its HTTP handling does
// not share a Go scheduler (or a GC) with the system under test.
type sinkProc struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	base   string // http://host:port
	client *http.Client
	stderr *limitedBuffer
}

// startSink starts a sink process; extra are bench-sink flags (--delay, --status).
func (e *env) startSink(ctx context.Context, extra ...string) (*sinkProc, error) {
	args := append([]string{"bench-sink", "--addr", "127.0.0.1:0", "--watch-stdin"}, extra...)
	cmd := exec.Command(e.opt.Binary, args...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	p := &sinkProc{cmd: cmd, stdin: stdin, stderr: &limitedBuffer{max: 8 << 10},
		client: &http.Client{Timeout: 2 * time.Minute}}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start sink: %w", err)
	}
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		if sc.Scan() {
			line <- sc.Text()
		}
		close(line)
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case l, ok := <-line:
		var a SinkAnnouncement
		if !ok || json.Unmarshal([]byte(l), &a) != nil || a.Addr == "" {
			p.close()
			return nil, fmt.Errorf("sink did not announce its address: %q %s", l, p.stderr)
		}
		p.base = "http://" + a.Addr
	case <-time.After(15 * time.Second):
		p.close()
		return nil, fmt.Errorf("sink did not start: %s", p.stderr)
	case <-ctx.Done():
		p.close()
		return nil, ctx.Err()
	}
	return p, nil
}

// URL is the address of path on the sink, for a repeater.
func (p *sinkProc) URL(path string) string { return p.base + path }

func (p *sinkProc) close() {
	_ = p.stdin.Close() // the sink exits when its stdin closes
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		_ = p.cmd.Process.Kill()
		<-done
	}
}

func (p *sinkProc) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, p.base+path, rd)
	if err != nil {
		return err
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("sink %s: %s %s", path, resp.Status, strings.TrimSpace(string(b)))
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

func (p *sinkProc) stats(ctx context.Context) (SinkStats, error) {
	var s SinkStats
	return s, p.do(ctx, http.MethodGet, "/_sink/stats", nil, &s)
}

// lookup returns the arrival times of the webhook-ids that have arrived.
func (p *sinkProc) lookup(ctx context.Context, ids []string) (map[string]time.Time, error) {
	out := make(map[string]time.Time, len(ids))
	for len(ids) > 0 {
		chunk := ids[:min(len(ids), 20_000)]
		ids = ids[len(chunk):]
		var got map[string]int64
		if err := p.do(ctx, http.MethodPost, "/_sink/lookup", chunk, &got); err != nil {
			return nil, err
		}
		for id, ns := range got {
			out[id] = time.Unix(0, ns)
		}
	}
	return out, nil
}

// wait blocks until the webhook-id arrives at the sink, up to timeout.
func (p *sinkProc) wait(ctx context.Context, id string, timeout time.Duration) (time.Time, bool, error) {
	q := url.Values{"id": {id}, "timeout": {timeout.String()}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.base+"/_sink/wait?"+q.Encode(), nil)
	if err != nil {
		return time.Time{}, false, err
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return time.Time{}, false, err
	}
	defer resp.Body.Close()
	var body struct{ At int64 }
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return time.Time{}, false, err
	}
	if resp.StatusCode == http.StatusGatewayTimeout {
		return time.Time{}, false, nil
	}
	return time.Unix(0, body.At), true, nil
}

func (p *sinkProc) reset(ctx context.Context) error {
	var ok map[string]bool
	return p.do(ctx, http.MethodPost, "/_sink/reset", nil, &ok)
}

// loadResult is what the plain load generator achieved.
type loadResult struct {
	Requests int64
	Errors   int64
	Elapsed  time.Duration
}

func (r loadResult) rate() float64 { return float64(r.Requests) / r.Elapsed.Seconds() }

// loadSink drives the sink with conns concurrent keep-alive clients posting
// a body like a delivery's, for d: the sink's own ceiling on this machine.
func loadSink(ctx context.Context, target string, conns int, d time.Duration, body []byte) loadResult {
	tr := &http.Transport{MaxIdleConns: conns, MaxIdleConnsPerHost: conns, IdleConnTimeout: time.Minute}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var n, errs, seq atomic.Int64
	began := time.Now()
	var wg sync.WaitGroup
	for range conns {
		wg.Go(func() {
			for ctx.Err() == nil {
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("webhook-id", fmt.Sprintf("load_%d", seq.Add(1)))
				resp, err := client.Do(req)
				if err != nil {
					if ctx.Err() == nil {
						errs.Add(1)
					}
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				n.Add(1)
			}
		})
	}
	wg.Wait()
	return loadResult{Requests: n.Load(), Errors: errs.Load(), Elapsed: time.Since(began)}
}
