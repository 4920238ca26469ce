package tasks

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Redis deployment kinds, as RedisOptions.Kind reports them.
const (
	RedisStandalone = "standalone"
	RedisSentinel   = "sentinel"
	RedisCluster    = "cluster"
)

// Default ports of the addresses in a REDIS_URL that name none.
const (
	DefaultRedisPort    = "6379"
	DefaultSentinelPort = "26379"
)

// RedisOptions is REDIS_URL parsed: how every part of the engine reaches
// Redis. It is also an asynq.RedisConnOpt, so asynq's server, scheduler,
// inspector and asynqmon open their connections from the very same options
// as the engine's shared client (locks, leader lease, pub/sub, enqueues):
// one parser, one set of settings, whatever the deployment.
//
// The URL forms are
//
//	redis://[user:password@]host:port[/db][?option=value…]     one server (rediss:// for TLS, unix:///path.sock)
//	redis+sentinel://[user:password@]host:port[,host:port…]/master[?db=N&…]
//	redis+cluster://[user:password@]host:port[,host:port…][?option=value…]
//
// with rediss+sentinel and rediss+cluster for TLS. In the Sentinel form the
// hosts are the Sentinels, master is the monitored master's name, and the
// user and password are the Redis servers' (master and replicas'); the
// Sentinels' own, when they need one, go in sentinel_username= and
// sentinel_password=. The Cluster form lists seed nodes; a cluster has no
// database index. The options are go-redis's URL options (dial_timeout=,
// read_timeout=, pool_size=, …), which go-redis itself parses.
type RedisOptions struct {
	standalone *redis.Options
	failover   *redis.FailoverOptions
	cluster    *redis.ClusterOptions
	poolSize   int
}

// ParseRedisURL parses a REDIS_URL. Its errors name what is wrong without
// repeating the URL, which may hold a password.
func ParseRedisURL(raw string) (RedisOptions, error) {
	o, err := parseRedisURL(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // url.Parse's errors quote the whole URL
		}
		return RedisOptions{}, fmt.Errorf("REDIS_URL: %w", err)
	}
	return o, nil
}

func parseRedisURL(raw string) (RedisOptions, error) {
	if raw == "" {
		return RedisOptions{}, errors.New("empty")
	}
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return RedisOptions{}, errors.New("no scheme: want redis://, rediss://, unix://, redis+sentinel:// or redis+cluster://")
	}
	base, kind, _ := strings.Cut(strings.ToLower(scheme), "+")
	if base != "redis" && base != "rediss" && (base != "unix" || kind != "") {
		return RedisOptions{}, fmt.Errorf("unknown scheme %q: want redis://, rediss://, unix://, redis+sentinel:// or redis+cluster://", scheme)
	}
	switch kind {
	case "":
		o, err := redis.ParseURL(strings.ToLower(scheme) + "://" + rest)
		if err == nil && o.Network == "tcp" {
			_, err = splitAddr(o.Addr, DefaultRedisPort)
		}
		return RedisOptions{standalone: o}, err
	case "sentinel":
		o, err := parseSentinel(base, rest)
		return RedisOptions{failover: o}, err
	case "cluster":
		o, err := parseCluster(base, rest)
		return RedisOptions{cluster: o}, err
	}
	return RedisOptions{}, fmt.Errorf("unknown scheme %q: want redis+sentinel:// or redis+cluster://", scheme)
}

// multiHost is a multi-host URL taken apart: net/url cannot parse a host
// list, so the authority is split here and the rest handed to go-redis.
type multiHost struct {
	user  *url.Userinfo
	addrs []string
	path  string
	query url.Values
}

func splitMultiHost(rest, defaultPort string) (multiHost, error) {
	var m multiHost
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	authority, tail := rest[:end], rest[end:]
	if strings.Contains(tail, "#") {
		return m, errors.New("a fragment (#) has no meaning here")
	}
	if at := strings.LastIndex(authority, "@"); at >= 0 {
		user, err := parseUserinfo(authority[:at])
		if err != nil {
			return m, err
		}
		m.user, authority = user, authority[at+1:]
	}
	if authority == "" {
		return m, errors.New("no host: list host:port[,host:port…]")
	}
	for _, a := range strings.Split(authority, ",") {
		addr, err := splitAddr(a, defaultPort)
		if err != nil {
			return m, err
		}
		m.addrs = append(m.addrs, addr)
	}
	path, rawQuery, _ := strings.Cut(tail, "?")
	var err error
	if m.path, err = url.PathUnescape(path); err != nil {
		return m, errors.New("bad escape in the path")
	}
	if m.query, err = url.ParseQuery(rawQuery); err != nil {
		return m, errors.New("bad query string")
	}
	for _, reserved := range []string{"addr", "master_name", "username", "password"} {
		if m.query.Has(reserved) {
			return m, fmt.Errorf("option %s= is given by the URL itself (hosts, path, user info)", reserved)
		}
	}
	return m, nil
}

func parseUserinfo(s string) (*url.Userinfo, error) {
	name, pass, hasPass := strings.Cut(s, ":")
	name, err1 := url.PathUnescape(name)
	pass, err2 := url.PathUnescape(pass)
	if err1 != nil || err2 != nil {
		return nil, errors.New("bad escape in the user info")
	}
	if hasPass {
		return url.UserPassword(name, pass), nil
	}
	return url.User(name), nil
}

// splitAddr checks one host[:port] of a host list and fills in the port.
func splitAddr(a, defaultPort string) (string, error) {
	if a == "" {
		return "", errors.New("empty address in the host list")
	}
	host, port, err := net.SplitHostPort(a)
	if err != nil { // no port: the whole is the host
		host, port = strings.TrimSuffix(strings.TrimPrefix(a, "["), "]"), defaultPort
	}
	if !validHost(host) {
		return "", fmt.Errorf("bad address %q in the host list: want host:port", a)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "", fmt.Errorf("bad port in %q: want 1-65535", a)
	}
	return net.JoinHostPort(host, port), nil
}

// validHost accepts an IP literal or a DNS name.
func validHost(h string) bool {
	if _, err := netip.ParseAddr(h); err == nil {
		return true
	}
	if h == "" || len(h) > 253 {
		return false
	}
	for _, r := range h {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

// goRedisURL rebuilds m as the one-host URL with addr= options that
// go-redis's ParseFailoverURL and ParseClusterURL read.
func (m multiHost) goRedisURL(scheme, path string, user *url.Userinfo) string {
	q := url.Values{}
	for k, v := range m.query {
		q[k] = v
	}
	q["addr"] = m.addrs[1:]
	u := url.URL{Scheme: scheme, User: user, Host: m.addrs[0], Path: path, RawQuery: q.Encode()}
	return u.String()
}

// take removes option name from m's query and returns its value.
func (m multiHost) take(name string) string {
	v := m.query.Get(name)
	m.query.Del(name)
	return v
}

func parseSentinel(scheme, rest string) (*redis.FailoverOptions, error) {
	m, err := splitMultiHost(rest, DefaultSentinelPort)
	if err != nil {
		return nil, err
	}
	master := strings.Trim(m.path, "/")
	if master == "" || strings.Contains(master, "/") {
		return nil, errors.New("a Sentinel URL names the master as its path: redis+sentinel://host:port[,host:port…]/master")
	}
	sentinelUser, sentinelPass := m.take("sentinel_username"), m.take("sentinel_password")
	m.query.Set("master_name", master)
	if m.user != nil { // the servers' credentials; go-redis reads user info as the Sentinels'
		m.query.Set("username", m.user.Username())
		if p, ok := m.user.Password(); ok {
			m.query.Set("password", p)
		}
	}
	o, err := redis.ParseFailoverURL(m.goRedisURL(scheme, "", nil))
	if err != nil {
		return nil, err
	}
	o.SentinelUsername, o.SentinelPassword = sentinelUser, sentinelPass
	return o, nil
}

func parseCluster(scheme, rest string) (*redis.ClusterOptions, error) {
	m, err := splitMultiHost(rest, DefaultRedisPort)
	if err != nil {
		return nil, err
	}
	if strings.Trim(m.path, "/") != "" || m.query.Has("db") {
		return nil, errors.New("a Cluster URL takes no database index (a cluster has only database 0) and no path")
	}
	return redis.ParseClusterURL(m.goRedisURL(scheme, "", m.user))
}

// Kind is RedisStandalone, RedisSentinel or RedisCluster.
func (o RedisOptions) Kind() string {
	switch {
	case o.failover != nil:
		return RedisSentinel
	case o.cluster != nil:
		return RedisCluster
	}
	return RedisStandalone
}

// Addrs are the addresses the client dials first: the server, the
// Sentinels, or the cluster's seed nodes.
func (o RedisOptions) Addrs() []string {
	switch {
	case o.failover != nil:
		return append([]string(nil), o.failover.SentinelAddrs...)
	case o.cluster != nil:
		return append([]string(nil), o.cluster.Addrs...)
	case o.standalone != nil:
		return []string{o.standalone.Addr}
	}
	return nil
}

// MasterName is the Sentinel master's name; "" for the other kinds.
func (o RedisOptions) MasterName() string {
	if o.failover != nil {
		return o.failover.MasterName
	}
	return ""
}

// DB is the database index (always 0 on a cluster).
func (o RedisOptions) DB() int {
	switch {
	case o.failover != nil:
		return o.failover.DB
	case o.standalone != nil:
		return o.standalone.DB
	}
	return 0
}

// String describes the deployment without credentials, for logs and errors.
func (o RedisOptions) String() string {
	addrs := strings.Join(o.Addrs(), ",")
	switch o.Kind() {
	case RedisSentinel:
		return fmt.Sprintf("sentinel master %s via %s db %d", o.MasterName(), addrs, o.DB())
	case RedisCluster:
		return "cluster via " + addrs
	}
	return fmt.Sprintf("redis %s db %d", addrs, o.DB())
}

// WithPoolSize returns o whose clients keep n connections per node unless
// the URL's pool_size= says otherwise: for a part that needs few (asynqmon).
func (o RedisOptions) WithPoolSize(n int) RedisOptions {
	o.poolSize = n
	return o
}

// NewClient opens a client on o: a *redis.Client, one that follows the
// Sentinels' master (redis.NewFailoverClient), or a *redis.ClusterClient.
// Each call opens a client of its own, which the caller closes.
func (o RedisOptions) NewClient() redis.UniversalClient {
	switch {
	case o.failover != nil:
		c := *o.failover
		c.PoolSize = cmp.Or(c.PoolSize, o.poolSize)
		return redis.NewFailoverClient(&c)
	case o.cluster != nil:
		c := *o.cluster
		c.PoolSize = cmp.Or(c.PoolSize, o.poolSize)
		return redis.NewClusterClient(&c)
	case o.standalone != nil:
		c := *o.standalone
		c.PoolSize = cmp.Or(c.PoolSize, o.poolSize)
		return redis.NewClient(&c)
	}
	panic("tasks: RedisOptions used before ParseRedisURL")
}

// MakeRedisClient makes o an asynq.RedisConnOpt: asynq opens its clients
// with NewClient.
func (o RedisOptions) MakeRedisClient() any { return o.NewClient() }
