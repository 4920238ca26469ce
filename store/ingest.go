package store

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// BatchItem is one record of RegisterBatch.
type BatchItem struct {
	RepeaterID     int64
	ContentType    string // defaults to application/json
	Body           []byte
	IdempotencyKey string // optional; unique per repeater
}

// BatchResult is one item's outcome: its record, whether this call created
// it (false: an earlier request, or an earlier item of the batch, with the
// same idempotency key and payload did), or why it was refused.
type BatchResult struct {
	Record  *RepeatRecord
	Created bool
	// Err refuses the item: ENOTFOUND (no such repeater, or one the caller
	// does not see), ECONFLICT (a deleted repeater, or the key used with
	// another payload: Record is then the existing record when it is
	// stored, nil when an earlier item of the batch has the key).
	Err error
}

// batchKey is an idempotency key's scope.
type batchKey struct {
	repeaterID int64
	key        string
}

// existingRecord is a stored record found by its key, with its payload.
type existingRecord struct {
	rec         RepeatRecord
	body        []byte
	contentType string
}

// RegisterBatch stores a record per item in one transaction, all or
// nothing: if any item is refused (its BatchResult.Err), nothing is written
// and every result says whether its item was refused. sees says whether the
// caller may write to a domain; a repeater it does not see is ENOTFOUND, as
// one that does not exist. Items whose idempotency key is already stored
// with the same payload return that record (Created false); a key twice in
// the batch with the same payload is one record. One NOTIFY per batch.
func (s *Store) RegisterBatch(ctx context.Context, items []BatchItem, sees func(domain string) bool) ([]BatchResult, error) {
	if len(items) == 0 {
		return nil, Errorf(EINVALID, "a batch needs at least one record")
	}
	return s.register(ctx, items, func(_ int, domain string) bool { return sees(domain) }, false)
}

// itemSees says whether the caller of items[i] may write to a domain.
type itemSees func(i int, domain string) bool

// register is RegisterBatch for items each of its own caller (sees). When
// independent, a refused item is skipped and the others are written.
// A pass that loses a key race sees the winner's record on the next (the
// violation is reported once the winner commits), so each keyed item can
// cost at most one more pass.
func (s *Store) register(ctx context.Context, items []BatchItem, sees itemSees, independent bool) ([]BatchResult, error) {
	keyed, _ := itemKeys(items)
	for range 1 + len(keyed) {
		res, err := s.registerBatch(ctx, items, sees, independent)
		if !errors.Is(err, errKeyRace) {
			return res, err
		}
	}
	return nil, fmt.Errorf("store: register batch: idempotency keys raced more often than the batch has keys")
}

// registerBatch is RegisterBatch in two round trips on one connection:
// BEGIN, the repeaters' locks and the stored keys go together; then the
// inserts and COMMIT. A key stored meanwhile by a concurrent request
// violates the key's unique index, which undoes the whole batch
// (errKeyRace: the caller retries and then finds that record).
func (s *Store) registerBatch(ctx context.Context, items []BatchItem, sees itemSees, independent bool) ([]BatchResult, error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Release()
	res := make([]BatchResult, len(items))
	created, err := registerOn(ctx, conn.Conn(), items, sees, independent, res)
	if err != nil {
		rollback(conn.Conn())
		if isKeyViolation(err) {
			return nil, errKeyRace
		}
		return nil, err
	}
	if created {
		s.wakeDispatcher()
	}
	return res, nil
}

// registerOn runs registerBatch's transaction on conn, filling res; it
// reports whether it stored anything. On an error the transaction may be
// left open (the caller rolls back).
func registerOn(ctx context.Context, conn *pgx.Conn, items []BatchItem, sees itemSees, independent bool, res []BatchResult) (bool, error) {
	var reps map[int64]batchRepeater
	existing := map[batchKey]existingRecord{}
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	// Plan these statements once per connection: planned afresh for each
	// execution (Postgres' default for statements over arrays) they cost
	// more than they take to run, for a single record most of all.
	b.Queue("SET LOCAL plan_cache_mode = force_generic_plan")
	b.Queue(sqlLockRepeaters, repeaterIDs(items)).Query(func(rows pgx.Rows) (err error) {
		reps, err = collectRepeaters(rows)
		return err
	})
	if keyed, keys := itemKeys(items); len(keys) > 0 {
		b.Queue(sqlRecordsByKeys, keyed, keys).Query(func(rows pgx.Rows) (err error) {
			existing, err = collectExisting(rows)
			return err
		})
	}
	if err := conn.SendBatch(ctx, b).Close(); err != nil {
		return false, err
	}
	fresh, alias, refused := resolveBatch(items, reps, existing, sees, res)
	if refused && !independent || len(fresh) == 0 {
		// A refused batch writes nothing; a replay needs no write.
		_, err := conn.Exec(ctx, "COMMIT")
		return false, err
	}
	b = &pgx.Batch{}
	queueInsert(b, items, reps, fresh, res)
	b.Queue("COMMIT")
	if err := conn.SendBatch(ctx, b).Close(); err != nil {
		return false, err
	}
	for i, j := range alias {
		res[i].Record = res[j].Record
	}
	return true, nil
}

// rollback ends a transaction left open by an error, if any; a connection
// it cannot clean is closed, and the pool then drops it.
func rollback(conn *pgx.Conn) {
	if conn.PgConn().TxStatus() == 'I' {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := conn.Exec(ctx, "ROLLBACK"); err != nil {
		conn.Close(ctx)
	}
}

// isKeyViolation reports whether err is a duplicate idempotency key.
func isKeyViolation(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23505" && pgErr.ConstraintName == "repeat_records_idempotency_idx"
}

// batchRepeater is what an item needs of its repeater.
type batchRepeater struct {
	domain      string
	maxAttempts int
	deleted     bool
}

// sqlLockRepeaters reads the items' repeaters FOR KEY SHARE, in id order so
// that concurrent batches cannot deadlock: a concurrent DeleteRepeater (FOR
// UPDATE) waits, then cancels these records too, while the engine's updates
// of the repeaters (FOR NO KEY UPDATE) need not wait for the batch.
const sqlLockRepeaters = `SELECT id, domain, max_attempts, is_deleted FROM repeaters
	WHERE id = ANY($1) ORDER BY id FOR KEY SHARE`

func repeaterIDs(items []BatchItem) []int64 {
	ids := make([]int64, 0, len(items))
	for _, it := range items {
		ids = append(ids, it.RepeaterID)
	}
	return ids
}

func collectRepeaters(rows pgx.Rows) (map[int64]batchRepeater, error) {
	out := map[int64]batchRepeater{}
	var id int64
	var r batchRepeater
	_, err := pgx.ForEachRow(rows, []any{&id, &r.domain, &r.maxAttempts, &r.deleted}, func() error {
		out[id] = r
		return nil
	})
	return out, err
}

// sqlRecordsByKeys returns the stored records of the items' idempotency
// keys, with their payloads. A key is looked up by its index whatever the
// table's statistics say: the LIMIT keeps the planner from turning the
// lookups into a hash join over the table, which it picks while the table
// looks empty (a new database, before its first ANALYZE) and then keeps
// with the connection's generic plan as the table grows.
var sqlRecordsByKeys = `SELECT ` + prefixed("r.", recordColumns) + `, p.body, p.content_type
	FROM unnest($1::bigint[], $2::text[]) AS k(repeater_id, key)
	CROSS JOIN LATERAL (SELECT * FROM repeat_records r
		WHERE r.repeater_id = k.repeater_id AND r.idempotency_key = k.key LIMIT 1) r
	JOIN payloads p ON p.id = r.payload_id`

// itemKeys returns the keyed items' repeaters and keys, pairwise.
func itemKeys(items []BatchItem) (reps []int64, keys []string) {
	for _, it := range items {
		if it.IdempotencyKey != "" {
			reps, keys = append(reps, it.RepeaterID), append(keys, it.IdempotencyKey)
		}
	}
	return reps, keys
}

func collectExisting(rows pgx.Rows) (map[batchKey]existingRecord, error) {
	out := map[batchKey]existingRecord{}
	var e existingRecord
	_, err := pgx.ForEachRow(rows, append(e.rec.scanTargets(), &e.body, &e.contentType), func() error {
		out[batchKey{e.rec.RepeaterID, *e.rec.IdempotencyKey}] = existingRecord{
			rec: e.rec, body: append([]byte(nil), e.body...), contentType: e.contentType,
		}
		return nil
	})
	return out, err
}

// resolveBatch decides each item against its repeater and its key, filling
// res for refusals and replays; it returns the items to insert (the first of
// each key), the later items of a key first seen in this batch (item → its
// first), and whether any item was refused.
func resolveBatch(items []BatchItem, reps map[int64]batchRepeater, existing map[batchKey]existingRecord,
	sees itemSees, res []BatchResult) (fresh []int, alias map[int]int, refused bool) {
	alias = map[int]int{}
	firstOfKey := map[batchKey]int{}
	for i, it := range items {
		rep, ok := reps[it.RepeaterID]
		ct := cmp.Or(it.ContentType, "application/json")
		k := batchKey{it.RepeaterID, it.IdempotencyKey}
		switch {
		case !ok || !sees(i, rep.domain):
			res[i].Err = Errorf(ENOTFOUND, "repeater %d not found", it.RepeaterID)
		case rep.deleted:
			res[i].Err = Errorf(ECONFLICT, "repeater %d is deleted", it.RepeaterID)
		case it.IdempotencyKey == "":
			fresh = append(fresh, i)
		default:
			if e, stored := existing[k]; stored {
				res[i].Record = &e.rec
				if !bytes.Equal(e.body, it.Body) || e.contentType != ct {
					res[i].Err = Errorf(ECONFLICT, "idempotency key %q was used for record %d with a different payload",
						it.IdempotencyKey, e.rec.ID)
				}
			} else if j, dup := firstOfKey[k]; dup {
				alias[i] = j
				if !bytes.Equal(items[j].Body, it.Body) || cmp.Or(items[j].ContentType, "application/json") != ct {
					res[i].Err = Errorf(ECONFLICT, "idempotency key %q is used by record %d of this batch with a different payload",
						it.IdempotencyKey, j)
				}
			} else {
				firstOfKey[k] = i
				fresh = append(fresh, i)
			}
		}
		refused = refused || res[i].Err != nil
	}
	return fresh, alias, refused
}

// sqlInsertBatch inserts a payload and a record per input row in one
// statement: payload ids are drawn first so that each record names its own.
// A key stored meanwhile by a concurrent request violates the key's unique
// index.
var sqlInsertBatch = `WITH input AS MATERIALIZED (
		SELECT t.*, nextval(pg_get_serial_sequence('payloads', 'id')) AS pid
		FROM unnest($1::int[], $2::text[], $3::bigint[], $4::text[], $5::bytea[], $6::int[], $7::text[])
			AS t(ord, domain, repeater_id, content_type, body, max_tries, key)
	), p AS (
		INSERT INTO payloads (id, domain, content_type, body)
		SELECT pid, domain, content_type, body FROM input ORDER BY ord
	), r AS (
		INSERT INTO repeat_records (domain, repeater_id, payload_id, max_possible_tries, idempotency_key)
		SELECT domain, repeater_id, pid, max_tries, key FROM input ORDER BY ord
		RETURNING ` + recordColumns + `
	)
	SELECT input.ord, ` + prefixed("r.", recordColumns) + ` FROM r JOIN input ON input.pid = r.payload_id`

// queueInsert queues sqlInsertBatch for the fresh items, filling their
// results as its rows arrive.
func queueInsert(b *pgx.Batch, items []BatchItem, reps map[int64]batchRepeater, fresh []int, res []BatchResult) {
	n := len(fresh)
	ords, tries := make([]int32, n), make([]int32, n)
	domains, cts, keys := make([]string, n), make([]string, n), make([]*string, n)
	repIDs, bodies := make([]int64, n), make([][]byte, n)
	for j, i := range fresh {
		it := items[i]
		rep := reps[it.RepeaterID]
		ords[j], domains[j], repIDs[j], tries[j] = int32(i), rep.domain, it.RepeaterID, int32(rep.maxAttempts)
		cts[j], bodies[j] = cmp.Or(it.ContentType, "application/json"), nonNil(it.Body)
		if it.IdempotencyKey != "" {
			keys[j] = &items[i].IdempotencyKey
		}
	}
	b.Queue(sqlInsertBatch, ords, domains, repIDs, cts, bodies, tries, keys).Query(func(rows pgx.Rows) error {
		var ord int32
		var rec RepeatRecord
		_, err := pgx.ForEachRow(rows, append([]any{&ord}, rec.scanTargets()...), func() error {
			r := rec
			res[ord].Record, res[ord].Created = &r, true
			return nil
		})
		return err
	})
}
