#!/usr/bin/env bash
# Prints the path of a usable headless Chromium for the dashboard's browser
# test (dashboards/console/), installing the Debian package `chromium`
# when it is missing and we run as root. Without root it says what to
# install and exits non-zero.
#
#   export REPEATERD_CHROMIUM="$(scripts/chromium.sh)"
#
# REPEATERD_CHROMIUM already set to an executable is used as it is. Logs go
# to stderr so the command substitution above captures only the path.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
state=${REPEATERD_SERVICES_DIR:-$root/.services}

log() { echo "chromium: $*" >&2; }

# usable succeeds when $1 is an executable that answers --version: a snap
# stub (Ubuntu's chromium-browser without snapd) fails here.
usable() {
	[ -n "$1" ] && [ -x "$1" ] && "$1" --version >/dev/null 2>&1
}

find_chromium() {
	local c
	for c in "${REPEATERD_CHROMIUM:-}" /usr/bin/chromium "$(command -v chromium 2>/dev/null || true)"; do
		if usable "$c"; then
			echo "$c"
			return 0
		fi
	done
	return 1
}

if find_chromium; then
	exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
	log "no usable chromium found; install it with: sudo apt-get install -y --no-install-recommends chromium"
	log "(or set REPEATERD_CHROMIUM to a Chromium or Chrome binary)"
	exit 1
fi

log "installing the Debian package chromium"
. "$root/scripts/apt.sh"
apt_install chromium

if find_chromium; then
	exit 0
fi
log "chromium was installed but /usr/bin/chromium --version fails"
exit 1
