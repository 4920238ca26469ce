-- +goose NO TRANSACTION
-- +goose Up
-- The purge asks whether a payload still feeds any record; without this
-- index each such check (and each payload delete's foreign-key check) would
-- scan repeat_records.
CREATE INDEX CONCURRENTLY IF NOT EXISTS repeat_records_payload_idx ON repeat_records (payload_id);

-- +goose Down
DROP INDEX CONCURRENTLY IF EXISTS repeat_records_payload_idx;
