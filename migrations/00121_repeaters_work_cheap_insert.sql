-- +goose Up
-- An INSERT of records adds to the work set only the repeaters missing from
-- it, and takes no lock of its own: the statement's foreign-key checks
-- (row-level AFTER triggers, which fire before this statement-level one)
-- already hold FOR KEY SHARE on every repeater it names, which is the lock
-- 00120's race argument needs. Most inserts name repeaters already in the
-- set, so they now cost one index probe each instead of a lock and an
-- upsert (bench ingest: ~1.1 ms of Postgres per single-record insert).
-- A requeue (an UPDATE, which has no foreign-key check) keeps 00120's
-- repeaters_mark_work with its explicit lock.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION repeat_records_work_inserted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- A new statement (read committed): it sees a prune that committed
    -- while the foreign-key check waited for the pruner's lock.
    INSERT INTO repeater_work (repeater_id)
    SELECT DISTINCT n.repeater_id FROM new_records n
    WHERE n.state IN (1, 2)
      AND NOT EXISTS (SELECT 1 FROM repeater_work w WHERE w.repeater_id = n.repeater_id)
    ORDER BY 1
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END
$$;
-- +goose StatementEnd

-- +goose Down
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION repeat_records_work_inserted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM repeaters_mark_work(ARRAY(SELECT DISTINCT repeater_id FROM new_records WHERE state IN (1, 2)));
    RETURN NULL;
END
$$;
-- +goose StatementEnd
