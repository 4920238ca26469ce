package storetest

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"repeaterd/store"
)

// RepeaterOpts shapes a repeater made by Repeater. Zero fields take the
// defaults noted; Edit, when set, changes anything else before it is saved.
type RepeaterOpts struct {
	// Domain defaults to "acme".
	Domain string
	// Name defaults to a name unique within the test binary.
	Name string
	// URL defaults to a loopback port nothing listens on.
	URL string
	// Edit changes the repeater before it is created.
	Edit func(*store.Repeater)
}

var repeaterSeq atomic.Int64

// Repeater creates a repeater in st, failing the test on error.
func Repeater(t testing.TB, st *store.Store, o RepeaterOpts) *store.Repeater {
	t.Helper()
	r := &store.Repeater{
		Domain: or(o.Domain, "acme"),
		Name:   or(o.Name, fmt.Sprintf("r%d", repeaterSeq.Add(1))),
		URL:    or(o.URL, "http://127.0.0.1:1/hook"),
	}
	if o.Edit != nil {
		o.Edit(r)
	}
	if err := st.CreateRepeater(context.Background(), r); err != nil {
		t.Fatalf("storetest: create repeater: %v", err)
	}
	return r
}

// Records registers n JSON records ({"n":i}) for r in one transaction and
// returns their ids in order.
func Records(t testing.TB, st *store.Store, r *store.Repeater, n int) []int64 {
	t.Helper()
	bodies := make([][]byte, n)
	for i := range bodies {
		bodies[i] = fmt.Appendf(nil, `{"n":%d}`, i)
	}
	ids, err := st.RegisterMany(context.Background(), r.ID, "application/json", bodies)
	if err != nil {
		t.Fatalf("storetest: register records: %v", err)
	}
	return ids
}

// Record registers one record for r with body (`{}` when nil).
func Record(t testing.TB, st *store.Store, r *store.Repeater, body []byte) *store.RepeatRecord {
	t.Helper()
	if body == nil {
		body = []byte(`{}`)
	}
	rec, created, err := st.RegisterRecord(context.Background(), store.RegisterParams{RepeaterID: r.ID, Body: body})
	if err != nil || !created {
		t.Fatalf("storetest: register record: %v (created=%v)", err, created)
	}
	return rec
}

// Count runs a counting query on st, failing the test on error.
func Count(t testing.TB, st *store.Store, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := st.Pool().QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatalf("storetest: %s: %v", sql, err)
	}
	return n
}

func or(v, def string) string {
	if v == "" {
		return def
	}
	return v
}
