package bench

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"repeaterd/store"
	"repeaterd/store/benchdb"
)

// ingest: records/s registered through the API by 32 concurrent clients,
// one record per request (POST /api/v1/records) and 100 per request (POST
// /api/v1/records:batch), while the engine delivers them; the ceilings are
// the same requests written straight into the store (no HTTP, no JSON),
// batched and single, once `repeaterd run` has stopped. Between them the
// same API modes run against `repeaterd run --roles web` alone (nothing
// delivering), which shows what the deliveries cost ingest.
// `repeaterd run --roles web,dispatcher,worker,scheduler` runs as a child
// process, as in production; the clients and the store ceiling run in the
// bench process.
func runIngest(ctx context.Context, e *env) error {
	const nDomains, perDomain, clients, perBatch = 50, 4, 32, 100
	window := e.durationOf(15*time.Second, 8*time.Second)
	if e.opt.Duration > 0 {
		window = e.opt.Duration
	}
	e.figure("clients", clients)
	e.figure("records_per_batch", perBatch)
	e.figure("window_s", window.Seconds())
	body := []byte(`{"bench":true,"pad":"` + strings.Repeat("x", benchBodyBytes-25) + `"}`)
	var results []ingestResult
	err := e.side(ctx, func(st *store.Store, sink *sinkProc) error {
		ids, err := makeRepeaters(ctx, st, domainNames("in", nDomains), perDomain, func(int) string { return sink.URL("/ingest") })
		if err != nil {
			return err
		}
		// The goal's modes, with the engine delivering; then the API alone
		// (`--roles web`: what the engine's share of the cores costs it).
		for _, phase := range []struct{ roles, suffix string }{
			{"web,dispatcher,worker,scheduler", ""},
			{"web", ", API alone"},
		} {
			phased, err := e.ingestPhase(ctx, st, phase.roles, phase.suffix, ids, clients, perBatch, window, body)
			results = append(results, phased...)
			if err != nil {
				return err
			}
		}
		// The ceilings are the store's alone: the engine delivering the
		// backlog would share the cores with them.
		for _, n := range []int{perBatch, 1} {
			e.logf("ingest ceiling: the same requests straight into the store (%d a call), %d goroutines for %s, repeaterd run stopped", n, clients, window)
			before, err := benchdb.CountSuccess(ctx, st.Pool(), nil)
			if err != nil {
				return err
			}
			cpu := e.readCPU(ctx, st, 0)
			ceiling := e.ingestStore(ctx, st, ids, clients, n, window, body)
			ceiling.cpu = e.readCPU(ctx, st, 0).sub(cpu)
			after, err := benchdb.CountSuccess(ctx, st.Pool(), nil)
			if err != nil {
				return err
			}
			ceiling.delivered = after - before
			results = append(results, ceiling)
		}
		return nil
	})
	if err != nil {
		return err
	}

	fmt.Fprintf(e.out, "\n%d clients registering records for %d repeaters in %d domains (%d-byte JSON payloads, an idempotency key each) for %s per mode, while `repeaterd run` delivers them to the sink\n",
		clients, nDomains*perDomain, nDomains, len(body), window)
	tw := e.table("MODE", "RECORDS/REQUEST", "REQUESTS", "RECORDS", "SECONDS", "RECORDS/s", "REQUEST p50 ms", "REQUEST p99 ms", "ERRORS", "DELIVERED MEANWHILE /s")
	for _, r := range results {
		row(tw, r.name, r.perReq, r.requests, r.records, fmt.Sprintf("%.1f", r.elapsed.Seconds()), fmt.Sprintf("%.0f", r.rate()),
			fmt.Sprintf("%.1f", ms(r.p50)), fmt.Sprintf("%.1f", ms(r.p99)), r.errors, r.deliveredRate())
	}
	tw.Flush()
	fmt.Fprintln(e.out, "CPU per record registered (repeaterd run = the API and the engine delivering meanwhile; clients = the bench process):")
	for _, r := range results {
		us := func(t time.Duration) float64 { return ratio(float64(t.Microseconds()), float64(r.records)) }
		fmt.Fprintf(e.out, "  %-19s clients %.0f µs, repeaterd run %.0f µs, Postgres %.0f µs, Redis %.0f µs = %.0f µs (2 cores / that = %.0f/s at most)\n",
			r.name, us(r.cpu.engine), us(r.cpu.sink), us(r.cpu.postgres), us(r.cpu.redis), us(r.cpu.total()), ratio(2e6, us(r.cpu.total())))
	}
	for _, r := range results {
		if r.statements != nil {
			fmt.Fprintf(e.out, "Postgres statements during %s (the engine's too, where it runs):\n", r.name)
			e.printStatements(r.statements, r.records, "RECORD")
		}
	}
	single, batched, ceiling, storeSingle := results[0], results[1], results[4], results[5]
	fmt.Fprintf(e.out, "batched/single: %.1f×   batched as a share of the store ceiling: %.0f %%   single as a share of the store's: %.0f %%\n",
		ratio(batched.rate(), single.rate()), 100*ratio(batched.rate(), ceiling.rate()), 100*ratio(single.rate(), storeSingle.rate()))
	e.notef("the API runs in `repeaterd run --roles web,dispatcher,worker,scheduler` (a child, all else default), then in `--roles web` alone (\"API alone\": nothing delivers, after the goal's modes); clients use keep-alive connections and an admin bearer token; every record has its own idempotency key")
	if single.firstErr != "" || batched.firstErr != "" {
		e.notef("first errors: single %q, batched %q", single.firstErr, batched.firstErr)
	}
	for _, r := range results {
		e.figure(r.name, map[string]any{"records_per_request": r.perReq, "requests": r.requests, "records": r.records,
			"seconds": round2(r.elapsed.Seconds()), "records_per_s": round2(r.rate()), "request_p50_ms": ms(r.p50),
			"request_p99_ms": ms(r.p99), "errors": r.errors, "delivered_meanwhile": r.delivered,
			"cpu_us_per_record": map[string]any{"clients": perRecord(r.cpu.engine, r.records), "repeaterd_run": perRecord(r.cpu.sink, r.records),
				"postgres": perRecord(r.cpu.postgres, r.records), "redis": perRecord(r.cpu.redis, r.records), "total": perRecord(r.cpu.total(), r.records)}})
	}
	e.goal("single records/s (32 clients, deliveries running)", "≥ 5000/s", fmt.Sprintf("%.0f/s", single.rate()), single.rate() >= 5000 && single.errors == 0)
	e.goal("batched records/s (32 clients × 100, deliveries running)", "≥ 50000/s", fmt.Sprintf("%.0f/s", batched.rate()), batched.rate() >= 50000 && batched.errors == 0)
	return nil
}

// ingestPhase runs the API modes against `repeaterd run --roles roles`,
// their names suffixed.
func (e *env) ingestPhase(ctx context.Context, st *store.Store, roles, suffix string, ids []int64,
	clients, perBatch int, window time.Duration, body []byte) ([]ingestResult, error) {
	web, err := e.startWeb(ctx, roles)
	if err != nil {
		return nil, err
	}
	defer web.stop()
	var results []ingestResult
	for _, m := range []ingestMode{
		{name: "single" + suffix, path: "/api/v1/records", perReq: 1},
		{name: "batched" + suffix, path: "/api/v1/records:batch", perReq: perBatch},
	} {
		e.logf("ingest %s: %d clients for %s, repeaterd run --roles %s", m.name, clients, window, roles)
		before, err := benchdb.CountSuccess(ctx, st.Pool(), nil)
		if err != nil {
			return results, err
		}
		statements, err := benchdb.ResetStatements(ctx, st.Pool())
		if err != nil {
			return results, err
		}
		cpu := e.readCPU(ctx, st, web.cmd.Process.Pid)
		r := e.ingestHTTP(ctx, web, m, ids, clients, window, body)
		r.cpu = e.readCPU(ctx, st, web.cmd.Process.Pid).sub(cpu)
		if statements {
			if r.statements, err = benchdb.TopStatements(ctx, st.Pool(), 8); err != nil {
				return results, err
			}
		}
		after, err := benchdb.CountSuccess(ctx, st.Pool(), nil)
		if err != nil {
			return results, err
		}
		r.delivered = after - before
		results = append(results, r)
		if err := web.alive(); err != nil {
			return results, err
		}
	}
	return results, nil
}

// ingestMode is one way of registering records.
type ingestMode struct {
	name, path string
	perReq     int
}

// ingestResult is what one mode achieved.
type ingestResult struct {
	ingestMode
	requests, records, errors int64
	elapsed                   time.Duration
	p50, p99                  time.Duration
	delivered                 int64
	firstErr                  string
	// cpu is what the mode cost: engine = the bench process (the clients),
	// sink = the `repeaterd run` child (API and deliveries).
	cpu cpuUse
	// statements are Postgres' top statements during the mode, when the
	// server has pg_stat_statements.
	statements []benchdb.Statement
}

func perRecord(t time.Duration, n int64) float64 {
	return round2(ratio(float64(t.Microseconds()), float64(n)))
}

func (r ingestResult) rate() float64 { return float64(r.records) / r.elapsed.Seconds() }

func (r ingestResult) deliveredRate() string {
	return fmt.Sprintf("%.0f", float64(r.delivered)/r.elapsed.Seconds())
}

// ingestHTTP runs clients posting mode's requests for window (and at most
// 2 M records in all).
func (e *env) ingestHTTP(ctx context.Context, web *webProc, m ingestMode, ids []int64, clients int, window time.Duration, payload []byte) ingestResult {
	tr := &http.Transport{MaxIdleConns: clients, MaxIdleConnsPerHost: clients, IdleConnTimeout: time.Minute}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	const maxRecords = 2_000_000
	res := ingestResult{ingestMode: m}
	var requests, records, errs, seq atomic.Int64
	var firstErr atomic.Value
	lat := make([][]time.Duration, clients)
	ctx, cancel := context.WithTimeout(ctx, window)
	defer cancel()
	prefix := randomHex(4) + "-" + m.name
	began := time.Now()
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			var buf bytes.Buffer
			for ctx.Err() == nil && records.Load() < maxRecords {
				buf.Reset()
				first := seq.Add(int64(m.perReq)) - int64(m.perReq)
				writeIngestBody(&buf, m.perReq > 1, ids, first, m.perReq, prefix, payload)
				t0 := time.Now()
				ok, msg := web.post(ctx, client, m.path, buf.Bytes())
				if ctx.Err() != nil {
					return // cut off by the window: not counted
				}
				lat[c] = append(lat[c], time.Since(t0))
				requests.Add(1)
				if !ok {
					errs.Add(1)
					firstErr.CompareAndSwap(nil, msg)
					continue
				}
				records.Add(int64(m.perReq))
			}
		})
	}
	wg.Wait()
	res.elapsed = min(time.Since(began), window)
	res.requests, res.records, res.errors = requests.Load(), records.Load(), errs.Load()
	if s, ok := firstErr.Load().(string); ok {
		res.firstErr = s
	}
	res.p50, res.p99 = latencies(lat)
	return res
}

// writeIngestBody writes n records (a batch body when batched, else one
// record's body) for the repeaters round-robin from record number first.
func writeIngestBody(buf *bytes.Buffer, batched bool, ids []int64, first int64, n int, prefix string, payload []byte) {
	if batched {
		buf.WriteString(`{"records":[`)
	}
	for i := range int64(n) {
		if i > 0 {
			buf.WriteByte(',')
		}
		k := first + i
		fmt.Fprintf(buf, `{"repeater_id":%d,"idempotency_key":"%s-%d","payload":`, ids[k%int64(len(ids))], prefix, k)
		buf.Write(payload)
		buf.WriteByte('}')
	}
	if batched {
		buf.WriteString(`]}`)
	}
}

// ingestStore is the ceiling: the same requests by store.RegisterBatch
// (single: RegisterRecord), from goroutines of the bench process.
func (e *env) ingestStore(ctx context.Context, st *store.Store, ids []int64, workers, perBatch int, window time.Duration, payload []byte) ingestResult {
	name := "store ceiling"
	if perBatch == 1 {
		name = "store, single"
	}
	res := ingestResult{ingestMode: ingestMode{name: name, perReq: perBatch}}
	var requests, records, errs, seq atomic.Int64
	lat := make([][]time.Duration, workers)
	ctx, cancel := context.WithTimeout(ctx, window)
	defer cancel()
	prefix := randomHex(4) + "-store"
	register := func(ctx context.Context, items []store.BatchItem) error {
		_, err := st.RegisterBatch(ctx, items, func(string) bool { return true })
		return err
	}
	if perBatch == 1 { // the store's single path, as the API's: RegisterRecord
		register = func(ctx context.Context, items []store.BatchItem) error {
			it := items[0]
			_, _, err := st.RegisterRecord(ctx, store.RegisterParams{RepeaterID: it.RepeaterID, Body: it.Body, IdempotencyKey: it.IdempotencyKey})
			return err
		}
	}
	began := time.Now()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			items := make([]store.BatchItem, perBatch)
			for ctx.Err() == nil && records.Load() < 2_000_000 {
				first := seq.Add(int64(perBatch)) - int64(perBatch)
				for i := range items {
					k := first + int64(i)
					items[i] = store.BatchItem{RepeaterID: ids[k%int64(len(ids))], Body: payload,
						IdempotencyKey: fmt.Sprintf("%s-%d", prefix, k)}
				}
				t0 := time.Now()
				err := register(ctx, items)
				if ctx.Err() != nil {
					return
				}
				lat[w] = append(lat[w], time.Since(t0))
				requests.Add(1)
				if err != nil {
					errs.Add(1)
					continue
				}
				records.Add(int64(perBatch))
			}
		})
	}
	wg.Wait()
	res.elapsed = min(time.Since(began), window)
	res.requests, res.records, res.errors = requests.Load(), records.Load(), errs.Load()
	res.p50, res.p99 = latencies(lat)
	return res
}

func latencies(per [][]time.Duration) (p50, p99 time.Duration) {
	var all []time.Duration
	for _, l := range per {
		all = append(all, l...)
	}
	if len(all) == 0 {
		return 0, 0
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	return percentileSorted(all, 50), percentileSorted(all, 99)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// webProc is `repeaterd run` with the web role, as a child process.
type webProc struct {
	cmd    *exec.Cmd
	base   string
	token  string
	logs   *limitedBuffer
	exited chan struct{}
	err    error
}

// startWeb starts `repeaterd run --roles roles` (web among them) on a free
// loopback port with an admin token, and waits for /healthz.
func (e *env) startWeb(ctx context.Context, roles string) (*webProc, error) {
	addr, err := freeLoopbackAddr()
	if err != nil {
		return nil, err
	}
	w := &webProc{base: "http://" + addr, token: randomHex(24), logs: &limitedBuffer{max: 16 << 10}, exited: make(chan struct{})}
	w.cmd = exec.Command(e.opt.Binary, "run", "--roles", roles, "--http-addr", addr, "--api-token", w.token)
	w.cmd.Env = append(os.Environ(), "DATABASE_URL="+e.dbURL, "REDIS_URL="+e.redisURL, "REPEATERD_ALLOW_PRIVATE_TARGETS=true")
	w.cmd.Stdout, w.cmd.Stderr = w.logs, w.logs
	if err := w.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { w.err = w.cmd.Wait(); close(w.exited) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(w.base + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return w, nil
			}
		}
		select {
		case <-w.exited:
			return nil, fmt.Errorf("repeaterd run exited: %v\n%s", w.err, w.logs)
		case <-ctx.Done():
			w.stop()
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			w.stop()
			return nil, fmt.Errorf("repeaterd run did not answer /healthz in 30s:\n%s", w.logs)
		}
	}
}

// post sends one request and reports whether it stored its records (201).
func (w *webProc) post(ctx context.Context, c *http.Client, path string, body []byte) (bool, string) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, w.base+path, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+w.token)
	resp, err := c.Do(req)
	if err != nil {
		return false, err.Error()
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return false, fmt.Sprintf("%d %s", resp.StatusCode, b)
	}
	var discard json.RawMessage
	_ = json.NewDecoder(resp.Body).Decode(&discard)
	return true, ""
}

func (w *webProc) alive() error {
	select {
	case <-w.exited:
		return fmt.Errorf("repeaterd run exited: %v\n%s", w.err, w.logs)
	default:
		return nil
	}
}

func (w *webProc) stop() { stopChild(w.cmd.Process, w.exited, 30*time.Second) }
