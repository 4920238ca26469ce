-- +goose Up
-- state_changed_at: when a record last changed state (or was registered).
-- For a terminal record it is its completion time, which the retention purge
-- measures from; the stats_drift invariant uses it to leave out repeaters
-- whose latest changes the WAL consumer may not have applied yet. A trigger
-- keeps it, so no write path can forget it; it fires only when the state
-- actually changes. Rows from before this migration keep NULL ("not known"):
-- readers use coalesce(state_changed_at, registered_at). Adding a nullable
-- column and a default is a catalogue change only, however large the table.
ALTER TABLE repeat_records ADD COLUMN state_changed_at timestamptz;
ALTER TABLE repeat_records ALTER COLUMN state_changed_at SET DEFAULT now();

-- +goose StatementBegin
CREATE FUNCTION repeat_records_state_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- clock_timestamp, not now(): the change's own time, closer to its commit
    -- in a long transaction.
    NEW.state_changed_at := clock_timestamp();
    RETURN NEW;
END
$$;
-- +goose StatementEnd
CREATE TRIGGER repeat_records_state_changed
    BEFORE UPDATE OF state ON repeat_records
    FOR EACH ROW WHEN (OLD.state IS DISTINCT FROM NEW.state)
    EXECUTE FUNCTION repeat_records_state_changed();

-- applied_through: every transaction committed before this server time has
-- been applied to repeat_record_stats (the commit time of the last applied
-- transaction, or the server's time of an idle keepalive). NULL right after a
-- recount, until the consumer applies or acknowledges something.
ALTER TABLE stats_progress ADD COLUMN applied_through timestamptz;

-- purge_progress: when the purge last deleted records. The WAL consumer
-- counts those deletions out a moment later; until it has, the aggregate
-- differs from the records and stats_drift holds its judgement.
CREATE TABLE purge_progress (
    one             boolean     PRIMARY KEY DEFAULT true CHECK (one),
    last_deleted_at timestamptz NOT NULL
);

-- +goose Down
DROP TABLE purge_progress;
ALTER TABLE stats_progress DROP COLUMN applied_through;
DROP TRIGGER repeat_records_state_changed ON repeat_records;
DROP FUNCTION repeat_records_state_changed();
ALTER TABLE repeat_records DROP COLUMN state_changed_at;
