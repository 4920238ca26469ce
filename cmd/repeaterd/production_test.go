package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"repeaterd/store"
	"repeaterd/store/storetest"
)

func TestRunRefusesPendingMigrations(t *testing.T) {
	e := &opsEnv{t: t, dbURL: storetest.NewEmptyDB(t)}
	out, err := e.run("run", "--roles", "web", "--redis-url", storetest.RedisDB(t))
	if err == nil || !strings.Contains(err.Error(), "run `repeaterd migrate` first") ||
		!strings.Contains(err.Error(), "00001_tables.sql") {
		t.Fatalf("run on an unmigrated database: %v\n%s", err, out)
	}
	t.Log(err)
}

// The stats role that cannot have its slot (another database owns the
// name) degrades alone: the process runs, /readyz says 200 with the stats
// role's reason, and repeaterd_role_up reports it down, the web role up.
func TestRunDegradesOnlyTheStatsRole(t *testing.T) {
	other := newOpsEnv(t)
	var otherSlot string
	if err := other.st.Pool().QueryRow(t.Context(), `SELECT 'other_' || current_database()`).Scan(&otherSlot); err != nil {
		t.Fatal(err)
	}
	storetest.Exec(t, other.dbURL, `SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, otherSlot)
	t.Cleanup(func() { _ = other.st.DropReplicationSlot(context.Background(), otherSlot) })

	e := newOpsEnv(t)
	addr := freeAddr(t)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	var logs bytes.Buffer
	go func() {
		root := newRootCmd()
		root.SetOut(io.Discard)
		root.SetErr(&logs)
		root.SetArgs([]string{"--database-url", e.dbURL, "--redis-url", storetest.RedisDB(t), "run",
			"--roles", "stats,web", "--http-addr", addr, "--stats-slot", otherSlot, "--log-format", "json"})
		done <- root.ExecuteContext(ctx)
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
		if !strings.Contains(logs.String(), `"msg":"repeaterd running"`) {
			t.Errorf("no JSON log of the start:\n%.2000s", logs.String())
		}
	}()
	deadline := time.Now().Add(30 * time.Second)
	var body string
	for time.Now().Before(deadline) {
		// The readiness probe is the signal there is: poll it as a balancer would.
		if res, err := http.Get("http://" + addr + "/readyz"); err == nil {
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			body = string(b)
			if res.StatusCode == http.StatusOK && strings.Contains(body, `"stats":"degraded`) {
				break
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.Contains(body, `"status":"degraded"`) || !strings.Contains(body, "REPEATERD_STATS_SLOT") ||
		!strings.Contains(body, `"web":"ok"`) {
		t.Fatalf("readyz with the stats role degraded: %s", body)
	}
	res, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(res.Body)
	res.Body.Close()
	for _, line := range []string{`repeaterd_role_up{role="stats"} 0`, `repeaterd_role_up{role="web"} 1`} {
		if !strings.Contains(string(metrics), line+"\n") {
			t.Errorf("/metrics lacks %q", line)
		}
	}
	// The console marks the counts live, saying why.
	res, err = http.Get("http://" + addr + "/ui/fragment")
	if err == nil {
		page, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if !strings.Contains(string(page), `data-stats="degraded"`) {
			t.Errorf("the console does not mark the counts live:\n%.1500s", page)
		}
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func TestPurgeDryRunThenPurge(t *testing.T) {
	e := newOpsEnv(t)
	r := e.repeater("acme", "https://example.com/hook")
	ids := storetest.Records(t, e.st, r, 3)
	if _, err := e.st.RecordOutcomes(t.Context(), []store.Outcome{{RecordID: ids[0], State: store.StateSuccess}}, nil); err != nil {
		t.Fatal(err)
	}
	storetest.Exec(t, e.dbURL, `UPDATE repeat_records SET state_changed_at = now() - interval '40 days' WHERE id = $1`, ids[0])
	out := e.mustRun("purge", "--older-than", "720h", "--dry-run")
	if !strings.Contains(out, "would purge 1 records, 1 attempts and 1 payloads") {
		t.Fatalf("dry run: %s", out)
	}
	if n := storetest.Count(t, e.st, `SELECT count(*) FROM repeat_records`); n != 3 {
		t.Fatalf("the dry run deleted records: %d left", n)
	}
	if out := e.mustRun("purge", "--older-than", "720h"); !strings.Contains(out, "purged 1 records, 1 attempts and 1 payloads") {
		t.Fatalf("purge: %s", out)
	}
	if _, err := e.run("purge", "--older-than", "0s"); err == nil {
		t.Fatal("purge --older-than 0s: no error")
	}
}

func TestHealthcheck(t *testing.T) {
	status := http.StatusOK
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/readyz" {
			http.NotFound(rw, r)
			return
		}
		rw.WriteHeader(status)
		fmt.Fprint(rw, `{"status":"ok"}`)
	}))
	defer srv.Close()
	e := &opsEnv{t: t}
	t.Setenv("REPEATERD_METRICS_ADDR", strings.Replace(srv.Listener.Addr().String(), "127.0.0.1", "0.0.0.0", 1))
	if out, err := e.run("healthcheck"); err != nil || !strings.Contains(out, "200 OK") {
		t.Fatalf("healthcheck of a ready process: %v\n%s", err, out)
	}
	status = http.StatusServiceUnavailable
	if _, err := e.run("healthcheck"); err == nil {
		t.Fatal("healthcheck of an unready process: exit 0")
	}
	srv.Close()
	if _, err := e.run("healthcheck", "--timeout", "1s"); err == nil {
		t.Fatal("healthcheck of nothing: exit 0")
	}
}

func TestNewLogger(t *testing.T) {
	var b bytes.Buffer
	l, err := newLogger(&b, "json", "warn")
	if err != nil {
		t.Fatal(err)
	}
	l.Info("hidden")
	l.Warn("shown", "k", 1)
	if s := b.String(); strings.Contains(s, "hidden") || !strings.Contains(s, `"msg":"shown"`) {
		t.Fatalf("json at warn: %q", s)
	}
	for _, bad := range [][2]string{{"xml", "info"}, {"text", "loud"}} {
		if _, err := newLogger(&b, bad[0], bad[1]); err == nil {
			t.Errorf("newLogger(%q, %q): no error", bad[0], bad[1])
		}
	}
}

func TestMigrateRefreshesInvariants(t *testing.T) {
	e := &opsEnv{t: t, dbURL: storetest.NewEmptyDB(t)}
	if out := e.mustRun("migrate"); !strings.Contains(out, "applied") || !strings.Contains(out, "invariants refreshed") {
		t.Fatalf("migrate: %s", out)
	}
	if out := e.mustRun("migrate"); !strings.Contains(out, "up to date") || strings.Contains(out, "refreshed") {
		t.Fatalf("migrate with nothing to apply: %s", out)
	}
}
