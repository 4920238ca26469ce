#!/usr/bin/env bash
# Checks the Prometheus alert rules and scrape config in dashboards/ and runs
# their unit tests:
#
#   scripts/promtool.sh
#
# promtool comes from the Debian package "prometheus". When it is missing it
# is installed if we are root (apt-get update at most once, shared with
# scripts/services.sh), else the command to install it is printed. The
# package's own Prometheus server (and any exporter) is kept from starting,
# and one the install started anyway is stopped: nothing is left listening.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
state=${REPEATERD_SERVICES_DIR:-$root/.services}

log() { echo "promtool.sh: $*" >&2; }

find_promtool() {
	command -v promtool 2>/dev/null && return
	[ -x /usr/bin/promtool ] && echo /usr/bin/promtool
}

has_candidate() {
	local out
	out=$(apt-cache policy prometheus 2>/dev/null || true)
	[[ $out =~ Candidate:\ [0-9] ]]
}

restore_policy() {
	if [ -n "$policy_backup" ]; then mv -f "$policy_backup" "$policy"; else rm -f "$policy"; fi
}

install_promtool() {
	if [ "$(id -u)" -ne 0 ]; then
		log "promtool is missing; install it with: sudo apt-get install -y --no-install-recommends prometheus"
		log "(or put promtool from https://prometheus.io/download/ on PATH)"
		exit 1
	fi
	if ! command -v apt-get >/dev/null; then
		log "promtool is missing and there is no apt-get: put promtool on PATH"
		exit 1
	fi
	if ! has_candidate && [ ! -f "$state/.apt-updated" ]; then
		log "apt-get update"
		mkdir -p "$state"
		DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 && touch "$state/.apt-updated" ||
			log "apt-get update failed"
	fi
	if ! has_candidate; then
		log "no installable 'prometheus' package (apt-cache policy prometheus): put promtool on PATH"
		exit 1
	fi

	# policy-rc.d exit 101 = "action forbidden": invoke-rc.d and
	# deb-systemd-invoke then start no service during the install. An existing
	# policy is put back afterwards.
	# Globals, not locals: the EXIT trap may run after this function returns.
	policy=/usr/sbin/policy-rc.d
	policy_backup=""
	local was_running
	was_running=$(pidof prometheus prometheus-node-exporter 2>/dev/null || true)
	if [ -e "$policy" ]; then
		policy_backup=$(mktemp)
		cp -p "$policy" "$policy_backup"
	fi
	trap restore_policy EXIT
	printf '#!/bin/sh\nexit 101\n' >"$policy"
	chmod 755 "$policy"

	log "installing the prometheus package (for promtool)"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >&2

	restore_policy
	trap - EXIT

	# Belt and braces: keep the services from starting at boot, and stop one
	# the install started anyway (only a process that was not running before).
	if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
		systemctl disable --now prometheus >/dev/null 2>&1 || true
	else
		update-rc.d prometheus disable >/dev/null 2>&1 || true
	fi
	local pid
	for pid in $(pidof prometheus 2>/dev/null || true); do
		case " $was_running " in
		*" $pid "*) ;;
		*)
			log "stopping the Prometheus server the package started (pid $pid)"
			kill "$pid" 2>/dev/null || true
			;;
		esac
	done
}

promtool=$(find_promtool || true)
if [ -z "$promtool" ]; then
	install_promtool
	promtool=$(find_promtool || true)
	[ -n "$promtool" ] || { log "promtool still not found after installing prometheus"; exit 1; }
fi

cd "$root"
{ "$promtool" --version 2>&1 || true; } | sed -n 1p >&2
set -x
"$promtool" check rules dashboards/alerts.yml
"$promtool" check config dashboards/prometheus.yml
"$promtool" test rules dashboards/alerts_test.yml
