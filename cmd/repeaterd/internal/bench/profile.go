package bench

import (
	"context"
	"fmt"
	"os"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"

	"repeaterd/store"
	"repeaterd/store/benchdb"
)

// profile measures what one phase cost Postgres and Redis: commits and WAL
// fsyncs (pg_stat_database, pg_stat_wal), the top statements
// (pg_stat_statements, when the server preloads it: the durable instance of
// scripts/services.sh does) and Redis calls by command (INFO commandstats,
// server-wide), each per delivery.
type profile struct {
	cpu        cpuUse
	sinkPID    int
	before     benchdb.DBCounters
	redis      map[string]int64
	statements bool
}

// startProfile resets the counters a phase is measured by.
func (e *env) startProfile(ctx context.Context, st *store.Store, sinkPID int) (*profile, error) {
	p := &profile{sinkPID: sinkPID}
	var err error
	if p.statements, err = benchdb.ResetStatements(ctx, st.Pool()); err != nil {
		e.logf("pg_stat_statements unusable: %v", err)
	}
	if p.before, err = benchdb.Counters(ctx, st.Pool()); err != nil {
		return nil, err
	}
	p.redis, err = e.redisCalls(ctx)
	p.cpu = e.readCPU(ctx, st, sinkPID)
	return p, err
}

// finish prints the phase's costs per delivery and records them as figures
// under name.
func (p *profile) finish(ctx context.Context, e *env, st *store.Store, name string, delivered int64) error {
	cpuFig, cpuLine := cpuFigures(e.readCPU(ctx, st, p.sinkPID).sub(p.cpu), delivered)
	after, err := benchdb.Counters(ctx, st.Pool())
	if err != nil {
		return err
	}
	calls, err := e.redisCalls(ctx)
	if err != nil {
		return err
	}
	per := func(n int64) float64 { return ratio(float64(n), float64(delivered)) }
	redisPer := map[string]float64{}
	var redisTotal int64
	for cmd, n := range calls {
		if d := n - p.redis[cmd]; d > 0 {
			redisPer[cmd] = round2(per(d))
			redisTotal += d
		}
	}
	fig := map[string]any{
		"commits_per_delivery":     round2(per(after.Commits - p.before.Commits)),
		"wal_syncs_per_delivery":   round2(per(after.WALSyncs - p.before.WALSyncs)),
		"wal_bytes_per_delivery":   round2(per(after.WALBytes - p.before.WALBytes)),
		"redis_calls_per_delivery": round2(per(redisTotal)),
		"redis_calls_by_command":   redisPer,
		"cpu":                      cpuFig,
	}
	fmt.Fprintf(e.out, "\nprofile (%s): per delivery %.3f commits, %.3f WAL fsyncs, %.0f WAL bytes, %.2f Redis calls (%s)\n",
		name, per(after.Commits-p.before.Commits), per(after.WALSyncs-p.before.WALSyncs),
		per(after.WALBytes-p.before.WALBytes), per(redisTotal), topCommands(redisPer, 6))
	fmt.Fprintln(e.out, cpuLine)
	if p.statements {
		top, err := benchdb.TopStatements(ctx, st.Pool(), 8)
		if err != nil {
			return err
		}
		e.printStatements(top, delivered, "DELIVERY")
		fig["top_statements"] = top
	}
	e.figure("profile_"+name, fig)
	return nil
}

// printStatements prints top statements (benchdb.TopStatements) with their
// calls per unit of the work done (n units).
func (e *env) printStatements(top []benchdb.Statement, n int64, unit string) {
	tw := e.table("TOTAL ms", "CALLS", "CALLS/"+unit, "MEAN ms", "STATEMENT")
	for _, s := range top {
		row(tw, fmt.Sprintf("%.0f", s.TotalMs), s.Calls, fmt.Sprintf("%.3f", ratio(float64(s.Calls), float64(n))), fmt.Sprintf("%.3f", s.MeanMs), s.Query)
	}
	tw.Flush()
}

func topCommands(per map[string]float64, n int) string {
	cmds := make([]string, 0, len(per))
	for c := range per {
		cmds = append(cmds, c)
	}
	sort.Slice(cmds, func(i, j int) bool { return per[cmds[i]] > per[cmds[j]] })
	var parts []string
	for i, c := range cmds {
		if i == n {
			break
		}
		parts = append(parts, fmt.Sprintf("%s %.2f", c, per[c]))
	}
	return strings.Join(parts, ", ")
}

// redisCalls returns the Redis server's calls per command so far.
func (e *env) redisCalls(ctx context.Context) (map[string]int64, error) {
	o, err := redis.ParseURL(e.opt.RedisURL)
	if err != nil {
		return nil, err
	}
	c := redis.NewClient(o)
	defer c.Close()
	info, err := c.Info(ctx, "commandstats").Result()
	if err != nil {
		return nil, err
	}
	return parseCommandStats(info), nil
}

// parseCommandStats reads "cmdstat_get:calls=10,usec=..." lines.
func parseCommandStats(info string) map[string]int64 {
	out := map[string]int64{}
	for _, l := range strings.Split(info, "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(l), ":")
		cmd, isStat := strings.CutPrefix(name, "cmdstat_")
		if !ok || !isStat {
			continue
		}
		for _, kv := range strings.Split(rest, ",") {
			if v, ok := strings.CutPrefix(kv, "calls="); ok {
				n, _ := strconv.ParseInt(v, 10, 64)
				out[cmd] = n
			}
		}
	}
	return out
}

// cpuProfile starts the CPU profile of --cpuprofile when on and one was
// asked for; the returned func stops it.
func (e *env) cpuProfile(on bool) (stop func(), err error) {
	if !on {
		return func() {}, nil
	}
	return StartCPUProfile(e.opt.CPUProfile)
}

// StartCPUProfile writes this process's CPU profile to path until the
// returned func is called; an empty path profiles nothing.
func StartCPUProfile(path string) (stop func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}
