package bench

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"repeaterd/store"
	"repeaterd/store/benchdb"
	"repeaterd/tasks"
)

// memory: peak RSS (VmHWM) of `repeaterd run` with every role (dispatcher,
// worker, scheduler, stats, web), a process of its own, while it drains a
// backlog; the new path to the end, the legacy path for its window.
func runMemory(ctx context.Context, e *env) error {
	total := e.size
	const nDomains, nRepeaters = 50, 200

	type phase struct {
		newPath             bool
		delivered           int64
		drained             bool
		wall                time.Duration
		peakKB, endKB, hwKB int64
	}
	phases := []phase{{newPath: true}, {newPath: false}}
	err := eachSide(ctx, e, phases, func(p *phase, st *store.Store, sink *sinkProc) error {
		newPath := p.newPath
		loaded, err := e.spreadBacklog(ctx, st, sink.URL("/memory"), domainNames("mem", nDomains), nRepeaters/nDomains, total)
		if err != nil {
			return err
		}
		addr, err := freeLoopbackAddr()
		if err != nil {
			return err
		}
		cmd := exec.Command(e.opt.Binary, "run", "--roles", strings.Join(tasks.AllRoles, ","),
			"--http-addr", addr, "--api-token", randomHex(24))
		cmd.Env = append(os.Environ(), "DATABASE_URL="+e.dbURL, "REDIS_URL="+e.redisURL,
			"REPEATERD_ALLOW_PRIVATE_TARGETS=true",
			"REPEATERD_PROCESS_REPEATERS_DEFAULT="+strconv.FormatBool(newPath))
		logs := &limitedBuffer{max: 16 << 10}
		cmd.Stdout, cmd.Stderr = logs, logs
		began := time.Now()
		if err := cmd.Start(); err != nil {
			return err
		}
		exited := make(chan struct{})
		var exitErr error
		go func() { exitErr = cmd.Wait(); close(exited) }()
		stop := func() { stopChild(cmd.Process, exited, 30*time.Second) }
		limit := 10 * time.Minute
		if !newPath {
			limit = e.durationOf(90*time.Second, 45*time.Second)
		}
		sample := time.NewTicker(250 * time.Millisecond)
		defer sample.Stop()
		report := time.Now()
		for {
			select {
			case <-exited:
				return fmt.Errorf("repeaterd run exited early: %v\n%s", exitErr, logs)
			case <-ctx.Done():
				stop()
				return ctx.Err()
			case <-sample.C:
			}
			rss, hwm, err := procMemory(cmd.Process.Pid)
			if err != nil {
				continue
			}
			p.peakKB, p.hwKB, p.endKB = max(p.peakKB, rss), hwm, rss
			if time.Since(report) < 2*time.Second {
				continue
			}
			report = time.Now()
			if p.delivered, err = benchdb.CountSuccess(ctx, st.Pool(), nil); err != nil {
				stop()
				return err
			}
			p.wall = time.Since(began)
			e.logf("%-7s t=%5.1fs delivered=%7d  RSS %6.1f MB  VmHWM %6.1f MB", pathName(newPath),
				p.wall.Seconds(), p.delivered, float64(rss)/1024, float64(hwm)/1024)
			if p.delivered >= loaded || p.wall >= limit {
				p.drained = p.delivered >= loaded
				break
			}
		}
		if _, hwm, err := procMemory(cmd.Process.Pid); err == nil {
			p.hwKB = hwm
		}
		stop()
		return nil
	})
	if err != nil {
		return err
	}

	fmt.Fprintf(e.out, "\n`repeaterd run --roles %s` as a child process, draining %s records over %d repeaters in %d domains; VmHWM and VmRSS from /proc/PID/status every 250 ms\n",
		strings.Join(tasks.AllRoles, ","), FormatCount(total), nRepeaters, nDomains)
	tw := e.table("PATH", "DELIVERED", "DRAINED", "WALL s", "PEAK RSS MB (VmHWM)", "RSS AT END MB")
	for _, p := range phases {
		row(tw, pathName(p.newPath), p.delivered, p.drained, fmt.Sprintf("%.1f", p.wall.Seconds()),
			fmt.Sprintf("%.1f", float64(p.hwKB)/1024), fmt.Sprintf("%.1f", float64(p.endKB)/1024))
	}
	tw.Flush()
	newP, legacy := phases[0], phases[1]
	r := ratio(float64(newP.hwKB), float64(legacy.hwKB))
	fmt.Fprintf(e.out, "ratio new/legacy peak RSS: %.2f\n", r)
	e.notef("the child is `repeaterd run` with every role (the web role idle on a loopback port, the stats role consuming the WAL) and REPEATERD_ALLOW_PRIVATE_TARGETS=true and REPEATERD_PROCESS_REPEATERS_DEFAULT=true (new) or false (legacy); everything else at its default")
	for _, p := range phases {
		e.figure(pathName(p.newPath), map[string]any{"delivered": p.delivered, "drained": p.drained,
			"wall_s": round2(p.wall.Seconds()), "vm_hwm_mb": round2(float64(p.hwKB) / 1024), "rss_end_mb": round2(float64(p.endKB) / 1024)})
	}
	e.figure("ratio_hwm_new_legacy", round2(r))
	e.goal("new: peak RSS of all roles while draining "+FormatCount(total), "≤ 100 MB", fmt.Sprintf("%.1f MB", float64(newP.hwKB)/1024), newP.hwKB <= 100*1024 && newP.drained)
	return nil
}

// procMemory reads VmRSS and VmHWM (peak) in kB from /proc/PID/status.
func procMemory(pid int) (rss, hwm int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	return parseProcStatus(string(b))
}

func parseProcStatus(s string) (rss, hwm int64, err error) {
	found := 0
	for _, l := range strings.Split(s, "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "VmRSS:":
			rss, err = strconv.ParseInt(f[1], 10, 64)
			found++
		case "VmHWM:":
			hwm, err = strconv.ParseInt(f[1], 10, 64)
			found++
		}
		if err != nil {
			return 0, 0, err
		}
	}
	if found != 2 {
		return 0, 0, fmt.Errorf("VmRSS or VmHWM missing")
	}
	return rss, hwm, nil
}

// freeLoopbackAddr returns a loopback address nothing listens on now.
func freeLoopbackAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}
