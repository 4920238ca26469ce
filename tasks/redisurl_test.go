package tasks

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestParseRedisURL(t *testing.T) {
	for _, tc := range []struct {
		url    string
		kind   string
		addrs  []string
		master string
		db     int
		check  func(t *testing.T, o RedisOptions)
	}{
		{url: "redis://127.0.0.1:56379/3", kind: RedisStandalone, addrs: []string{"127.0.0.1:56379"}, db: 3},
		{url: "REDIS://127.0.0.1", kind: RedisStandalone, addrs: []string{"127.0.0.1:6379"}},
		{url: "rediss://:pw@10.0.0.1:6380/0?dial_timeout=2s", kind: RedisStandalone, addrs: []string{"10.0.0.1:6380"},
			check: func(t *testing.T, o RedisOptions) {
				if o.standalone.Password != "pw" || o.standalone.TLSConfig == nil || o.standalone.DialTimeout != 2*time.Second {
					t.Errorf("password %q, TLS %v, dial timeout %s", o.standalone.Password, o.standalone.TLSConfig, o.standalone.DialTimeout)
				}
			}},
		{url: "unix:///run/redis.sock?db=2", kind: RedisStandalone, addrs: []string{"/run/redis.sock"}, db: 2},
		{url: "redis+sentinel://127.0.0.1:26379,127.0.0.1:26380,[::1]:26381/mymaster?db=5",
			kind: RedisSentinel, addrs: []string{"127.0.0.1:26379", "127.0.0.1:26380", "[::1]:26381"}, master: "mymaster", db: 5},
		{url: "redis+sentinel://s1,s2:1234/m", kind: RedisSentinel, addrs: []string{"s1:26379", "s2:1234"}, master: "m"},
		{url: "redis+sentinel://:se%2Fcret@h:1/m?sentinel_password=sp&sentinel_username=su&read_timeout=4s",
			kind: RedisSentinel, addrs: []string{"h:1"}, master: "m",
			check: func(t *testing.T, o RedisOptions) {
				f := o.failover
				if f.Password != "se/cret" || f.Username != "" || f.SentinelPassword != "sp" || f.SentinelUsername != "su" || f.ReadTimeout != 4*time.Second {
					t.Errorf("password %q user %q, sentinel %q/%q, read timeout %s", f.Password, f.Username, f.SentinelUsername, f.SentinelPassword, f.ReadTimeout)
				}
			}},
		{url: "rediss+sentinel://u:p@h:1/m", kind: RedisSentinel, addrs: []string{"h:1"}, master: "m",
			check: func(t *testing.T, o RedisOptions) {
				if o.failover.TLSConfig == nil || o.failover.Username != "u" || o.failover.Password != "p" {
					t.Errorf("TLS %v, user %q, password %q", o.failover.TLSConfig, o.failover.Username, o.failover.Password)
				}
			}},
		{url: "redis+cluster://10.0.0.1:7000,10.0.0.2:7001,10.0.0.3", kind: RedisCluster,
			addrs: []string{"10.0.0.1:7000", "10.0.0.2:7001", "10.0.0.3:6379"}},
		{url: "rediss+cluster://u:p@n1:7000/?max_redirects=5", kind: RedisCluster, addrs: []string{"n1:7000"},
			check: func(t *testing.T, o RedisOptions) {
				c := o.cluster
				if c.Username != "u" || c.Password != "p" || c.MaxRedirects != 5 || c.TLSConfig == nil || c.TLSConfig.ServerName != "n1" {
					t.Errorf("user %q password %q redirects %d TLS %+v", c.Username, c.Password, c.MaxRedirects, c.TLSConfig)
				}
			}},
	} {
		t.Run(tc.url, func(t *testing.T) {
			o, err := ParseRedisURL(tc.url)
			if err != nil {
				t.Fatal(err)
			}
			if o.Kind() != tc.kind || !slices.Equal(o.Addrs(), tc.addrs) || o.MasterName() != tc.master || o.DB() != tc.db {
				t.Fatalf("got %s %v master %q db %d; want %s %v master %q db %d",
					o.Kind(), o.Addrs(), o.MasterName(), o.DB(), tc.kind, tc.addrs, tc.master, tc.db)
			}
			if tc.check != nil {
				tc.check(t, o)
			}
			c := o.NewClient()
			defer c.Close()
			want := map[string]string{RedisStandalone: "*redis.Client", RedisSentinel: "*redis.Client", RedisCluster: "*redis.ClusterClient"}[tc.kind]
			if got := typeName(c); got != want {
				t.Fatalf("client %s, want %s", got, want)
			}
		})
	}
}

func typeName(c redis.UniversalClient) string {
	switch c.(type) {
	case *redis.Client:
		return "*redis.Client"
	case *redis.ClusterClient:
		return "*redis.ClusterClient"
	}
	return "other"
}

func TestParseRedisURLErrors(t *testing.T) {
	for url, want := range map[string]string{
		"":                                     "empty",
		"127.0.0.1:6379":                       "no scheme",
		"http://127.0.0.1":                     `unknown scheme "http"`,
		"redis+sentinal://h:1/m":               `unknown scheme "redis+sentinal"`,
		"unix+cluster:///x":                    `unknown scheme "unix+cluster"`,
		"redis://:s3cret@h:1/x":                "invalid database number",
		"redis://:s3cret@h:99999":              "bad port",
		"redis+sentinel://:s3cret@h:1":         "names the master as its path",
		"redis+sentinel://h:1/a/b":             "names the master as its path",
		"redis+sentinel://:s3cret@/m":          "no host",
		"redis+sentinel://h:1,,h:2/m":          "empty address",
		"redis+sentinel://h:0/m":               "bad port",
		"redis+sentinel://h:port/m":            "bad port",
		"redis+sentinel://h h:1/m":             "bad address",
		"redis+sentinel://h:1/m?db=x":          "invalid database number",
		"redis+sentinel://h:1/m?master_name=n": "given by the URL itself",
		"redis+sentinel://h:1/m?pool_size=x":   "pool_size",
		"redis+sentinel://h:1/m?bogus=1":       "bogus",
		"redis+sentinel://h:1/m#frag":          "fragment",
		"redis+sentinel://:%zz@h:1/m":          "bad escape in the user info",
		"redis+cluster://h:1/3":                "no database index",
		"redis+cluster://h:1?db=3":             "no database index",
		"redis+cluster://h:1?addr=h:2":         "given by the URL itself",
		"redis+cluster://:s3cret@h:1?x=%zz":    "bad query string",
	} {
		_, err := ParseRedisURL(url)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.HasPrefix(err.Error(), "REDIS_URL: ") {
			t.Errorf("ParseRedisURL(%q) = %v, want an error containing %q", url, err, want)
		}
		if err != nil && strings.Contains(err.Error(), "s3cret") {
			t.Errorf("ParseRedisURL(%q): the error repeats the password: %v", url, err)
		}
	}
}

func TestRedisOptionsString(t *testing.T) {
	o, err := ParseRedisURL("redis+sentinel://:s3cret@a:1,b:2/mymaster?db=4&sentinel_password=s3cret")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := o.String(), "sentinel master mymaster via a:1,b:2 db 4"; got != want {
		t.Fatalf("String() = %q, want %q", got, want)
	}
	c := o.WithPoolSize(4).NewClient().(*redis.Client)
	defer c.Close()
	if c.Options().PoolSize != 4 {
		t.Fatalf("pool size %d, want 4", c.Options().PoolSize)
	}
}

// FuzzParseRedisURL: no input panics; an accepted URL names at least one
// well-formed address, builds a client, and no error or description repeats
// the password.
func FuzzParseRedisURL(f *testing.F) {
	for _, s := range []string{"redis://h:1/2", "redis+sentinel://a:1,b:2/m?db=1", "redis+cluster://a:1,[::1]:2",
		"rediss+sentinel://u:p@h/m?sentinel_password=x", "unix:///s?db=1", "redis+cluster://a:1?dial_timeout=3"} {
		f.Add(s)
	}
	const secret = "Zq7secretZq7"
	f.Fuzz(func(t *testing.T, s string) {
		withSecret := strings.Replace(s, "://", "://:"+secret+"@", 1)
		for _, in := range []string{s, withSecret} {
			o, err := ParseRedisURL(in)
			leaks := strings.Contains(in, secret) && !strings.Contains(strings.Replace(in, ":"+secret+"@", "", 1), secret)
			if err != nil {
				if leaks && strings.Contains(err.Error(), secret) {
					t.Fatalf("error repeats the password: %v", err)
				}
				continue
			}
			if len(o.Addrs()) == 0 || o.Addrs()[0] == "" {
				t.Fatalf("%q accepted with no address", in)
			}
			if leaks && strings.Contains(o.String(), secret) {
				t.Fatalf("String() repeats the password: %s", o)
			}
			if o.Kind() == RedisSentinel && o.MasterName() == "" {
				t.Fatalf("%q accepted as Sentinel without a master", in)
			}
			_ = o.NewClient().Close()
		}
	})
}

// A malformed REDIS_URL is refused before anything is opened.
func TestOpenEngineRefusesBadRedisURL(t *testing.T) {
	_, err := OpenEngine(t.Context(), EngineConfig{DatabaseURL: "postgres://127.0.0.1:1/none", RedisURL: "redis+sentinel://h:1"}, nil)
	if err == nil || !strings.Contains(err.Error(), "REDIS_URL: a Sentinel URL names the master") {
		t.Fatalf("OpenEngine: %v", err)
	}
}
