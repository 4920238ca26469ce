package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"repeaterd/store"
	"repeaterd/store/storetest"
)

// mustJSON runs a command with -o json and decodes its output into v.
func (e *opsEnv) mustJSON(v any, args ...string) {
	e.t.Helper()
	out := e.mustRun(append(args, "-o", "json")...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		e.t.Fatalf("repeaterd %s -o json: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// mustFail runs a command that must fail, and returns its error text.
func (e *opsEnv) mustFail(args ...string) string {
	e.t.Helper()
	out, err := e.run(args...)
	if err == nil {
		e.t.Fatalf("repeaterd %s succeeded:\n%s", strings.Join(args, " "), out)
	}
	return err.Error()
}

func TestCLIRepeaterLifecycle(t *testing.T) {
	e := newOpsEnv(t)
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte("whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQ=\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var created repeaterView
	e.mustJSON(&created, "repeaters", "create", "--domain", "acme", "--name", "orders", "--url", "https://example.com/hook",
		"--header", "X-Tenant=acme", "--max-workers", "3", "--timeout", "5s", "--signing-secret-file", secret)
	if created.ID == 0 || created.Name != "orders" || created.MaxWorkers != 3 || created.TimeoutMS != 5000 ||
		!created.Signed || created.Headers["X-Tenant"] != "[redacted]" || created.Status != "active" {
		t.Fatalf("created %+v", created)
	}
	id := fmt.Sprint(created.ID)
	show := e.mustRun("repeaters", "show", id, "-o", "json")
	var shown repeaterView
	if err := json.Unmarshal([]byte(show), &shown); err != nil || shown.Headers["X-Tenant"] != "[redacted]" ||
		strings.Contains(show, "c2VjcmV0") || strings.Contains(show, "whsec") {
		t.Fatalf("show printed the signing secret or a header value (%v):\n%s", err, show)
	}
	if stored, _ := e.st.GetRepeater(t.Context(), created.ID); stored.Headers["X-Tenant"] != "acme" {
		t.Fatalf("the header was not stored as given: %v", stored.Headers)
	}
	if table := e.mustRun("repeaters", "show", id); !tableRow("max_workers", "3").MatchString(table) || !tableRow("signed", "true").MatchString(table) {
		t.Errorf("show table:\n%s", table)
	}

	var updated repeaterView
	e.mustJSON(&updated, "repeaters", "update", id, "--max-workers", "5")
	if updated.MaxWorkers != 5 || updated.Name != "orders" || updated.TimeoutMS != 5000 || !updated.Signed {
		t.Fatalf("update changed more than --max-workers: %+v", updated)
	}

	if err := e.st.SetBackoff(t.Context(), created.ID, time.Now().Add(24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if out := e.mustRun("repeaters", "list"); !tableRow(id, "acme", "orders", "https://example.com/hook", "backoff").MatchString(out) {
		t.Errorf("a backed-off repeater is not listed as such:\n%s", out)
	}
	e.mustRun("repeaters", "retry", id)
	if r, _ := e.st.GetRepeater(t.Context(), created.ID); r.NextAttemptAt != nil || r.BackoffCount != 0 {
		t.Fatalf("retry left the backoff: next %v, count %d", r.NextAttemptAt, r.BackoffCount)
	}
	e.mustRun("repeaters", "delete", id)
	if r, _ := e.st.GetRepeater(t.Context(), created.ID); !r.IsDeleted {
		t.Fatal("delete did not delete")
	}
	for _, args := range [][]string{{"repeaters", "retry", id}, {"repeaters", "show", "999999"}, {"repeaters", "delete", id}} {
		e.mustFail(args...)
	}
}

func TestCLIRefusesBadRepeatersAndWritesNothing(t *testing.T) {
	e := newOpsEnv(t)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--domain", "acme", "--url", "http://127.0.0.1:9/x"}, "loopback"},
		{[]string{"--domain", "acme", "--url", "https://example.com/", "--header", "webhook-signature=forged"}, "set by repeaterd"},
		{[]string{"--domain", "acme", "--url", "https://example.com/", "--header", "no-equals"}, "Name=value"},
		{[]string{"--domain", "acme", "--url", "https://example.com/", "--max-workers", "-1"}, "max_workers"},
		{[]string{"--domain", "acme", "--url", "https://example.com/", "--method", "DELETE"}, "method"},
		{[]string{"--url", "https://example.com/"}, "domain"},
	} {
		if msg := e.mustFail(append([]string{"repeaters", "create"}, c.args...)...); !strings.Contains(msg, c.want) {
			t.Errorf("create %v: %q, want it to mention %q", c.args, msg, c.want)
		}
	}
	if n := storetest.Count(t, e.st, `SELECT count(*) FROM repeaters`); n != 0 {
		t.Fatalf("refused creates wrote %d repeaters", n)
	}
	// With private targets allowed (flag or environment) a loopback URL is fine.
	t.Setenv("REPEATERD_ALLOW_PRIVATE_TARGETS", "true")
	e.mustRun("repeaters", "create", "--domain", "acme", "--url", "http://127.0.0.1:9/x")
}

func TestCLIRecords(t *testing.T) {
	e := newOpsEnv(t)
	r := e.repeater("acme", "https://example.com/a")
	ids := storetest.Records(t, e.st, r, 150)
	if _, err := e.st.RecordOutcomes(t.Context(), []store.Outcome{{RecordID: ids[0], State: store.StateFail, StatusCode: 503, Message: "busy"}}, nil); err != nil {
		t.Fatal(err)
	}
	var listed []recordView
	e.mustJSON(&listed, "records", "list", "--repeater", fmt.Sprint(r.ID), "--state", "fail")
	if len(listed) != 1 || listed[0].ID != ids[0] || listed[0].State != "fail" {
		t.Fatalf("records list --state fail: %+v", listed)
	}
	var shown recordView
	e.mustJSON(&shown, "records", "show", fmt.Sprint(ids[0]))
	if len(shown.Attempts) != 1 || shown.Attempts[0].StatusCode != 503 || shown.AttemptCount != 1 {
		t.Fatalf("records show: %+v", shown)
	}
	if table := e.mustRun("records", "show", fmt.Sprint(ids[0])); !strings.Contains(table, "busy") {
		t.Errorf("records show table lacks the attempt:\n%s", table)
	}

	// Bulk by filter: over 100 records need --yes, and without it nothing changes.
	if msg := e.mustFail("records", "cancel", "--repeater", fmt.Sprint(r.ID), "--state", "pending"); !strings.Contains(msg, "--yes") {
		t.Errorf("bulk cancel without --yes: %q", msg)
	}
	if n := storetest.Count(t, e.st, `SELECT count(*) FROM repeat_records WHERE state = 8`); n != 0 {
		t.Fatalf("a refused bulk cancel cancelled %d records", n)
	}
	out := e.mustRun("records", "cancel", "--repeater", fmt.Sprint(r.ID), "--state", "pending", "--yes")
	if !strings.Contains(out, "cancel: 149 done") {
		t.Errorf("bulk cancel summary:\n%s", out[max(0, len(out)-200):])
	}
	if n := storetest.Count(t, e.st, `SELECT count(*) FROM repeat_records WHERE state = 8`); n != 149 {
		t.Fatalf("bulk cancel cancelled %d records, want 149", n)
	}
	// By ids, with one refused: the others are done, and the command fails.
	msg := e.mustFail("records", "requeue", fmt.Sprint(ids[1]), "999999", fmt.Sprint(ids[2]))
	if !strings.Contains(msg, "1 record was refused") {
		t.Errorf("requeue with an unknown id: %q", msg)
	}
	if n := storetest.Count(t, e.st, `SELECT count(*) FROM repeat_records WHERE id = ANY($1) AND state = 2`, []int64{ids[1], ids[2]}); n != 2 {
		t.Errorf("requeue by ids made %d of 2 records ready again", n)
	}
	e.mustFail("records", "requeue", fmt.Sprint(ids[1]), "--repeater", fmt.Sprint(r.ID)) // ids and a filter
	e.mustFail("records", "list", "--state", "nope")
	e.mustFail("records", "list", "--limit", "0")
}

func TestCLIEventsAndStats(t *testing.T) {
	e := newOpsEnv(t)
	e.repeater("acme", "https://example.com/a")
	e.repeater("acme", "https://example.com/b")
	var sent []recordView
	e.mustJSON(&sent, "events", "send", "acme", "--payload", `{"event":"created"}`)
	if len(sent) != 2 || sent[0].State != "pending" {
		t.Fatalf("events send: %+v", sent)
	}
	before := storetest.Count(t, e.st, `SELECT count(*) FROM repeat_records`)
	for _, args := range [][]string{
		{"events", "send", "acme", "--payload", "{not json"},
		{"events", "send", "acme"},
		{"events", "send", "nobody", "--payload", "{}"},
		{"events", "send", "acme", "--payload", "{}", "--file", "x"},
	} {
		e.mustFail(args...)
	}
	if after := storetest.Count(t, e.st, `SELECT count(*) FROM repeat_records`); after != before {
		t.Fatalf("refused events wrote %d records", after-before)
	}
	var stats struct {
		Live   bool `json:"live"`
		Counts []struct {
			Domain string `json:"domain"`
			State  string `json:"state"`
			Count  int64  `json:"count"`
		} `json:"counts"`
	}
	e.mustJSON(&stats, "stats", "--domain", "acme")
	total := int64(0)
	for _, c := range stats.Counts {
		if c.Domain != "acme" || c.State != "pending" {
			t.Errorf("stats row %+v", c)
		}
		total += c.Count
	}
	if !stats.Live || total != 2 {
		t.Fatalf("stats: live %v, %d pending; want live counts of 2", stats.Live, total)
	}
}

func TestCLIUsageErrorsExitNonZero(t *testing.T) {
	e := newOpsEnv(t)
	for _, args := range [][]string{
		{"repeaters", "bogus"},
		{"repeaters"},
		{"records", "list", "--no-such-flag"},
		{"flags", "nope"},
		{"repeaters", "list", "-o", "yaml"},
		{"repeaters", "show", "0"},
		{"events"},
	} {
		e.mustFail(args...)
	}
}

func TestCLIHintsMigrateOnAnEmptyDatabase(t *testing.T) {
	e := &opsEnv{t: t, dbURL: storetest.NewEmptyDB(t)}
	if msg := e.mustFail("repeaters", "list"); !strings.Contains(msg, "repeaterd migrate") {
		t.Fatalf("on an unmigrated database: %q, want the migrate hint", msg)
	}
}

// A repeater's subscription is set and changed from the CLI, and events
// sent with a type and a key reach only the subscribed repeaters, once.
func TestCLIEventSubscriptions(t *testing.T) {
	e := newOpsEnv(t)
	var cases, all repeaterView
	e.mustJSON(&cases, "repeaters", "create", "--domain", "acme", "--url", "https://example.com/cases",
		"--event-type", "case.created,case.updated", "--event-filter", `case.type == "patient"`)
	e.mustJSON(&all, "repeaters", "create", "--domain", "acme", "--url", "https://example.com/all")
	if fmt.Sprint(cases.EventTypes) != "[case.created case.updated]" || cases.EventFilter != `case.type == "patient"` || len(all.EventTypes) != 0 {
		t.Fatalf("created %v %q and %v", cases.EventTypes, cases.EventFilter, all.EventTypes)
	}
	send := func(args ...string) []recordView {
		var recs []recordView
		e.mustJSON(&recs, append([]string{"events", "send", "acme"}, args...)...)
		return recs
	}
	patient := `{"case":{"type":"patient"}}`
	if got := send("--type", "case.updated", "--payload", patient, "--idempotency-key", "e1"); len(got) != 2 {
		t.Fatalf("a matching event made %d records, want 2", len(got))
	}
	if got := send("--type", "case.updated", "--payload", patient, "--idempotency-key", "e1"); len(got) != 2 ||
		storetest.Count(t, e.st, `SELECT count(*) FROM repeat_records`) != 2 {
		t.Fatalf("a replayed key answered %d records and stored more", len(got))
	}
	for _, args := range [][]string{
		{"--type", "form.submitted", "--payload", patient},     // another type
		{"--type", "case.updated", "--payload", `{"case":{}}`}, // filtered out
	} {
		if got := send(args...); len(got) != 1 || got[0].RepeaterID != all.ID {
			t.Fatalf("events send %v: %d records, want only the unsubscribed repeater's", args, len(got))
		}
	}

	// Update changes only what is given; --event-type= receives every type.
	e.mustJSON(&cases, "repeaters", "update", fmt.Sprint(cases.ID), "--event-type=")
	if len(cases.EventTypes) != 0 || cases.EventFilter != `case.type == "patient"` {
		t.Fatalf("after update: %v %q", cases.EventTypes, cases.EventFilter)
	}
	before := storetest.Count(t, e.st, `SELECT count(*) FROM repeat_records`)
	for _, args := range [][]string{
		{"repeaters", "update", fmt.Sprint(cases.ID), "--event-filter", "case.type = "},
		{"repeaters", "create", "--domain", "acme", "--url", "https://example.com/x", "--event-type", "bad type!"},
		{"events", "send", "acme", "--type", "bad type!", "--payload", "{}"},
		{"events", "send", "acme", "--payload", patient, "--idempotency-key", "e1"}, // the key with another type
	} {
		e.mustFail(args...)
	}
	stored, err := e.st.GetRepeater(t.Context(), cases.ID)
	if err != nil || stored.EventFilter != `case.type == "patient"` {
		t.Fatalf("a refused update changed the filter to %q (%v)", stored.EventFilter, err)
	}
	if n := storetest.Count(t, e.st, `SELECT count(*) FROM repeaters`); n != 2 {
		t.Fatalf("%d repeaters after a refused create, want 2", n)
	}
	if after := storetest.Count(t, e.st, `SELECT count(*) FROM repeat_records`); after != before {
		t.Fatalf("refused commands wrote %d records", after-before)
	}
}
