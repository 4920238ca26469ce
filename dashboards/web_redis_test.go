package dashboards_test

import (
	"strings"
	"testing"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"repeaterd/dashboards"
	"repeaterd/store/storetest"
)

// A Sentinel client's options do not say where the master is, so asynqmon's
// connection cannot be derived from it: NewWeb asks for WithMonitorRedis
// (repeaterd passes the engine's parsed REDIS_URL) instead of pointing
// asynqmon at nothing.
func TestWebNeedsMonitorRedisForSentinel(t *testing.T) {
	st := storetest.NewStore(t)
	failover := redis.NewFailoverClient(&redis.FailoverOptions{MasterName: "m", SentinelAddrs: []string{"127.0.0.1:1"}})
	t.Cleanup(func() { failover.Close() })
	_, err := dashboards.NewWeb(dashboards.WebConfig{Addr: "127.0.0.1:0"}, st, failover)
	if err == nil || !strings.Contains(err.Error(), "WithMonitorRedis") {
		t.Fatalf("NewWeb on a Sentinel client without WithMonitorRedis: err = %v", err)
	}
	opt, err := asynq.ParseRedisURI(storetest.RedisDB(t))
	if err != nil {
		t.Fatal(err)
	}
	startWeb(t, dashboards.WebConfig{}, st, failover, dashboards.WithMonitorRedis(opt)) // stopped at cleanup, closing asynqmon
}
