-- +goose Up
-- bulk_jobs: an operator's requeue, cancel or resend of many records (the
-- console's "all N matching this filter", POST /api/v1/records/requeue and
-- /cancel), run in the background by the bulk_job task in chunks. Each chunk
-- and the progress it makes (cursor, processed, changed) commit in one
-- transaction, so a task killed midway resumes from its cursor and counts
-- nothing twice (store/bulkjobs.go).
CREATE TABLE bulk_jobs (
    id            bigserial   PRIMARY KEY,
    action        text        NOT NULL CHECK (action IN ('requeue', 'cancel', 'resend')),
    state         text        NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'running', 'done', 'failed')),
    domain        text        NOT NULL DEFAULT '',  -- the scope it was made in; '' = every domain (the admin)
    filter        jsonb       NOT NULL DEFAULT '{}', -- store.BulkFilter
    ids           bigint[],                          -- a selection of records instead of a filter
    total         bigint      NOT NULL DEFAULT 0,    -- an estimate until done, then the records processed
    processed     bigint      NOT NULL DEFAULT 0,
    changed       bigint      NOT NULL DEFAULT 0,
    cursor_repeater bigint    NOT NULL DEFAULT 0,    -- the last (repeater, record) processed
    cursor_record bigint      NOT NULL DEFAULT 0,
    error         text        NOT NULL DEFAULT '',
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz
);

-- +goose Down
DROP TABLE bulk_jobs;
