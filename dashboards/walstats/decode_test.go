package walstats

import (
	"encoding/binary"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"

	"repeaterd/store"
)

// Decoder: pgoutput messages in, summed count changes out, whole
// transactions at a time. Relation 1 is repeat_records, 2 another table.

func walText(v string) *pglogrepl.TupleDataColumn {
	return &pglogrepl.TupleDataColumn{DataType: pglogrepl.TupleDataTypeText, Length: uint32(len(v)), Data: []byte(v)}
}

// walRow is a repeat_records row as pgoutput sends it (id, domain, repeater_id,
// payload_id, state).
func walRow(domain string, repeater int, state store.State) *pglogrepl.TupleData {
	return walRowText(domain, strconv.Itoa(repeater), state)
}

func walRowText(domain, repeater string, state store.State) *pglogrepl.TupleData {
	return &pglogrepl.TupleData{ColumnNum: 5, Columns: []*pglogrepl.TupleDataColumn{
		walText("1"), walText(domain), walText(repeater), walText("9"), walText(strconv.Itoa(int(state)))}}
}

func walRelation(id uint32, name string, columns ...string) *pglogrepl.RelationMessage {
	if columns == nil {
		columns = []string{"id", "domain", "repeater_id", "payload_id", "state"}
	}
	m := &pglogrepl.RelationMessage{RelationID: id, Namespace: "public", RelationName: name}
	for _, c := range columns {
		m.Columns = append(m.Columns, &pglogrepl.RelationMessageColumn{Name: c})
	}
	m.ColumnNum = uint16(len(m.Columns))
	return m
}

func walInsert(t *pglogrepl.TupleData) *pglogrepl.InsertMessage {
	return &pglogrepl.InsertMessage{RelationID: 1, Tuple: t}
}

func walUpdate(old, new *pglogrepl.TupleData) *pglogrepl.UpdateMessage {
	return &pglogrepl.UpdateMessage{RelationID: 1, OldTupleType: pglogrepl.UpdateMessageTupleTypeOld, OldTuple: old, NewTuple: new}
}

func walDelete(old *pglogrepl.TupleData) *pglogrepl.DeleteMessage {
	return &pglogrepl.DeleteMessage{RelationID: 1, OldTupleType: pglogrepl.DeleteMessageTupleTypeOld, OldTuple: old}
}

func walTruncate(relIDs ...uint32) *pglogrepl.TruncateMessage {
	return &pglogrepl.TruncateMessage{RelationNum: uint32(len(relIDs)), RelationIDs: relIDs}
}

func walCommit(end pglogrepl.LSN) *pglogrepl.CommitMessage {
	return &pglogrepl.CommitMessage{CommitLSN: end - 8, TransactionEndLSN: end, CommitTime: time.Now()}
}

// walTx is one WAL transaction: Begin, msgs, Commit ending at end.
type walTx struct {
	end  pglogrepl.LSN
	msgs []pglogrepl.Message
}

func tx(end pglogrepl.LSN, msgs ...pglogrepl.Message) walTx { return walTx{end: end, msgs: msgs} }

// feed runs one transaction through d and reports whether it joined the batch.
func (w walTx) feed(t *testing.T, d *decoder) bool {
	t.Helper()
	if _, err := d.add(&pglogrepl.BeginMessage{FinalLSN: w.end - 8}); err != nil {
		t.Fatal(err)
	}
	if !d.inTx {
		t.Fatal("not in a transaction after Begin")
	}
	for _, m := range w.msgs {
		if _, err := d.add(m); err != nil {
			t.Fatal(err)
		}
	}
	committed, err := d.add(walCommit(w.end))
	if err != nil {
		t.Fatal(err)
	}
	if d.inTx {
		t.Fatal("still in a transaction after Commit")
	}
	return committed
}

func statDelta(domain string, repeater int64, state store.State, n int64) store.StatCount {
	return store.StatCount{StatKey: store.StatKey{Domain: domain, RepeaterID: repeater, State: state}, Count: n}
}

func TestDecoderBatches(t *testing.T) {
	pending, success := walRow("a", 7, store.StatePending), walRow("a", 7, store.StateSuccess)
	toasted := walRow("a", 7, store.StateFail)
	toasted.Columns[1] = &pglogrepl.TupleDataColumn{DataType: pglogrepl.TupleDataTypeToast}
	otherTable := &pglogrepl.InsertMessage{RelationID: 2, Tuple: pending}
	tests := []struct {
		name      string
		applied   pglogrepl.LSN
		txs       []walTx
		joined    []bool // per transaction
		end       pglogrepl.LSN
		truncated bool
		deltas    []store.StatCount
		changes   int
	}{
		{
			name:    "transactions at or below the applied LSN are skipped",
			applied: 1000,
			txs:     []walTx{tx(900, walInsert(pending)), tx(1000, walInsert(pending))},
			joined:  []bool{false, false},
		},
		{
			name:    "insert, update, delete, TOAST and other tables",
			applied: 1000,
			txs: []walTx{
				tx(900, walInsert(pending)),
				tx(1000, walInsert(pending)),
				tx(1100,
					walInsert(pending), walInsert(pending), walInsert(walRow("b", 8, store.StatePending)),
					walUpdate(pending, success), // moves one
					walUpdate(success, success), // no state change: no count change
					walUpdate(pending, toasted), // domain unchanged (TOAST): taken from the old row
					walDelete(success),          // purge
					otherTable,                  // not repeat_records
				),
				tx(1200, walInsert(pending)),
			},
			joined: []bool{false, false, true, true},
			end:    1200,
			deltas: []store.StatCount{statDelta("a", 7, store.StatePending, 1), statDelta("a", 7, store.StateFail, 1),
				statDelta("b", 8, store.StatePending, 1)},
			changes: 8,
		},
		{
			name:    "changes that cancel out leave no delta",
			txs:     []walTx{tx(100, walInsert(pending), walUpdate(pending, success), walDelete(success))},
			joined:  []bool{true},
			end:     100,
			changes: 3,
		},
		{
			name:   "an empty transaction moves the end only",
			txs:    []walTx{tx(100), tx(200, otherTable)},
			joined: []bool{true, true},
			end:    200,
		},
		{
			name: "a truncate drops what came before it, in the batch and the transaction",
			txs: []walTx{
				tx(1200, walInsert(pending), walInsert(walRow("b", 8, store.StatePending))),
				tx(1300, walInsert(pending), walTruncate(1), walInsert(success)),
				tx(1400, walInsert(success)),
			},
			joined:    []bool{true, true, true},
			end:       1400,
			truncated: true,
			deltas:    []store.StatCount{statDelta("a", 7, store.StateSuccess, 2)},
			changes:   2 + 3 + 1,
		},
		{
			name:    "a truncate of other tables only counts nothing",
			txs:     []walTx{tx(100, walInsert(pending), walTruncate(2))},
			joined:  []bool{true},
			end:     100,
			deltas:  []store.StatCount{statDelta("a", 7, store.StatePending, 1)},
			changes: 1,
		},
		{
			name:      "a truncate naming an undescribed table is taken as one of repeat_records",
			txs:       []walTx{tx(100, walInsert(pending), walTruncate(2, 9))},
			joined:    []bool{true},
			end:       100,
			truncated: true,
			changes:   2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newDecoder(tt.applied)
			for _, m := range []pglogrepl.Message{walRelation(1, "repeat_records"), walRelation(2, "other")} {
				if _, err := d.add(m); err != nil {
					t.Fatal(err)
				}
			}
			var joined []bool
			for _, w := range tt.txs {
				joined = append(joined, w.feed(t, d))
			}
			if !slices.Equal(joined, tt.joined) {
				t.Fatalf("joined the batch: %v, want %v", joined, tt.joined)
			}
			p := d.params("s")
			txs := 0
			for _, j := range joined {
				if j {
					txs++
				}
			}
			if p.Slot != "s" || p.EndLSN != tt.end || p.Truncated != tt.truncated || !slices.Equal(p.Deltas, tt.deltas) ||
				d.batch.changes != tt.changes || d.batchTxs != txs || len(d.commitTimes) != txs || d.empty() != (txs == 0) {
				t.Fatalf("params = %+v (changes %d, txs %d), want end %s, truncated %v, deltas %v, changes %d, txs %d",
					p, d.batch.changes, d.batchTxs, tt.end, tt.truncated, tt.deltas, tt.changes, txs)
			}
			if txs == 0 {
				return
			}
			d.reset(p.EndLSN)
			if d.applied != tt.end || !d.empty() || len(d.params("s").Deltas) != 0 || d.params("s").Truncated ||
				d.batch.changes != 0 || len(d.commitTimes) != 0 {
				t.Fatalf("reset left %+v", d)
			}
			if tx(tt.end, walInsert(pending)).feed(t, d) {
				t.Fatal("after reset, a transaction ending at the applied LSN joined the batch")
			}
		})
	}
}

func TestDecoderErrors(t *testing.T) {
	nullState := walRow("a", 1, store.StatePending)
	nullState.Columns[4] = &pglogrepl.TupleDataColumn{DataType: pglogrepl.TupleDataTypeNull}
	short := &pglogrepl.TupleData{ColumnNum: 2, Columns: walRow("a", 1, store.StatePending).Columns[:2]}
	tests := []struct {
		name string
		msg  pglogrepl.Message
		want string
	}{
		{"update without the old row", &pglogrepl.UpdateMessage{RelationID: 1, NewTuple: walRow("a", 1, store.StateSuccess)},
			"REPLICA IDENTITY FULL"},
		{"delete with only the key", &pglogrepl.DeleteMessage{RelationID: 1, OldTupleType: pglogrepl.DeleteMessageTupleTypeKey,
			OldTuple: walRow("a", 1, store.StatePending)}, "REPLICA IDENTITY FULL"},
		{"change for an undescribed relation", &pglogrepl.InsertMessage{RelationID: 3, Tuple: walRow("a", 1, store.StatePending)},
			"before its description"},
		{"repeat_records without the counted columns", walRelation(4, "repeat_records", "id", "domain"),
			"lacks domain, repeater_id or state"},
		{"a row shorter than its relation", walInsert(short), "row has 2 columns"},
		{"a state that is not a text value", walInsert(nullState), "want a text value"},
		{"a repeater_id that is not a number", walInsert(walRowText("a", "x", store.StatePending)), "repeater_id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newDecoder(0)
			for _, m := range []pglogrepl.Message{walRelation(1, "repeat_records"), &pglogrepl.BeginMessage{}} {
				if _, err := d.add(m); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := d.add(tt.msg); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("%T: err = %v, want one mentioning %q", tt.msg, err, tt.want)
			}
			if _, err := d.add(walInsert(walRow("a", 1, store.StatePending))); err != nil {
				t.Fatalf("a valid change after the error: %v", err)
			}
		})
	}
}

// pgoutput encodings of Begin and Commit, as the stream carries them.
func encodedBegin(final pglogrepl.LSN) []byte {
	b := []byte{'B'}
	b = binary.BigEndian.AppendUint64(b, uint64(final))
	b = binary.BigEndian.AppendUint64(b, 0) // commit time
	return binary.BigEndian.AppendUint32(b, 42)
}

func encodedCommit(end pglogrepl.LSN) []byte {
	b := []byte{'C', 0}
	b = binary.BigEndian.AppendUint64(b, uint64(end-8))
	b = binary.BigEndian.AppendUint64(b, uint64(end))
	return binary.BigEndian.AppendUint64(b, 0)
}

func TestDecoderAddWAL(t *testing.T) {
	d := newDecoder(100)
	for _, tt := range []struct {
		name      string
		data      []byte
		committed bool
		wantErr   string
	}{
		{"begin", encodedBegin(192), false, ""},
		{"commit above the applied LSN", encodedCommit(200), true, ""},
		{"not pgoutput", []byte("?"), false, "parse pgoutput message"},
	} {
		committed, err := d.addWAL(tt.data)
		if committed != tt.committed || (err == nil) != (tt.wantErr == "") ||
			(err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
			t.Fatalf("%s: addWAL = %v, %v; want %v, error %q", tt.name, committed, err, tt.committed, tt.wantErr)
		}
	}
	if d.params("s").EndLSN != 200 || d.batchTxs != 1 {
		t.Fatalf("after an encoded transaction: params %+v, txs %d", d.params("s"), d.batchTxs)
	}
}

// FuzzDecoderAddWAL: whatever the stream carries, the decoder returns an
// error rather than panicking.
func FuzzDecoderAddWAL(f *testing.F) {
	f.Add(encodedBegin(192))
	f.Add(encodedCommit(200))
	f.Add([]byte("?"))
	f.Add([]byte{'I', 0, 0, 0, 1, 'N', 0, 1, 't', 0, 0, 0, 1, '1'})
	f.Fuzz(func(t *testing.T, data []byte) {
		d := newDecoder(0)
		if _, err := d.add(walRelation(1, "repeat_records")); err != nil {
			t.Fatal(err)
		}
		_, _ = d.addWAL(data)
	})
}
