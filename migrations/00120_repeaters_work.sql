-- +goose Up
-- The work set: repeater_work holds every repeater that has a ready record
-- (state 1 or 2), and maybe a few that no longer have one. The readiness
-- pass reads only this set, so its cost follows the repeaters with work,
-- not all repeaters. A table of its own, not a flag on repeaters: writers
-- hold only FOR KEY SHARE on their repeater (RegisterRecord); setting a
-- flag in the repeater's row would make each registration wait for the one
-- before it to commit (two updates of a row conflict), and batches naming
-- several repeaters could deadlock.
--
-- Triggers add to it in the writing transaction; the dispatcher removes
-- (store.PruneIdleRepeaters) repeaters it finds without a ready record.
-- The race between the two is closed with row locks on the repeater:
-- a writer holds FOR KEY SHARE on it (as its foreign-key check does) from
-- before it looks at the set until it commits; the pruner takes FOR UPDATE
-- with SKIP LOCKED, which conflicts with that, and looks for ready records
-- only in a statement after the lock is held. So a writer either commits
-- before the pruner's look (its record is seen and the entry stays), or
-- waits for the pruner to commit and then adds the entry again itself.
CREATE TABLE repeater_work (
    repeater_id bigint PRIMARY KEY
);
COMMENT ON TABLE repeater_work IS
    'repeaters that may have ready records: a superset of those that do (kept by triggers on repeat_records; pruned by the dispatcher)';

-- +goose StatementBegin
CREATE FUNCTION repeaters_mark_work(ids bigint[]) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    -- Held until commit; blocks (or makes skip) the pruner's FOR UPDATE.
    PERFORM 1 FROM repeaters WHERE id = ANY (ids) ORDER BY id FOR KEY SHARE;
    -- A new statement, so (read committed) it sees a prune that committed
    -- while the lock above waited. In id order: writers adding the same
    -- repeaters wait for each other in one order, never in a cycle.
    INSERT INTO repeater_work (repeater_id)
    SELECT DISTINCT id FROM unnest(ids) id ORDER BY id
    ON CONFLICT DO NOTHING;
END
$$;

-- Once per INSERT statement, however many rows: a batch ingest pays one call.
CREATE FUNCTION repeat_records_work_inserted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM repeaters_mark_work(ARRAY(SELECT DISTINCT repeater_id FROM new_records WHERE state IN (1, 2)));
    RETURN NULL;
END
$$;

-- A terminal record requeued (the only way back to ready).
CREATE FUNCTION repeat_records_work_requeued() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM repeaters_mark_work(ARRAY[NEW.repeater_id]);
    RETURN NULL;
END
$$;
-- +goose StatementEnd

CREATE TRIGGER repeat_records_work_inserted
    AFTER INSERT ON repeat_records REFERENCING NEW TABLE AS new_records
    FOR EACH STATEMENT EXECUTE FUNCTION repeat_records_work_inserted();
CREATE TRIGGER repeat_records_work_requeued
    AFTER UPDATE OF state ON repeat_records
    FOR EACH ROW WHEN (NEW.state IN (1, 2) AND OLD.state NOT IN (1, 2))
    EXECUTE FUNCTION repeat_records_work_requeued();

-- Existing repeaters start in the set (no scan of the records, no long
-- lock; the triggers above already cover what commits from now on); the
-- pruner takes the idle ones out within its first passes.
INSERT INTO repeater_work (repeater_id) SELECT id FROM repeaters;

-- +goose Down
DROP TRIGGER repeat_records_work_requeued ON repeat_records;
DROP TRIGGER repeat_records_work_inserted ON repeat_records;
DROP FUNCTION repeat_records_work_requeued();
DROP FUNCTION repeat_records_work_inserted();
DROP FUNCTION repeaters_mark_work(bigint[]);
DROP TABLE repeater_work;
