-- +goose NO TRANSACTION
-- +goose Up
-- The retention purge looks for terminal records completed before a cutoff,
-- oldest first. Partial on the terminal states and keyed on the completion
-- time, so "nothing to purge" is one index probe that finds no entry instead
-- of a scan of every record (store.PurgeBatch, store/purge_test.go's EXPLAIN).
CREATE INDEX CONCURRENTLY IF NOT EXISTS repeat_records_completed_idx
    ON repeat_records ((coalesce(state_changed_at, registered_at)))
    WHERE state NOT IN (1, 2); -- store.sqlTerminal, as the purge writes it

-- +goose Down
DROP INDEX CONCURRENTLY IF EXISTS repeat_records_completed_idx;
