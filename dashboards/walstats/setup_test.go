package walstats

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"repeaterd/store"
	"repeaterd/store/storetest"
)

func TestConsumerNoReplicationPrivilege(t *testing.T) {
	e := newEnv(t, 1)
	ctx := context.Background()
	role := "norepl_" + strings.TrimPrefix(e.slot, "st_rt_")
	storetest.Exec(t, e.url, fmt.Sprintf(`CREATE ROLE %s LOGIN NOREPLICATION`, role))
	t.Cleanup(func() { storetest.Exec(t, e.url, fmt.Sprintf(`DROP ROLE IF EXISTS %s`, role)) })
	url := strings.Replace(e.url, "postgres@", role+"@", 1)
	st, err := store.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	c, err := New(st, Config{DatabaseURL: url, SlotName: e.slot})
	if err != nil {
		t.Fatal(err)
	}
	// Start does not fail the process: the consumer is degraded and says why.
	if err := c.Start(ctx); err != nil {
		t.Fatalf("Start as a role without REPLICATION: %v, want it to start degraded", err)
	}
	t.Cleanup(func() { _ = c.Stop(context.Background()) })
	err = waitDegraded(t, c)
	if !errors.Is(err, ErrWALUnavailable) || !strings.Contains(err.Error(), "WITH REPLICATION") {
		t.Fatalf("Health as a role without REPLICATION: %v, want ErrWALUnavailable naming the fix", err)
	}
	t.Log(err)
	// The replication connection's own refusal names the fix too.
	_, err = connect(ctx, c.connConfig)
	if !errors.Is(err, ErrWALUnavailable) || !strings.Contains(err.Error(), "REPLICATION") {
		t.Fatalf("replication connection as a role without REPLICATION: err = %v", err)
	}
	t.Log(err)
}

func TestSetupErrorsNameTheFix(t *testing.T) {
	ready := store.StatsSetup{WALLevel: "logical", Database: "db", User: "app", CanReplicate: true, Publication: true, ReplicaIdentityFull: true}
	tests := []struct {
		name  string
		setup func(*store.StatsSetup)
		want  string
	}{
		{"wal_level", func(s *store.StatsSetup) { s.WALLevel = "replica" }, "set wal_level = logical in postgresql.conf and restart"},
		{"replication", func(s *store.StatsSetup) { s.CanReplicate = false }, "ALTER ROLE app WITH REPLICATION"},
		{"publication", func(s *store.StatsSetup) { s.Publication = false }, "repeaterd migrate"},
		{"replica identity", func(s *store.StatsSetup) { s.ReplicaIdentityFull = false }, "REPLICA IDENTITY FULL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := ready
			tt.setup(&s)
			err := checkSetup(&s, "repeaterd_stats")
			if !errors.Is(err, ErrWALUnavailable) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want ErrWALUnavailable mentioning %q", err, tt.want)
			}
		})
	}
	if err := checkSetup(&ready, "repeaterd_stats"); err != nil {
		t.Fatalf("ready setup: %v", err)
	}
	// The server's own refusal when wal_level is too low.
	err := classify(fmt.Errorf("create slot: %w", &pgconn.PgError{Code: "55000",
		Message: "logical decoding requires wal_level >= logical"}), "app")
	if !errors.Is(err, ErrWALUnavailable) || !strings.Contains(err.Error(), "wal_level = logical") {
		t.Fatalf("classify(wal_level) = %v", err)
	}
}

// waitDegraded waits for c to report itself degraded and returns its Health.
func waitDegraded(t *testing.T, c *Consumer) error {
	t.Helper()
	waitState(t, c, StateDegraded)
	return c.Health()
}

// waitState waits for c's status to be state.
func waitState(t *testing.T, c *Consumer, state string) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		st, changed := c.status.next()
		if st.State == state {
			return
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("consumer still %s after 30s, want %s", st.State, state)
		}
	}
}

func TestSlotNameFor(t *testing.T) {
	long := strings.Repeat("x", 60)
	for _, tt := range []struct{ db, want string }{
		{"repeaterd", "repeaterd_stats_repeaterd"},
		{"prod_eu_1", "repeaterd_stats_prod_eu_1"},
	} {
		if got := SlotNameFor(tt.db); got != tt.want {
			t.Errorf("SlotNameFor(%q) = %q, want %q", tt.db, got, tt.want)
		}
	}
	seen := map[string]string{}
	for _, db := range []string{"Staging", "staging", "my-db", "my_db", long, long + "y"} {
		got := SlotNameFor(db)
		if !identifier.MatchString(got) || !strings.HasPrefix(got, DefaultSlotPrefix) {
			t.Errorf("SlotNameFor(%q) = %q: not a valid slot name", db, got)
		}
		if other, ok := seen[got]; ok {
			t.Errorf("SlotNameFor(%q) = SlotNameFor(%q) = %q", db, other, got)
		}
		seen[got] = db
	}
	c := Config{DatabaseURL: "postgres://u@127.0.0.1:5432/Shop-Prod"}.WithDefaults()
	if c.SlotName != SlotNameFor("Shop-Prod") {
		t.Errorf("default slot of database Shop-Prod = %q, want %q", c.SlotName, SlotNameFor("Shop-Prod"))
	}
}
