package walstats

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pglogrepl"

	"repeaterd/store"
)

// decoder turns pgoutput messages into count changes, whole transactions
// at a time: a transaction joins the batch at its commit, unless it ends at
// or below the applied LSN (already counted before a restart). It does no
// I/O: the session feeds it and applies its batch.
type decoder struct {
	rels        map[uint32]*relation
	applied     pglogrepl.LSN
	inTx        bool
	tx          deltaSet // the open transaction
	batch       deltaSet // committed transactions not yet applied
	batchTxs    int
	batchEnd    pglogrepl.LSN
	commitTimes []time.Time
}

func newDecoder(applied pglogrepl.LSN) *decoder {
	return &decoder{rels: map[uint32]*relation{}, applied: applied, tx: newDeltaSet(), batch: newDeltaSet()}
}

// addWAL takes one pgoutput message as the stream carries it.
func (d *decoder) addWAL(data []byte) (committed bool, err error) {
	msg, err := parsePgoutput(data)
	if err != nil {
		return false, fmt.Errorf("stats: parse pgoutput message: %w", err)
	}
	return d.add(msg)
}

// parsePgoutput is pglogrepl.Parse, which indexes past the end of a short
// message: a malformed message ends the session with an error instead of
// crashing the process.
func parsePgoutput(data []byte) (msg pglogrepl.Message, err error) {
	if len(data) == 0 {
		return nil, errors.New("empty message")
	}
	defer func() {
		if r := recover(); r != nil {
			msg, err = nil, fmt.Errorf("malformed %q message: %v", data[0], r)
		}
	}()
	return pglogrepl.Parse(data)
}

// add takes one message; committed reports a transaction joined the batch.
func (d *decoder) add(msg pglogrepl.Message) (committed bool, err error) {
	switch m := msg.(type) {
	case *pglogrepl.RelationMessage:
		d.rels[m.RelationID], err = newRelation(m)
	case *pglogrepl.BeginMessage:
		d.inTx = true
		d.tx.clear()
	case *pglogrepl.InsertMessage:
		err = d.change(m.RelationID, nil, m.Tuple)
	case *pglogrepl.UpdateMessage:
		if err = needOld(m.OldTupleType, m.OldTuple); err == nil {
			err = d.change(m.RelationID, m.OldTuple, m.NewTuple)
		}
	case *pglogrepl.DeleteMessage:
		if err = needOld(m.OldTupleType, m.OldTuple); err == nil {
			err = d.change(m.RelationID, m.OldTuple, nil)
		}
	case *pglogrepl.TruncateMessage:
		d.truncate(m.RelationIDs)
	case *pglogrepl.CommitMessage:
		return d.commit(m), nil
	}
	return false, err
}

func needOld(kind uint8, old *pglogrepl.TupleData) error {
	if kind != pglogrepl.UpdateMessageTupleTypeOld || old == nil {
		return errors.New("stats: an update or delete came without the old row: " +
			"repeat_records needs REPLICA IDENTITY FULL (run `repeaterd migrate`)")
	}
	return nil
}

// change counts a row change: oldRow (nil for an insert) out, newRow (nil
// for a delete) in.
func (d *decoder) change(relID uint32, oldRow, newRow *pglogrepl.TupleData) error {
	rel, ok := d.rels[relID]
	if !ok {
		return fmt.Errorf("stats: change for relation %d before its description", relID)
	}
	if !rel.counted {
		return nil
	}
	d.tx.changes++
	var oldKey, newKey store.StatKey
	var err error
	if oldRow != nil {
		if oldKey, err = rel.key(oldRow, nil); err != nil {
			return err
		}
	}
	if newRow != nil {
		if newKey, err = rel.key(newRow, oldRow); err != nil {
			return err
		}
	}
	if oldRow != nil && newRow != nil && oldKey == newKey {
		return nil
	}
	if oldRow != nil {
		d.tx.counts[oldKey]--
	}
	if newRow != nil {
		d.tx.counts[newKey]++
	}
	return nil
}

// truncate empties the counts at this point of the transaction: a TRUNCATE
// leaves no record, so zero is the exact recount, where counting the table
// now would include transactions after it that are yet to be streamed.
func (d *decoder) truncate(relIDs []uint32) {
	for _, id := range relIDs {
		if rel, ok := d.rels[id]; !ok || rel.counted {
			d.tx.changes++
			d.tx.reset()
			return
		}
	}
}

func (d *decoder) commit(m *pglogrepl.CommitMessage) bool {
	d.inTx = false
	if m.TransactionEndLSN <= d.applied {
		return false
	}
	d.batch.merge(&d.tx)
	d.batchTxs++
	d.batchEnd = m.TransactionEndLSN
	d.commitTimes = append(d.commitTimes, m.CommitTime)
	return true
}

// empty reports that no committed transaction waits to be applied.
func (d *decoder) empty() bool { return d.batchTxs == 0 }

// params is the batch as one ApplyStatsDeltas call.
func (d *decoder) params(slot string) store.ApplyStatsParams {
	p := store.ApplyStatsParams{Slot: slot, EndLSN: d.batchEnd, Truncated: d.batch.truncated}
	for k, n := range d.batch.counts {
		if n != 0 {
			p.Deltas = append(p.Deltas, store.StatCount{StatKey: k, Count: n})
		}
	}
	store.SortStatCounts(p.Deltas)
	return p
}

// reset empties the batch once it is applied up to end.
func (d *decoder) reset(end pglogrepl.LSN) {
	d.applied = end
	d.batch.clear()
	d.batchTxs = 0
	d.commitTimes = d.commitTimes[:0]
}

// deltaSet is summed count changes, after a truncate when truncated is set.
type deltaSet struct {
	counts    map[store.StatKey]int64
	truncated bool
	changes   int // row changes seen, for throughput
}

func newDeltaSet() deltaSet { return deltaSet{counts: map[store.StatKey]int64{}} }

func (s *deltaSet) clear() {
	clear(s.counts)
	s.truncated = false
	s.changes = 0
}

// reset drops the counted changes: what follows applies to zeroed counts.
func (s *deltaSet) reset() {
	clear(s.counts)
	s.truncated = true
}

func (s *deltaSet) merge(o *deltaSet) {
	if o.truncated {
		s.reset()
	}
	for k, n := range o.counts {
		s.counts[k] += n
	}
	s.changes += o.changes
}

// relation locates the counted columns in a relation's rows.
type relation struct {
	counted                 bool // it is repeat_records
	domain, repeater, state int  // column positions
}

func newRelation(m *pglogrepl.RelationMessage) (*relation, error) {
	r := &relation{counted: m.RelationName == "repeat_records", domain: -1, repeater: -1, state: -1}
	for i, col := range m.Columns {
		switch col.Name {
		case "domain":
			r.domain = i
		case "repeater_id":
			r.repeater = i
		case "state":
			r.state = i
		}
	}
	if r.counted && (r.domain < 0 || r.repeater < 0 || r.state < 0) {
		return nil, errors.New("stats: repeat_records lacks domain, repeater_id or state")
	}
	return r, nil
}

// key reads a row's counter; unchanged TOASTed values come from fallback.
func (r *relation) key(t, fallback *pglogrepl.TupleData) (store.StatKey, error) {
	domain, err := column(t, fallback, r.domain)
	if err != nil {
		return store.StatKey{}, err
	}
	repeater, err := column(t, fallback, r.repeater)
	if err != nil {
		return store.StatKey{}, err
	}
	state, err := column(t, fallback, r.state)
	if err != nil {
		return store.StatKey{}, err
	}
	id, err := strconv.ParseInt(string(repeater), 10, 64)
	if err != nil {
		return store.StatKey{}, fmt.Errorf("stats: repeater_id %q: %w", repeater, err)
	}
	st, err := strconv.ParseInt(string(state), 10, 16)
	if err != nil {
		return store.StatKey{}, fmt.Errorf("stats: state %q: %w", state, err)
	}
	return store.StatKey{Domain: string(domain), RepeaterID: id, State: store.State(st)}, nil
}

func column(t, fallback *pglogrepl.TupleData, i int) ([]byte, error) {
	if i >= len(t.Columns) {
		return nil, fmt.Errorf("stats: row has %d columns, want more than %d", len(t.Columns), i)
	}
	col := t.Columns[i]
	if col.DataType == pglogrepl.TupleDataTypeToast && fallback != nil && i < len(fallback.Columns) {
		col = fallback.Columns[i]
	}
	if col.DataType != pglogrepl.TupleDataTypeText {
		return nil, fmt.Errorf("stats: column %d is %q, want a text value", i, col.DataType)
	}
	return col.Data, nil
}
