-- +goose NO TRANSACTION
-- +goose Up
-- The dispatcher's readiness probe and ReadyRecords: ready records of one
-- repeater, oldest first. Partial, so its size follows the backlog, not history.
-- next_check is included so skipping claimed records needs no heap visit.
CREATE INDEX CONCURRENTLY IF NOT EXISTS repeat_records_ready_idx
    ON repeat_records (repeater_id, registered_at, id) INCLUDE (next_check) WHERE state IN (1, 2);

-- +goose Down
DROP INDEX CONCURRENTLY IF EXISTS repeat_records_ready_idx;
