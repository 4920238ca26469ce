// Package walstats is the stats role: it keeps repeat_record_stats, the
// number of records per (domain, repeater, state), current from Postgres's
// write-ahead log, so dashboards never run COUNT(*) over millions of
// records. It reads a persistent logical replication slot with pgoutput over
// the replication protocol (pglogrepl), for the publication on
// repeat_records:
//
//   - an insert adds one; a state change moves one from the old state to the
//     new (repeat_records has REPLICA IDENTITY FULL, so the old row is in the
//     WAL); a delete (retention purge) removes one; a TRUNCATE zeroes every
//     count at its place in the WAL, an exact recount.
//   - Exactly once: the count changes of a batch of WAL transactions and the
//     end LSN of its last transaction are written in one database transaction
//     (stats_progress); after a crash everything at or below that LSN is
//     skipped. The slot is acknowledged only up to what is committed there.
//   - First start: the slot is created with an exported snapshot, existing
//     records are counted inside that snapshot, and streaming starts at the
//     slot's consistent point, so counts start exact on a full database.
//   - wal_level not logical, or a role without REPLICATION: Start fails with
//     an error wrapping ErrWALUnavailable that names the fix, and
//     store.RecordCounts serves live (slow, exact) counts, flagged Live.
//   - One consumer per slot at a time (an advisory lock); others stand by.
//     A slot that does not match the stored counts (missing, left half
//     created, or confirmed past them) is recreated and the records
//     recounted, so dropping the slot is also how to rebuild drifted counts.
//
// The files follow the data: stream.go speaks the replication protocol,
// decode.go turns pgoutput messages into count changes (no I/O), session.go
// batches them and applies them through the store, slot.go matches the slot
// to the stored counts, consumer.go runs sessions and exports the metrics
// (repeaterd_stats_lag_bytes, repeaterd_stats_applied_lsn and
// repeaterd_stats_applied_changes_total; see Consumer.Collectors). All SQL
// is in package store.
package walstats
