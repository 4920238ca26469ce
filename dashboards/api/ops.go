package api

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"repeaterd/dashboards/auth"
	"repeaterd/store"
)

// The operator's operations behind the console: retry a backed-off
// repeater now, requeue or cancel many records as a background job, follow
// the job, list the domains.

// JobQueue queues the task that runs a bulk job; tasks.Client is one.
type JobQueue interface {
	EnqueueBulkJob(ctx context.Context, id int64) error
}

// jobView is a bulk job as the API shows it. total is an estimate until the
// job is done, then the records it processed; skipped = processed - changed.
type jobView struct {
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

func viewJob(j *store.BulkJob) jobView {
	return jobView{ID: j.ID, Action: string(j.Action), State: j.State, Total: j.Total, Processed: j.Processed,
		Changed: j.Changed, Skipped: j.Skipped(), Error: j.Error, CreatedAt: j.CreatedAt, FinishedAt: j.FinishedAt}
}

// bulkInput is the body of POST /records/requeue and /records/cancel: a
// filter or a list of ids.
type bulkInput struct {
	Filter *bulkFilterInput `json:"filter"`
	IDs    []int64          `json:"ids"`
}

// bulkFilterInput is a filter as the API takes it; payload_id is a payload
// id or an idempotency key.
type bulkFilterInput struct {
	RepeaterID    int64      `json:"repeater_id"`
	Domain        string     `json:"domain"`
	State         string     `json:"state"`
	PayloadID     string     `json:"payload_id"`
	CreatedAfter  *time.Time `json:"created_after"`
	CreatedBefore *time.Time `json:"created_before"`
}

// storeFilter turns the input into the store's filter, the domain scoped
// to what the request may see.
func (in *bulkFilterInput) storeFilter(r *http.Request) (*store.BulkFilter, error) {
	f := &store.BulkFilter{RepeaterID: in.RepeaterID, Key: in.PayloadID, CreatedAfter: in.CreatedAfter, CreatedBefore: in.CreatedBefore}
	if in.RepeaterID < 0 {
		return nil, store.Errorf(store.EINVALID, "repeater_id must be a positive integer")
	}
	if in.Domain != "" {
		if err := store.ValidateDomain(in.Domain); err != nil {
			return nil, err
		}
	}
	var err error
	if f.Domain, err = scopedDomain(r, in.Domain); err != nil {
		return nil, err
	}
	if in.State != "" {
		st, err := store.ParseState(in.State)
		if err != nil {
			return nil, store.Errorf(store.EINVALID, "%v (states: %s)", err, stateNames())
		}
		f.States = []store.State{st}
	}
	return f, nil
}

// requeueRecords is POST /api/v1/records/requeue: 202 with the job that
// makes the records due again (delivered ones are skipped).
func (a *API) requeueRecords(w http.ResponseWriter, r *http.Request) error {
	return a.startBulkJob(w, r, store.BulkRequeue)
}

// cancelRecords is POST /api/v1/records/cancel: 202 with the job that
// cancels the ready records.
func (a *API) cancelRecords(w http.ResponseWriter, r *http.Request) error {
	return a.startBulkJob(w, r, store.BulkCancel)
}

func (a *API) startBulkJob(w http.ResponseWriter, r *http.Request, action store.BulkAction) error {
	var in bulkInput
	if err := a.decodeJSON(w, r, &in); err != nil {
		return err
	}
	p := store.CreateBulkJobParams{Action: action, Scope: auth.PrincipalFrom(r.Context()).Domain, IDs: in.IDs}
	if in.Filter != nil {
		f, err := in.Filter.storeFilter(r)
		if err != nil {
			return err
		}
		p.Filter = f
	}
	job, err := StartBulkJob(r.Context(), a.st, a.cfg.Jobs, p)
	if err != nil {
		return err
	}
	a.cfg.Logger.Info("bulk job started by an operator", "job", job.ID, "action", job.Action,
		"scope", job.Domain, "total", job.Total, "ids", len(job.IDs))
	w.Header().Set("Location", "/api/v1/jobs/"+strconv.FormatInt(job.ID, 10))
	WriteJSON(w, http.StatusAccepted, map[string]any{"job": viewJob(job)})
	return nil
}

// StartBulkJob stores a job and queues its task; the console starts its
// jobs through it too. A job whose task cannot be queued is marked failed
// and the error is CodeUnavailable (503), so no job waits for a task that never comes.
func StartBulkJob(ctx context.Context, st *store.Store, q JobQueue, p store.CreateBulkJobParams) (*store.BulkJob, error) {
	if q == nil {
		return nil, store.Errorf(CodeUnavailable, "bulk jobs need the worker's queue, which this server was not given")
	}
	job, err := st.CreateBulkJob(ctx, p)
	if err != nil {
		return nil, err
	}
	if err := q.EnqueueBulkJob(ctx, job.ID); err != nil {
		_ = st.FailBulkJob(context.WithoutCancel(ctx), job.ID, "could not queue the job: "+err.Error())
		return nil, store.Errorf(CodeUnavailable, "the job could not be queued (Redis); nothing was changed, try again")
	}
	return job, nil
}

// getJob is GET /api/v1/jobs/{id}.
func (a *API) getJob(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	job, err := a.st.GetBulkJob(r.Context(), id, auth.PrincipalFrom(r.Context()).Domain)
	if err != nil {
		return err
	}
	WriteJSON(w, http.StatusOK, viewJob(job))
	return nil
}

// retryRepeater is POST /api/v1/repeaters/{id}/retry: the backoff ends now
// and the dispatcher is woken; 200 with the repeater.
func (a *API) retryRepeater(w http.ResponseWriter, r *http.Request) error {
	rep, err := a.liveRepeater(r)
	if err != nil {
		return err
	}
	if err := a.st.RetryNow(r.Context(), rep.ID); err != nil {
		return err
	}
	a.cfg.Logger.Info("repeater retried now by an operator", "repeater", rep.ID, "domain", rep.Domain)
	return a.writeRepeater(w, r, rep.ID)
}

// domainView is one domain of GET /api/v1/domains.
type domainView struct {
	Domain    string           `json:"domain"`
	Repeaters int64            `json:"repeaters"`
	Flags     map[string]bool  `json:"flags"`
	Counts    map[string]int64 `json:"counts"`
}

// listDomains is GET /api/v1/domains: every domain (a domain token: its
// own), its repeaters not deleted, its flags and its records by state.
func (a *API) listDomains(w http.ResponseWriter, r *http.Request) error {
	domains, err := a.st.DomainSummaries(r.Context(), auth.PrincipalFrom(r.Context()).Domain)
	if err != nil {
		return err
	}
	out := make([]domainView, len(domains))
	for i, d := range domains {
		out[i] = domainView{Domain: d.Domain, Repeaters: d.Repeaters, Flags: d.Flags, Counts: map[string]int64{}}
		for _, s := range store.AllStates {
			out[i].Counts[s.String()] = d.Counts[s]
		}
	}
	WriteJSON(w, http.StatusOK, map[string]any{"domains": out})
	return nil
}
