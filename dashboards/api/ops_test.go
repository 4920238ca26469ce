package api_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"repeaterd/dashboards/api"
	"repeaterd/dashboards/api/apitest"
	"repeaterd/dashboards/auth"
	"repeaterd/store"
	"repeaterd/store/storetest"
	"repeaterd/tasks"
)

var quietOps = slog.New(slog.NewTextHandler(io.Discard, nil))

// bulkWorker is a real asynq worker running bulk jobs on this test
// binary's Redis DB, and the client the API queues them with.
type bulkWorker struct {
	client   *tasks.Client
	finished chan *store.BulkJob // each job as its last chunk left it
}

func startBulkWorker(t *testing.T, st *store.Store, chunk int) *bulkWorker {
	t.Helper()
	rdb := storetest.RedisClient(t) // flushes the DB: before the worker starts
	opt, err := tasks.ParseRedisURL(storetest.RedisDB(t))
	if err != nil {
		t.Fatal(err)
	}
	bw := &bulkWorker{client: tasks.NewClient(rdb), finished: make(chan *store.BulkJob, 16)}
	h := &tasks.BulkJobHandlers{Store: st, Chunk: chunk, OnChunk: func(j *store.BulkJob) {
		if j.Finished() {
			bw.finished <- j
		}
	}}
	w := tasks.NewWorker(tasks.WorkerConfig{Concurrency: 2}, opt, quietOps, h.Register)
	if err := w.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Stop(context.Background()) })
	return bw
}

// await returns the next finished job, failing after a timeout.
func (bw *bulkWorker) await(t *testing.T) *store.BulkJob {
	t.Helper()
	select {
	case j := <-bw.finished:
		return j
	case <-time.After(30 * time.Second):
		t.Fatal("no bulk job finished in 30s")
		return nil
	}
}

// serveAs serves the API over st as the web role would for a request of
// domain's token ("" = the admin).
func serveAs(t *testing.T, cfg api.Config, st *store.Store, domain string) *apiEnv {
	t.Helper()
	cfg.Logger = quietOps
	h, err := api.New(cfg, st)
	if err != nil {
		t.Fatal(err)
	}
	p := auth.Admin("token")
	if domain != "" {
		p = auth.Principal{Domain: domain, TokenID: 1, Via: "domain-token"}
	}
	// Every exchange is checked against openapi.json, as serveAPI's are.
	srv := httptest.NewServer(apitest.Load(t).Handler(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r.WithContext(auth.WithPrincipal(r.Context(), p)))
	})))
	t.Cleanup(srv.Close)
	return &apiEnv{t: t, base: srv.URL, st: st}
}

type jobJSON struct {
	ID         int64      `json:"id"`
	Action     string     `json:"action"`
	State      string     `json:"state"`
	Total      int64      `json:"total"`
	Processed  int64      `json:"processed"`
	Changed    int64      `json:"changed"`
	Skipped    int64      `json:"skipped"`
	Error      string     `json:"error"`
	CreatedAt  time.Time  `json:"created_at"`
	FinishedAt *time.Time `json:"finished_at"`
}

func setStates(e *apiEnv, state store.State, ids []int64) {
	e.t.Helper()
	e.exec(`UPDATE repeat_records SET state = $1 WHERE id = ANY($2)`, state, ids)
}

func TestAPIRetryRepeater(t *testing.T) {
	st := storetest.NewStore(t)
	e := serveAs(t, api.Config{}, st, "")
	globex := serveAs(t, api.Config{}, st, "globex")
	r := e.repeater("acme")
	gone := e.repeater("acme")
	if err := st.SetBackoff(t.Context(), r.ID, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := st.DeleteRepeater(t.Context(), gone.ID); err != nil {
		t.Fatal(err)
	}
	path := fmt.Sprintf("/api/v1/repeaters/%d/retry", r.ID)
	globex.must(http.StatusNotFound, "POST", path, nil)
	e.must(http.StatusNotFound, "POST", "/api/v1/repeaters/999999/retry", nil)
	e.must(http.StatusBadRequest, "POST", "/api/v1/repeaters/x/retry", nil)
	e.must(http.StatusConflict, "POST", fmt.Sprintf("/api/v1/repeaters/%d/retry", gone.ID), nil)
	e.must(http.StatusMethodNotAllowed, "GET", path, nil)
	if got, _ := st.GetRepeater(t.Context(), r.ID); got.NextAttemptAt == nil {
		t.Fatal("a refused retry ended the backoff")
	}

	var view struct {
		ID            int64      `json:"id"`
		NextAttemptAt *time.Time `json:"next_attempt_at"`
		BackoffCount  int        `json:"backoff_count"`
		HasSecret     bool       `json:"has_secret"`
	}
	e.must(http.StatusOK, "POST", path, nil).decode(t, &view)
	if view.ID != r.ID || view.NextAttemptAt != nil || view.BackoffCount != 0 {
		t.Errorf("after retry: %+v, want no backoff", view)
	}
}

func TestAPIBulkRequeueByFilterAndIDs(t *testing.T) {
	st := storetest.NewStore(t)
	bw := startBulkWorker(t, st, 100)
	e := serveAs(t, api.Config{Jobs: bw.client}, st, "")
	acme := serveAs(t, api.Config{Jobs: bw.client}, st, "acme")
	globex := serveAs(t, api.Config{Jobs: bw.client}, st, "globex")
	r := e.repeater("acme")
	failed := storetest.Records(t, st, r, 750)
	setStates(e, store.StateCancelled, failed)
	setStates(e, store.StateSuccess, storetest.Records(t, st, r, 20))

	var started struct{ Job jobJSON }
	acme.must(http.StatusAccepted, "POST", "/api/v1/records/requeue",
		map[string]any{"filter": map[string]any{"repeater_id": r.ID, "state": "cancelled"}}).decode(t, &started)
	if started.Job.Action != "requeue" || started.Job.Total != 750 || started.Job.ID == 0 {
		t.Fatalf("started: %+v", started.Job)
	}
	done := bw.await(t)
	var job jobJSON
	acme.must(http.StatusOK, "GET", fmt.Sprintf("/api/v1/jobs/%d", done.ID), nil).decode(t, &job)
	if job.State != "done" || job.Processed != 750 || job.Changed != 750 || job.Skipped != 0 || job.FinishedAt == nil {
		t.Errorf("job: %+v", job)
	}
	globex.must(http.StatusNotFound, "GET", fmt.Sprintf("/api/v1/jobs/%d", done.ID), nil)
	if n := storetest.Count(t, st, `SELECT count(*) FROM repeat_records WHERE state = 2 AND next_check <= now()`); n != 750 {
		t.Errorf("%d records due again, want 750", n)
	}

	// By ids: a cancel of 5 of them and of a delivered one (skipped).
	var success int64
	e.exec(`SELECT 1`)
	if err := st.Pool().QueryRow(t.Context(), `SELECT id FROM repeat_records WHERE state = 4 LIMIT 1`).Scan(&success); err != nil {
		t.Fatal(err)
	}
	e.must(http.StatusAccepted, "POST", "/api/v1/records/cancel", map[string]any{"ids": append(failed[:5:5], success)})
	done = bw.await(t)
	if done.Action != store.BulkCancel || done.Processed != 6 || done.Changed != 5 || done.Total != 6 {
		t.Errorf("cancel by ids: %+v", done)
	}
}

// TestAPIBulkRefusesBadInput: every refusal is a 4xx from the error table,
// no job is made and no record changes.
func TestAPIBulkRefusesBadInput(t *testing.T) {
	st := storetest.NewStore(t)
	bw := startBulkWorker(t, st, 100)
	e := serveAs(t, api.Config{Jobs: bw.client}, st, "")
	acme := serveAs(t, api.Config{Jobs: bw.client}, st, "acme")
	r := e.repeater("acme")
	g := e.repeater("globex")
	ids := storetest.Records(t, st, r, 3)
	gids := storetest.Records(t, st, g, 1)
	before := e.rowCounts()
	for _, c := range []struct {
		name   string
		env    *apiEnv
		body   any
		status int
	}{
		{"empty body", e, "", http.StatusBadRequest},
		{"neither", e, map[string]any{}, http.StatusUnprocessableEntity},
		{"both", e, map[string]any{"ids": ids, "filter": map[string]any{"repeater_id": r.ID}}, http.StatusUnprocessableEntity},
		{"unknown id", e, map[string]any{"ids": []int64{ids[0], 987654321}}, http.StatusNotFound},
		{"zero id", e, map[string]any{"ids": []int64{0}}, http.StatusUnprocessableEntity},
		{"another domain's id", acme, map[string]any{"ids": gids}, http.StatusNotFound},
		{"ids not numbers", e, `{"ids":["a"]}`, http.StatusBadRequest},
		{"unknown field", e, `{"filter":{"repeater":1}}`, http.StatusBadRequest},
		{"empty filter", e, map[string]any{"filter": map[string]any{}}, http.StatusUnprocessableEntity},
		{"unknown state", e, map[string]any{"filter": map[string]any{"repeater_id": r.ID, "state": "lost"}}, http.StatusUnprocessableEntity},
		{"unknown repeater", e, map[string]any{"filter": map[string]any{"repeater_id": 987654321}}, http.StatusNotFound},
		{"another domain's repeater", acme, map[string]any{"filter": map[string]any{"repeater_id": g.ID}}, http.StatusNotFound},
		{"another domain", acme, map[string]any{"filter": map[string]any{"domain": "globex"}}, http.StatusNotFound},
		{"negative repeater", e, map[string]any{"filter": map[string]any{"repeater_id": -1}}, http.StatusUnprocessableEntity},
		{"not a date", e, `{"filter":{"repeater_id":1,"created_after":"yesterday"}}`, http.StatusBadRequest},
		{"year 1", e, map[string]any{"filter": map[string]any{"repeater_id": r.ID, "created_after": "0001-01-01T00:00:00Z"}}, http.StatusUnprocessableEntity},
		{"year 9999", e, map[string]any{"filter": map[string]any{"repeater_id": r.ID, "created_before": "9999-12-31T23:59:59Z"}}, http.StatusUnprocessableEntity},
		{"after past before", e, map[string]any{"filter": map[string]any{"repeater_id": r.ID,
			"created_after": "2026-02-01T00:00:00Z", "created_before": "2026-01-01T00:00:00Z"}}, http.StatusUnprocessableEntity},
		{"control character in key", e, map[string]any{"filter": map[string]any{"repeater_id": r.ID, "payload_id": "a\x01"}}, http.StatusUnprocessableEntity},
	} {
		for _, path := range []string{"/api/v1/records/requeue", "/api/v1/records/cancel"} {
			res := c.env.do("POST", path, c.body)
			if res.Status != c.status || res.errorCode() == "" {
				t.Errorf("%s %s: %d %s, want %d with an error code", c.name, path, res.Status, res.Body, c.status)
			}
		}
	}
	e.must(http.StatusNotFound, "GET", "/api/v1/jobs/987654321", nil)
	e.must(http.StatusBadRequest, "GET", "/api/v1/jobs/nope", nil)
	if after := e.rowCounts(); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("refused requests changed rows: %v → %v", before, after)
	}
	if n := storetest.Count(t, st, `SELECT count(*) FROM bulk_jobs`); n != 0 {
		t.Errorf("refused requests made %d jobs", n)
	}
	if n := storetest.Count(t, st, `SELECT count(*) FROM repeat_records WHERE state <> 1`); n != 0 {
		t.Errorf("refused requests changed %d records", n)
	}

	// Without a queue the job is refused, not left waiting.
	noQueue := serveAs(t, api.Config{}, st, "")
	if res := noQueue.do("POST", "/api/v1/records/cancel", map[string]any{"ids": ids}); res.Status != http.StatusServiceUnavailable {
		t.Errorf("without a queue: %d %s, want 503", res.Status, res.Body)
	}
}

// TestAPIBulkCancelRacesInFlightRecords: a bulk cancel runs while a batch
// holds claims on some records and records their outcomes. Whatever the
// interleaving: a delivered record stays Success, every other record ends
// Cancelled, no request is left waiting once the claims end, and the job's
// counts add up.
func TestAPIBulkCancelRacesInFlightRecords(t *testing.T) {
	st := storetest.NewStore(t)
	bw := startBulkWorker(t, st, 25)
	e := serveAs(t, api.Config{Jobs: bw.client}, st, "")
	r := e.repeater("acme")
	storetest.Records(t, st, r, 400)
	claimed, err := st.ClaimReadyRecords(t.Context(), r.ID, 120, "batch:race", time.Minute)
	if err != nil || len(claimed) != 120 {
		t.Fatalf("claim: %d, %v", len(claimed), err)
	}
	var wg sync.WaitGroup
	wg.Go(func() { // the batch: outcomes in small transactions while the job runs
		for i := 0; i < len(claimed); i += 10 {
			var out []store.Outcome
			for j, c := range claimed[i : i+10] {
				state := store.StateSuccess
				if j%2 == 1 {
					state = store.StateFail
				}
				out = append(out, store.Outcome{RecordID: c.ID, State: state, StatusCode: 200, Owner: "batch:race"})
			}
			if _, err := st.RecordOutcomes(context.Background(), out, nil); err != nil {
				t.Error(err)
				return
			}
		}
	})
	var started struct{ Job jobJSON }
	e.must(http.StatusAccepted, "POST", "/api/v1/records/cancel",
		map[string]any{"filter": map[string]any{"repeater_id": r.ID}}).decode(t, &started)
	done := bw.await(t)
	wg.Wait()
	if done.Processed != done.Total || done.Processed < 400-60 || done.Changed > done.Processed {
		t.Errorf("job counts: %+v", done)
	}
	if n := storetest.Count(t, st, `SELECT count(*) FROM repeat_records WHERE state = 4`); n != 60 {
		t.Errorf("%d records Success, want the 60 delivered", n)
	}
	if n := storetest.Count(t, st, `SELECT count(*) FROM repeat_records WHERE state = 8`); n != 340 {
		t.Errorf("%d records Cancelled, want 340", n)
	}
	if n := storetest.Count(t, st, `SELECT count(*) FROM repeat_records WHERE requested_state IS NOT NULL OR claim_owner IS NOT NULL`); n != 0 {
		t.Errorf("%d records still claimed or waiting on a request", n)
	}
	if n := storetest.Count(t, st, `SELECT count(*) FROM repeat_records rr
		WHERE attempt_count <> (SELECT count(*) FROM repeat_record_attempts a WHERE a.record_id = rr.id)`); n != 0 {
		t.Errorf("%d records' attempt counts differ from their attempts", n)
	}
}

func TestAPIListDomains(t *testing.T) {
	st := storetest.NewStore(t)
	e := serveAs(t, api.Config{}, st, "")
	acme := serveAs(t, api.Config{}, st, "acme")
	r := e.repeater("acme")
	e.repeater("globex")
	storetest.Records(t, st, r, 3)
	if err := st.SetDomainFlag(t.Context(), "globex", store.FlagProcessRepeaters, false); err != nil {
		t.Fatal(err)
	}
	type domainJSON struct {
		Domain    string           `json:"domain"`
		Repeaters int64            `json:"repeaters"`
		Flags     map[string]bool  `json:"flags"`
		Counts    map[string]int64 `json:"counts"`
	}
	var all struct{ Domains []domainJSON }
	e.must(http.StatusOK, "GET", "/api/v1/domains", nil).decode(t, &all)
	if len(all.Domains) != 2 || all.Domains[0].Domain != "acme" || all.Domains[0].Counts["pending"] != 3 ||
		all.Domains[0].Repeaters != 1 || !all.Domains[0].Flags["process_repeaters"] || all.Domains[1].Flags["process_repeaters"] {
		t.Errorf("admin: %+v", all.Domains)
	}
	var own struct{ Domains []domainJSON }
	acme.must(http.StatusOK, "GET", "/api/v1/domains", nil).decode(t, &own)
	if len(own.Domains) != 1 || own.Domains[0].Domain != "acme" {
		t.Errorf("acme's token: %+v", own.Domains)
	}
	e.must(http.StatusMethodNotAllowed, "POST", "/api/v1/domains", map[string]any{})
}
