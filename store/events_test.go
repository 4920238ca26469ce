package store_test

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"repeaterd/store"
	"repeaterd/store/storetest"
)

// TestEventsReachExactlyTheMatchingRepeaters: 10 repeaters with different
// subscriptions, 1,000 events of 5 types; each repeater gets exactly the
// records its subscription and filter select.
func TestEventsReachExactlyTheMatchingRepeaters(t *testing.T) {
	st := storetest.NewStore(t)
	ctx := context.Background()
	types := []string{"case.created", "case.updated", "case.closed", "form.submitted", "user.changed"}
	subs := []struct {
		types  []string
		filter string
	}{
		{nil, ""},
		{[]string{"case.created"}, ""},
		{[]string{"case.updated", "case.closed"}, ""},
		{[]string{"form.submitted"}, `priority == 1`},
		{nil, `region in ["north", "east"]`},
		{[]string{"user.changed"}, `owner.id != null`},
		{[]string{"case.created", "case.updated"}, `region == "south" and priority != 3`},
		{[]string{"nothing.matches"}, ""},
		{nil, `owner.id == 7`},
		{types, `missing.field != "x"`},
	}
	reps := make([]*store.Repeater, len(subs))
	for i, s := range subs {
		reps[i] = storetest.Repeater(t, st, storetest.RepeaterOpts{Domain: "events", Edit: func(r *store.Repeater) {
			r.EventTypes, r.EventFilter = store.TextArray(s.types), s.filter
		}})
	}
	regions := []string{"north", "south", "east", "west"}
	want := make([]int, len(reps))
	for i := range 1000 {
		typ := types[i%5]
		owner := "null"
		if i%3 != 0 {
			owner = fmt.Sprint(i % 11)
		}
		region, priority := regions[i%4], i%4
		body := fmt.Sprintf(`{"region":%q,"priority":%d,"owner":{"id":%s},"n":%d}`, region, priority, owner, i)
		recs, created, err := st.PublishEvent(ctx, store.EventParams{Domain: "events", Type: typ, Body: []byte(body)})
		if err != nil || !created {
			t.Fatalf("event %d: %v (created %v)", i, err, created)
		}
		got := map[int64]bool{}
		for _, rec := range recs {
			got[rec.RepeaterID] = true
		}
		for j, s := range subs {
			match := (len(s.types) == 0 || slices.Contains(s.types, typ)) && expectMatch(j, region, priority, owner)
			if match {
				want[j]++
			}
			if got[reps[j].ID] != match {
				t.Fatalf("event %d (%s %s): repeater %d (%v %q) got a record: %v, want %v", i, typ, body, j, s.types, s.filter, got[reps[j].ID], match)
			}
		}
	}
	for j, r := range reps {
		if n := storetest.Count(t, st, `SELECT count(*) FROM repeat_records WHERE repeater_id = $1`, r.ID); n != want[j] {
			t.Errorf("repeater %d: %d records, want %d", j, n, want[j])
		}
	}
	if want[7] != 0 || want[0] != 1000 {
		t.Fatalf("fixture: %v", want)
	}
}

// expectMatch is the filters of the table above, in Go.
func expectMatch(j int, region string, priority int, owner string) bool {
	switch j {
	case 3:
		return priority == 1
	case 4:
		return region == "north" || region == "east"
	case 5:
		return owner != "null"
	case 6:
		return region == "south" && priority != 3
	case 8:
		return owner == "7"
	}
	return true
}

func TestEventIdempotencyKey(t *testing.T) {
	st := storetest.NewStore(t)
	ctx := context.Background()
	storetest.Repeater(t, st, storetest.RepeaterOpts{Domain: "idem"})
	storetest.Repeater(t, st, storetest.RepeaterOpts{Domain: "idem"})
	p := store.EventParams{Domain: "idem", Type: "case.updated", Body: []byte(`{"a":1}`), IdempotencyKey: "k1"}
	first, created, err := st.PublishEvent(ctx, p)
	if err != nil || !created || len(first) != 2 {
		t.Fatalf("first: %d records, created %v, %v", len(first), created, err)
	}
	again, created, err := st.PublishEvent(ctx, p)
	if err != nil || created || len(again) != 2 || again[0].ID != first[0].ID {
		t.Fatalf("again: %v created %v %v; want the first event's records", again, created, err)
	}
	for _, change := range []func(*store.EventParams){
		func(p *store.EventParams) { p.Body = []byte(`{"a":2}`) },
		func(p *store.EventParams) { p.Type = "case.closed" },
	} {
		q := p
		change(&q)
		if _, _, err := st.PublishEvent(ctx, q); store.ErrorCode(err) != store.ECONFLICT {
			t.Fatalf("key reused with another event: %v, want ECONFLICT", err)
		}
	}
	if n := storetest.Count(t, st, `SELECT count(*) FROM payloads WHERE domain = 'idem'`); n != 1 {
		t.Fatalf("%d payloads, want 1", n)
	}
	// The same key in another domain is another event.
	storetest.Repeater(t, st, storetest.RepeaterOpts{Domain: "other"})
	q := p
	q.Domain = "other"
	if _, created, err := st.PublishEvent(ctx, q); err != nil || !created {
		t.Fatalf("another domain: created %v, %v", created, err)
	}
}

func TestParseFilter(t *testing.T) {
	doc := []byte(`{"case":{"type":"patient","n":2},"status":"open","score":1.0,"tags":["a"],"flag":true,"none":null}`)
	tests := []struct {
		filter string
		match  bool
	}{
		{``, true},
		{`case.type == "patient"`, true},
		{`case.type=="patient"`, true},
		{`case.type != "patient"`, false},
		{`case.n == 2`, true},
		{`case.n == 2.0`, true},
		{`case.n == "2"`, false},
		{`score == 1`, true},
		{`status in ["open", "pending"]`, true},
		{`status in ["closed"]`, false},
		{`flag == true and none == null`, true},
		{`missing == null`, false},
		{`missing != null`, true},
		{`tags == "a"`, false},
		{`case == "x"`, false},
		{`case.type.deeper == "x"`, false},
		{`status == "open" and case.type == "doctor"`, false},
		{`case_id-x == 1`, false},
	}
	for _, tt := range tests {
		f, err := store.ParseFilter(tt.filter)
		if err != nil {
			t.Errorf("ParseFilter(%q): %v", tt.filter, err)
			continue
		}
		if got := f.Match(doc); got != tt.match {
			t.Errorf("%q on the doc: %v, want %v", tt.filter, got, tt.match)
		}
	}
	if f, _ := store.ParseFilter(`status == "open"`); f.Match([]byte(`not json`)) || f.Match([]byte(`[1]`)) {
		t.Error("a filter matched a payload that is not a JSON object")
	}
	for _, bad := range []string{
		`status`, `status ==`, `status = "open"`, `== "open"`, `status == open`, `status == "open" or x == 1`,
		`status == "open" and`, `status in "open"`, `status in ["a",]`, `status in ["a"`, `status == {"a":1}`,
		`1abc == 1`, `a..b == 1`, `status == "open" status == "x"`, `status == "unterminated`, `a == 1x`,
	} {
		if _, err := store.ParseFilter(bad); store.ErrorCode(err) != store.EINVALID {
			t.Errorf("ParseFilter(%q) = %v, want EINVALID", bad, err)
		}
	}
}

func FuzzParseFilter(f *testing.F) {
	for _, s := range []string{`a == 1`, `a.b in ["x", 2, null] and c != true`, `x == "\u00e9"`} {
		f.Add(s, `{"a":1,"a":{"b":"x"}}`)
	}
	f.Fuzz(func(t *testing.T, filter, doc string) {
		p, err := store.ParseFilter(filter)
		if err != nil {
			return
		}
		p.Match([]byte(doc)) // must not panic
	})
}

func TestRepeaterSubscriptionValidated(t *testing.T) {
	st := storetest.NewStore(t)
	for _, edit := range []func(*store.Repeater){
		func(r *store.Repeater) { r.EventFilter = `status ==` },
		func(r *store.Repeater) { r.EventTypes = store.TextArray{"has space"} },
		func(r *store.Repeater) { r.EventTypes = store.TextArray{`quo"te`} },
	} {
		r := &store.Repeater{Domain: "v", URL: "http://127.0.0.1:1/"}
		edit(r)
		if err := st.CreateRepeater(context.Background(), r); store.ErrorCode(err) != store.EINVALID {
			t.Errorf("%+v: %v, want EINVALID", r.EventTypes, err)
		}
	}
	if n := storetest.Count(t, st, `SELECT count(*) FROM repeaters`); n != 0 {
		t.Fatalf("%d repeaters written", n)
	}
}
