-- +goose Up
-- repeat_record_stats: record counts per (domain, repeater, state), kept
-- current by the WAL stats consumer (dashboards.StatsConsumer) so dashboards
-- never run COUNT(*) over repeat_records. A row may hold 0 once a state
-- drains; readers skip those.
CREATE TABLE repeat_record_stats (
    domain      text     NOT NULL,
    repeater_id bigint   NOT NULL,
    state       smallint NOT NULL,
    count       bigint   NOT NULL DEFAULT 0,
    PRIMARY KEY (domain, repeater_id, state)
);

-- stats_progress: the one row saying which replication slot feeds
-- repeat_record_stats and the end LSN of the last WAL transaction applied to
-- it. It is written in the same transaction as the counts, so after a crash
-- the consumer skips exactly what it already applied (exactly once).
CREATE TABLE stats_progress (
    one         boolean     PRIMARY KEY DEFAULT true CHECK (one),
    slot_name   text        NOT NULL,
    applied_lsn pg_lsn      NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- REPLICA IDENTITY FULL: updates and deletes then carry the whole old row in
-- the WAL. The consumer needs the old state to move a record from one count to
-- another, and the old domain and repeater_id to count a purged record out;
-- the default identity (the primary key) gives only the id. Rows are narrow
-- (the body lives in payloads), so the old image costs ~100 bytes of WAL per
-- update or delete, cheaper than the alternative, a unique replica-identity
-- index on (id, domain, repeater_id, state) that every insert and state change
-- of this, the busiest table, would have to maintain.
ALTER TABLE repeat_records REPLICA IDENTITY FULL;

-- The WAL stats consumer decodes this publication with pgoutput.
CREATE PUBLICATION repeaterd_stats FOR TABLE repeat_records;

-- +goose Down
DROP PUBLICATION IF EXISTS repeaterd_stats;
ALTER TABLE repeat_records REPLICA IDENTITY DEFAULT;
DROP TABLE stats_progress;
DROP TABLE repeat_record_stats;
