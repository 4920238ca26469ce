package walstats

import "testing"

func TestConfigDefaultsAndValidation(t *testing.T) {
	c := Config{DatabaseURL: "postgres://x@127.0.0.1/db"}.WithDefaults()
	if c.SlotName != SlotNameFor("db") || c.Publication != DefaultPublication ||
		c.StandbyInterval != DefaultStandbyInterval || c.BatchSize != DefaultBatchSize ||
		c.BatchWait != DefaultBatchWait || c.Logger == nil {
		t.Fatalf("WithDefaults = %+v", c)
	}
	if err := c.validate(); err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
	for _, bad := range []Config{
		{},
		{DatabaseURL: c.DatabaseURL, SlotName: "Bad-Name"},
		{DatabaseURL: c.DatabaseURL, Publication: "x'; DROP"},
		{DatabaseURL: c.DatabaseURL, BatchSize: -1},
		{DatabaseURL: c.DatabaseURL, StandbyInterval: -1},
		{DatabaseURL: c.DatabaseURL, BatchWait: -1},
	} {
		if _, err := New(nil, bad); err == nil {
			t.Errorf("New(%+v) accepted", bad)
		}
	}
}
