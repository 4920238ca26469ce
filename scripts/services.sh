#!/usr/bin/env bash
# Private Postgres and Redis for run, test and bench.
#
#   scripts/services.sh up [--durable]    start (or reuse) both; prints export lines for eval
#   scripts/services.sh down              stop them (the durable instance too)
#   scripts/services.sh env [--durable]   print the export lines only
#
# The default Postgres is tuned for tests (fsync, synchronous_commit and
# full_page_writes off): fast, and nothing in it needs to survive a crash.
# --durable (or REPEATERD_DURABLE=1) also starts a second private instance with
# production durability (fsync, synchronous_commit and full_page_writes on,
# stock 128MB shared_buffers, pg_stat_statements loaded) on
# REPEATERD_PG_DURABLE_PORT (default: the test port + 1), for benchmarks:
# DATABASE_URL then names the durable instance and
# REPEATERD_BENCH_FSYNC_OFF_URL the fast one (the bench's second column).
#
# DATABASE_URL / REDIS_URL already set in the environment are used as they are
# and nothing is started for them (without --durable). Logs go to stderr so
# `eval "$(... up)"` works.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
state=${REPEATERD_SERVICES_DIR:-$root/.services}
pg_port=${REPEATERD_PG_PORT:-55432}
redis_port=${REPEATERD_REDIS_PORT:-56379}
pg_durable_port=${REPEATERD_PG_DURABLE_PORT:-$((pg_port + 1))}
pg_user=${REPEATERD_PG_OS_USER:-repeaterd}
durable=${REPEATERD_DURABLE:-0}

log() { echo "services: $*" >&2; }
. "$root/scripts/apt.sh"

need_root_install() {
	# $1 = package, $2 = binary that proves it is there
	if [ "$(id -u)" -ne 0 ]; then
		log "missing $2; install it with: sudo apt-get install -y $1"
		exit 1
	fi
	log "installing $1"
	apt_install "$1"
}

pg_bindir() {
	local d
	for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
		[ -x "$d/postgres" ] && { echo "$d"; return; }
	done
	command -v pg_config >/dev/null && [ -x "$(pg_config --bindir)/postgres" ] && { pg_config --bindir; return; }
}

# pg_data_dir picks the data directory, creating the unprivileged user when
# root: under $state when that user can reach it, else under /var/tmp (a
# checkout below a private home directory is not reachable).
pg_data_dir() {
	local name=${1:-pg}
	mkdir -p "$state"
	if [ "$(id -u)" -ne 0 ]; then
		echo "$state/$name"
		return
	fi
	# Postgres refuses to run as root: run it as an unprivileged user.
	id "$pg_user" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$pg_user"
	chmod o+x "$state" 2>/dev/null || true
	if (cd / && su -s /bin/sh "$pg_user" -c "test -x '$state'") 2>/dev/null; then
		echo "$state/$name"
	else
		local alt
		alt=/var/tmp/repeaterd-services-$(echo "$root" | md5sum | cut -c1-12)
		mkdir -p "$alt" && chmod 755 "$alt"
		echo "$alt/$name"
	fi
}

as_pg_user() {
	if [ "$(id -u)" -eq 0 ]; then
		(cd / && su -s /bin/bash "$pg_user" -c "$*")
	else
		bash -c "$*"
	fi
}

# fast_settings: a test server; nothing in it needs to survive a crash.
fast_settings() {
	cat <<-CONF
		shared_buffers = 256MB
		fsync = off
		synchronous_commit = off
		full_page_writes = off
		shared_preload_libraries = ''
	CONF
}

# durable_settings: production durability, stock buffers; pg_stat_statements
# for profiling the benchmarks.
durable_settings() {
	cat <<-CONF
		shared_buffers = 128MB
		fsync = on
		synchronous_commit = on
		full_page_writes = on
		shared_preload_libraries = 'pg_stat_statements'
		pg_stat_statements.track = all
	CONF
}

# pg_up PORT NAME SETTINGS: start (or reuse) the instance in data dir NAME.
pg_up() {
	local port=$1 name=$2 settings=$3 bindir data
	bindir=$(pg_bindir)
	if [ -z "$bindir" ]; then
		need_root_install postgresql postgres
		bindir=$(pg_bindir)
	fi
	if "$bindir/pg_isready" -q -h 127.0.0.1 -p "$port"; then
		log "postgres already running on port $port"
		return
	fi
	data=$(pg_data_dir "$name")
	if as_pg_user "'$bindir/pg_ctl' -D '$data' status" >/dev/null 2>&1; then
		log "postgres already running from $data"
		return
	fi
	if [ ! -f "$data/PG_VERSION" ]; then
		log "initdb $data"
		mkdir -p "$data"
		[ "$(id -u)" -eq 0 ] && chown "$pg_user" "$data"
		as_pg_user "'$bindir/initdb' -D '$data' -U postgres --auth=trust --encoding=UTF8 --no-sync" >&2
		{
			cat <<-CONF
				listen_addresses = '127.0.0.1'
				port = $port
				unix_socket_directories = '$data'
				wal_level = logical
				max_replication_slots = 40
				max_wal_senders = 40
				max_connections = 300
				# A stats slot left inactive between runs keeps every database's
				# WAL on this shared server; past this it is invalidated, and the
				# consumer recreates it and recounts when it next starts.
				max_slot_wal_keep_size = 2GB
			CONF
			"$settings"
		} >>"$data/postgresql.conf"
	fi
	log "starting postgres ($name) on port $port"
	as_pg_user "'$bindir/pg_ctl' -D '$data' -l '$data/server.log' -w -t 60 start" >&2
}

# ensure_db PORT: the repeaterd database exists.
ensure_db() {
	local psql
	psql="$(pg_bindir)/psql -h 127.0.0.1 -p $1 -U postgres -d postgres"
	$psql -tAc "SELECT 1 FROM pg_database WHERE datname = 'repeaterd'" | grep -q 1 ||
		$psql -qc "CREATE DATABASE repeaterd" >&2
}

redis_up() {
	command -v redis-server >/dev/null || need_root_install redis-server redis-server
	if redis-cli -p "$redis_port" ping >/dev/null 2>&1; then
		log "redis already running on port $redis_port"
		return
	fi
	mkdir -p "$state/redis"
	log "starting redis on port $redis_port"
	redis-server --daemonize yes --bind 127.0.0.1 --port "$redis_port" \
		--databases 64 --maxmemory-policy noeviction \
		--save "" --appendonly no --dir "$state/redis" \
		--logfile "$state/redis/redis.log" --pidfile "$state/redis/redis.pid" >&2
	for _ in $(seq 50); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && return; sleep 0.1; done
	log "redis did not start; see $state/redis/redis.log"
	exit 1
}

# drill_tools makes sure the reliability drills find what they start of
# their own: redis-server (also run as `redis-server CONF --sentinel`, so
# the redis-sentinel package is not needed), redis-cli, and ip(8) for the
# network namespaces. Without them, and not root, the drills skip.
drill_tools() {
	local pkg_bin pkg bin
	for pkg_bin in redis-server:redis-server redis-tools:redis-cli iproute2:ip; do
		pkg=${pkg_bin%%:*} bin=${pkg_bin##*:}
		command -v "$bin" >/dev/null && continue
		if [ "$(id -u)" -eq 0 ]; then
			need_root_install "$pkg" "$bin"
		else
			log "no $bin: the drills that need it will skip (sudo apt-get install -y $pkg)"
		fi
	done
}

fast_url() { echo "postgres://postgres@127.0.0.1:$pg_port/repeaterd?sslmode=disable"; }
durable_url() { echo "postgres://postgres@127.0.0.1:$pg_durable_port/repeaterd?sslmode=disable"; }

print_env() {
	if [ "$durable" = 1 ]; then
		echo "export DATABASE_URL='$(durable_url)'"
		echo "export REPEATERD_BENCH_FSYNC_OFF_URL='$(fast_url)'"
	else
		echo "export DATABASE_URL='${DATABASE_URL:-$(fast_url)}'"
	fi
	echo "export REDIS_URL='${REDIS_URL:-redis://127.0.0.1:$redis_port/0}'"
}

up() {
	if [ "$durable" = 1 ]; then
		pg_up "$pg_port" pg fast_settings && ensure_db "$pg_port"
		pg_up "$pg_durable_port" pg-durable durable_settings && ensure_db "$pg_durable_port"
	elif [ -n "${DATABASE_URL:-}" ]; then
		log "using DATABASE_URL from the environment"
	else
		pg_up "$pg_port" pg fast_settings && ensure_db "$pg_port"
	fi
	[ -n "${REDIS_URL:-}" ] && log "using REDIS_URL from the environment" || redis_up
	drill_tools
	print_env
}

down() {
	local bindir data name
	bindir=$(pg_bindir)
	for name in pg pg-durable; do
		data=$(pg_data_dir "$name")
		if [ -n "$bindir" ] && [ -f "$data/PG_VERSION" ]; then
			as_pg_user "'$bindir/pg_ctl' -D '$data' -m fast stop" >&2 || true
		fi
	done
	redis-cli -p "$redis_port" shutdown nosave >/dev/null 2>&1 || true
	log "stopped"
}

cmd=${1:-up}
[ "${2:-}" = --durable ] && durable=1
case "$cmd" in
up) up ;;
down) down ;;
env) print_env ;;
*) echo "usage: $0 up|down|env [--durable]" >&2; exit 2 ;;
esac
