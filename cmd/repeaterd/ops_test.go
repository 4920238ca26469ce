package main

import (
	"bytes"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"repeaterd/store"
	"repeaterd/store/storetest"
)

// opsEnv is a fresh database and a store on it, for checking what the
// operations commands change.
type opsEnv struct {
	t     *testing.T
	dbURL string
	st    *store.Store
}

func newOpsEnv(t *testing.T) *opsEnv {
	t.Helper()
	dbURL := storetest.NewDB(t)
	st, err := store.Open(t.Context(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	return &opsEnv{t: t, dbURL: dbURL, st: st}
}

// run executes the root command in-process and returns its output.
func (e *opsEnv) run(args ...string) (string, error) {
	e.t.Helper()
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(append([]string{"--database-url", e.dbURL}, args...))
	err := root.ExecuteContext(e.t.Context())
	return out.String(), err
}

func (e *opsEnv) mustRun(args ...string) string {
	e.t.Helper()
	out, err := e.run(args...)
	if err != nil {
		e.t.Fatalf("repeaterd %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func (e *opsEnv) repeater(domain, url string) *store.Repeater {
	e.t.Helper()
	r := &store.Repeater{Domain: domain, Name: domain + "-hook", URL: url}
	if err := e.st.CreateRepeater(e.t.Context(), r); err != nil {
		e.t.Fatal(err)
	}
	return r
}

// tableRow matches a table row made of the given cells, however padded.
func tableRow(cells ...string) *regexp.Regexp {
	for i, c := range cells {
		cells[i] = regexp.QuoteMeta(c)
	}
	return regexp.MustCompile(`(?m)^` + strings.Join(cells, ` +`) + `\b`)
}

func TestOpsFlags(t *testing.T) {
	e := newOpsEnv(t)
	e.repeater("acme", "https://example.com/a")
	e.repeater("globex", "https://example.com/g")
	if out := e.mustRun("flags", "set", "acme", "process_repeaters", "off"); out != "acme process_repeaters off\n" {
		t.Errorf("flags set output %q", out)
	}
	if on, _ := e.st.DomainFlagEnabled(t.Context(), "acme", store.FlagProcessRepeaters); on {
		t.Error("flags set off did not turn the flag off")
	}
	out := e.mustRun("flags", "list")
	for _, want := range []*regexp.Regexp{
		tableRow("acme", "process_repeaters", "off", "set"),
		tableRow("globex", "process_repeaters", "on", "default"),
	} {
		if !want.MatchString(out) {
			t.Errorf("flags list lacks %s:\n%s", want, out)
		}
	}
	if out := e.mustRun("flags", "list", "--process-repeaters-default=false"); !tableRow("globex", "process_repeaters", "off", "default").MatchString(out) {
		t.Errorf("flags list ignores --process-repeaters-default:\n%s", out)
	}
	e.mustRun("flags", "set", "acme", "process_repeaters", "on")
	if on, _ := e.st.DomainFlagEnabled(t.Context(), "acme", store.FlagProcessRepeaters); !on {
		t.Error("flags set on did not turn the flag on")
	}
	for _, args := range [][]string{
		{"flags", "set", "acme", "go_faster", "on"},
		{"flags", "set", "acme", "process_repeaters", "maybe"},
		{"flags", "set", "acme", "process_repeaters"},
	} {
		if _, err := e.run(args...); err == nil {
			t.Errorf("repeaterd %s succeeded", strings.Join(args, " "))
		}
	}
}

func TestOpsRepeaters(t *testing.T) {
	e := newOpsEnv(t)
	a := e.repeater("acme", "https://example.com/hook?token=secret")
	g := e.repeater("globex", "https://example.org/g")
	out := e.mustRun("repeaters", "list", "--domain", "acme")
	if !tableRow(fmt.Sprint(a.ID), "acme", "acme-hook", "https://example.com/hook?…", "active").MatchString(out) ||
		strings.Contains(out, "globex") || strings.Contains(out, "secret") {
		t.Errorf("repeaters list --domain acme:\n%s", out)
	}
	if out := e.mustRun("repeaters", "pause", fmt.Sprint(a.ID)); out != fmt.Sprintf("repeater %d paused\n", a.ID) {
		t.Errorf("pause output %q", out)
	}
	if r, _ := e.st.GetRepeater(t.Context(), a.ID); !r.IsPaused {
		t.Error("repeaters pause did not pause")
	}
	if out := e.mustRun("repeaters", "list"); !tableRow(fmt.Sprint(a.ID), "acme").MatchString(out) || !strings.Contains(out, "paused") ||
		!tableRow(fmt.Sprint(g.ID), "globex").MatchString(out) {
		t.Errorf("repeaters list:\n%s", out)
	}
	e.mustRun("repeaters", "resume", fmt.Sprint(a.ID))
	if r, _ := e.st.GetRepeater(t.Context(), a.ID); r.IsPaused {
		t.Error("repeaters resume did not resume")
	}
	if err := e.st.DeleteRepeater(t.Context(), g.ID); err != nil {
		t.Fatal(err)
	}
	if out := e.mustRun("repeaters", "list"); strings.Contains(out, "globex") {
		t.Errorf("deleted repeater listed:\n%s", out)
	}
	if out := e.mustRun("repeaters", "list", "--include-deleted"); !strings.Contains(out, "deleted") {
		t.Errorf("--include-deleted does not show it:\n%s", out)
	}
	for _, args := range [][]string{{"repeaters", "pause", "999999"}, {"repeaters", "pause", "x"}, {"repeaters", "resume", fmt.Sprint(g.ID)}} {
		if _, err := e.run(args...); err == nil {
			t.Errorf("repeaterd %s succeeded", strings.Join(args, " "))
		}
	}
}

func TestOpsRecords(t *testing.T) {
	e := newOpsEnv(t)
	r := e.repeater("acme", "https://example.com/a")
	rec, _, err := e.st.RegisterRecord(t.Context(), store.RegisterParams{RepeaterID: r.ID, Body: []byte("{}")})
	if err != nil {
		t.Fatal(err)
	}
	id := fmt.Sprint(rec.ID)
	if out := e.mustRun("records", "cancel", id); !strings.Contains(out, "cancelled") {
		t.Errorf("records cancel output %q", out)
	}
	got, _, _ := e.st.GetRecord(t.Context(), rec.ID)
	if got.State != store.StateCancelled {
		t.Fatalf("records cancel left state %s", got.State)
	}
	if _, err := e.run("records", "cancel", id); err == nil || !strings.Contains(err.Error(), "not ready") {
		t.Errorf("cancelling a cancelled record: %v", err)
	}
	e.mustRun("records", "requeue", id)
	if got, _, _ = e.st.GetRecord(t.Context(), rec.ID); !got.State.Ready() {
		t.Errorf("records requeue left state %s", got.State)
	}
	if _, err := e.run("records", "requeue", "999999"); err == nil || store.ErrorCode(err) != store.ENOTFOUND {
		t.Errorf("requeue of an unknown record: %v", err)
	}
}

func TestOpsHelp(t *testing.T) {
	e := &opsEnv{t: t}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--help"}, "flags"},
		{[]string{"--help"}, "records"},
		{[]string{"flags", "--help"}, "process_repeaters"},
		{[]string{"flags", "set", "--help"}, "set DOMAIN FLAG on|off"},
		{[]string{"flags", "list", "--help"}, "REPEATERD_PROCESS_REPEATERS_DEFAULT"},
		{[]string{"repeaters", "list", "--help"}, "--domain"},
		{[]string{"repeaters", "pause", "--help"}, "pause ID"},
		{[]string{"repeaters", "resume", "--help"}, "resume ID"},
		{[]string{"records", "requeue", "--help"}, "requeue [ID…]"},
		{[]string{"records", "cancel", "--help"}, "cancel [ID…]"},
		{[]string{"repeaters", "create", "--help"}, "--signing-secret-file"},
		{[]string{"events", "send", "--help"}, "send DOMAIN"},
	} {
		if out := e.mustRun(tc.args...); !strings.Contains(out, tc.want) {
			t.Errorf("repeaterd %s lacks %q:\n%s", strings.Join(tc.args, " "), tc.want, out)
		}
	}
}
