#!/usr/bin/env bash
# Validates docker-compose.yml (there is no Docker engine here to run it).
# Installs Debian's docker-compose when missing and running as root.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v docker-compose >/dev/null; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "check-compose: missing docker-compose; install it with: sudo apt-get install -y --no-install-recommends docker-compose" >&2
		exit 1
	fi
	echo "check-compose: installing docker-compose" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get -o DPkg::Lock::Timeout=300 update -qq >&2
	apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends docker-compose >&2
fi
REPEATERD_API_TOKEN=${REPEATERD_API_TOKEN:-compose-config-check} docker-compose -f docker-compose.yml config -q
echo "check-compose: docker-compose.yml is valid"
