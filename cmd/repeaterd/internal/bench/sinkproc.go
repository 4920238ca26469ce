package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"time"

	"repeaterd/repeaters/repeatertest"
)

// sinkProc is a `repeaterd bench-sink` child process and a client of its
// control endpoints. It runs in its own process so its HTTP handling does
// not share a Go scheduler (or a GC) with the system under test.
type sinkProc struct {
	*repeatertest.Client
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	base   string // http://host:port
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
	p := &sinkProc{cmd: cmd, stdin: stdin, stderr: &limitedBuffer{max: 8 << 10}}
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
		p.Client = repeatertest.NewClient(p.base)
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

// SinkAnnouncement is the first line the sink process prints on stdout.
type SinkAnnouncement struct {
	Addr string `json:"addr"`
	PID  int    `json:"pid"`
}

// ServeSink serves a repeatertest receiver on addr, prints a
// SinkAnnouncement line to announce and serves until ctx ends.
func ServeSink(ctx context.Context, addr string, cfg repeatertest.Config, pid int, announce io.Writer) error {
	rc, err := repeatertest.New(cfg)
	if err != nil {
		return err
	}
	srv, err := repeatertest.Listen(addr, rc)
	if err != nil {
		return err
	}
	b, _ := json.Marshal(SinkAnnouncement{Addr: srv.Addr(), PID: pid})
	fmt.Fprintln(announce, string(b))
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	_ = srv.Close(sctx)
	return nil
}
