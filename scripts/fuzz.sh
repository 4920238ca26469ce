#!/usr/bin/env bash
# Runs every Go fuzz target briefly (FUZZTIME each, default 5s), found by
# name in the *_test.go files wherever they live: Retry-After and the SSRF
# guard (repeaters/), the API's cursors and JSON depth scan (dashboards/api/),
# domain and flag names and the truncator (store/).
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${FUZZTIME:-5s}
grep -rl --include='*_test.go' '^func Fuzz' . | xargs -n1 dirname | sort -u | while read -r pkg; do
	for target in $(grep -h '^func Fuzz' "$pkg"/*_test.go | sed 's/^func \(Fuzz[A-Za-z0-9_]*\).*/\1/'); do
		echo "fuzz: $pkg $target ($fuzztime)"
		go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" "$pkg" >/tmp/repeaterd-fuzz.log 2>&1 ||
			{ cat /tmp/repeaterd-fuzz.log; exit 1; }
	done
done
