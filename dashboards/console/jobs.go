package console

import (
	"context"
	"errors"
	"net/http"
	"strconv"

	"repeaterd/store"
)

// Bulk actions: the repeater page's form posts the selected rows, or "all
// matching this filter", to POST /ui/repeaters/{id}/bulk; the job runs in
// the background (the bulk_job task) and GET /ui/jobs/{id} shows its
// progress, refreshing itself until the job is finished.

const jobsPath = "/ui/jobs"

// JobQueue queues the task that runs a bulk job; tasks.Client is one.
type JobQueue interface {
	EnqueueBulkJob(ctx context.Context, id int64) error
}

func jobPath(id int64) string { return jobsPath + "/" + strconv.FormatInt(id, 10) }

// errNoQueue is a bulk action on a console given no queue.
var errNoQueue = errors.New("bulk jobs need the worker's queue, which this console was not given")

// startJob stores a job and queues its task; a job whose task cannot be
// queued is marked failed, so none waits for a task that never comes.
func (c *Console) startJob(ctx context.Context, p store.CreateBulkJobParams) (*store.BulkJob, error) {
	if c.cfg.Jobs == nil {
		return nil, errNoQueue
	}
	job, err := c.st.CreateBulkJob(ctx, p)
	if err != nil {
		return nil, err
	}
	if err := c.cfg.Jobs.EnqueueBulkJob(ctx, job.ID); err != nil {
		_ = c.st.FailBulkJob(context.WithoutCancel(ctx), job.ID, "could not queue the job: "+err.Error())
		return nil, err
	}
	return job, nil
}

// bulkAction is POST /ui/repeaters/{id}/bulk with the fields action
// (requeue, cancel, resend), scope (selected: the ids fields; all: every
// record matching the filter fields state, key, after, before).
func (c *Console) bulkAction(w http.ResponseWriter, r *http.Request) {
	if !c.checkForm(w, r) {
		return
	}
	id, ok := queryInt(r.PathValue("id"))
	if !ok || id == 0 {
		c.writeError(w, http.StatusNotFound, "No such repeater.")
		return
	}
	form := r.PostForm
	p := store.CreateBulkJobParams{Action: store.BulkAction(form.Get("action"))}
	switch form.Get("scope") {
	case "selected":
		for _, s := range form["ids"] {
			n, ok := queryInt(s)
			if !ok || n == 0 {
				c.writeError(w, http.StatusBadRequest, "ids must be record ids.")
				return
			}
			p.IDs = append(p.IDs, n)
		}
		if len(p.IDs) == 0 {
			c.writeError(w, http.StatusUnprocessableEntity, "Select some records first, or apply to all matching.")
			return
		}
	case "all":
		f, err := parseRecordFilter(form)
		if err != nil {
			c.writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		bulk := f.bulk()
		bulk.RepeaterID = id
		p.Filter = &bulk
	default:
		c.writeError(w, http.StatusBadRequest, "scope must be selected or all.")
		return
	}
	job, err := c.startJob(r.Context(), p)
	if err != nil {
		c.writeStoreError(w, "bulk action", err)
		return
	}
	c.cfg.Logger.Info("console: bulk job started", "job", job.ID, "repeater", id, "action", job.Action,
		"total", job.Total, "remote", r.RemoteAddr)
	http.Redirect(w, r, jobPath(job.ID), http.StatusSeeOther)
}

// serveJob is GET /ui/jobs/{id}; serveJobFragment is its refreshing part.
func (c *Console) serveJob(w http.ResponseWriter, r *http.Request) {
	job, ok := c.loadJob(w, r)
	if !ok {
		return
	}
	v := jobPageView{Frame: c.frame(r, "Bulk job #"+strconv.FormatInt(job.ID, 10)), Job: jobOf(job)}
	v.Fragment = jobPath(job.ID) + "/fragment"
	c.render(w, http.StatusOK, "job", v)
}

func (c *Console) serveJobFragment(w http.ResponseWriter, r *http.Request) {
	if job, ok := c.loadJob(w, r); ok {
		c.render(w, http.StatusOK, "job-progress", jobOf(job))
	}
}

func (c *Console) loadJob(w http.ResponseWriter, r *http.Request) (*store.BulkJob, bool) {
	id, ok := queryInt(r.PathValue("id"))
	if !ok || id == 0 {
		c.writeError(w, http.StatusNotFound, "No such job.")
		return nil, false
	}
	job, err := c.st.GetBulkJob(r.Context(), id, "")
	if err != nil {
		c.writeStoreError(w, "job", err)
		return nil, false
	}
	return job, true
}

func jobOf(j *store.BulkJob) jobView {
	v := jobView{ID: j.ID, Action: string(j.Action), State: j.State, Total: j.Total, Processed: j.Processed,
		Changed: j.Changed, Skipped: j.Skipped(), Error: j.Error, CreatedAt: j.CreatedAt, FinishedAt: j.FinishedAt,
		Finished: j.Finished(), RefreshMS: 500}
	if j.Total > 0 {
		v.Percent = int(min(100, j.Processed*100/j.Total))
	}
	if v.Finished {
		v.Percent, v.RefreshMS = 100, 0
	}
	if j.Filter.RepeaterID != 0 {
		v.RepeaterURL = repeaterPath(j.Filter.RepeaterID)
	}
	return v
}
