#!/usr/bin/env bash
# Validates docker-compose.yml and its demo overlay (there is no Docker
# engine here to run them) with `docker-compose config`, then checks in the
# resolved configuration what `config` alone cannot see:
#   - Grafana gets its dashboard where the provider looks for it, and its
#     provisioning where Grafana reads it; Prometheus its config and rules;
#   - every repeaterd service has a restart policy, a healthcheck and a
#     stop_grace_period of at least the drain timeout plus 5 s;
#     Postgres, Redis, Prometheus and Grafana restart too, and keep their
#     data in volumes;
#   - demo settings only in the overlay, and the overlay's equal to `make run`'s;
#   - no secret in docker-compose.yml itself (they come from the env file);
#   - Prometheus discovers every scraped role by its service name and port.
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
# The example env file stands in for the operator's repeaterd.env.
export REPEATERD_ENV_FILE=${REPEATERD_ENV_FILE:-repeaterd.env.example}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
docker-compose -f docker-compose.yml config >"$tmp/prod.yml"
docker-compose -f docker-compose.yml -f docker-compose.demo.yml config >"$tmp/demo.yml"
python3 - "$tmp/prod.yml" "$tmp/demo.yml" <<'PY'
import os, re, sys, yaml

prod = yaml.safe_load(open(sys.argv[1]))["services"]
demo = yaml.safe_load(open(sys.argv[2]))["services"]
errors = []
def fail(msg): errors.append(msg)

def seconds(d):
    total = 0.0
    for n, unit in re.findall(r"([\d.]+)(ms|us|h|m|s)", str(d)):
        total += float(n) * {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "us": 1e-6}[unit]
    return total

def mounts(svc):
    out = {}
    for v in svc.get("volumes", []):
        if isinstance(v, str):
            parts = v.split(":")
            v = {"source": parts[0], "target": parts[1], "type": "bind" if parts[0].startswith((".", "/")) else "volume"}
        out[v["target"]] = v
    return out

# Grafana: the provider's path holds the dashboard; provisioning where Grafana reads it.
provider = yaml.safe_load(open("dashboards/grafana/provisioning/dashboards/repeaterd.yml"))
path = provider["providers"][0]["options"]["path"]
g = mounts(prod["grafana"])
want = path.rstrip("/") + "/repeaterd.json"
m = g.get(want)
if not m or not m["source"].endswith("dashboards/grafana/repeaterd.json") or not os.path.isfile(m["source"]):
    fail(f"grafana: the provider reads {path}, but repeaterd.json is not mounted at {want} (mounts: {sorted(g)})")
p = g.get("/etc/grafana/provisioning")
if not p or not all(os.path.isdir(os.path.join(p["source"], d)) for d in ("dashboards", "datasources")):
    fail("grafana: dashboards/grafana/provisioning (dashboards/, datasources/) is not mounted at /etc/grafana/provisioning")
if g.get("/var/lib/grafana", {}).get("type") != "volume":
    fail("grafana: /var/lib/grafana is not a volume")

# Prometheus: its config, the rules beside it, its data in a volume.
pm = mounts(prod["prometheus"])
for target, src in {"/etc/prometheus/prometheus.yml": "dashboards/prometheus.yml",
                    "/etc/prometheus/alerts.yml": "dashboards/alerts.yml"}.items():
    if not pm.get(target) or not pm[target]["source"].endswith(src):
        fail(f"prometheus: {src} is not mounted at {target}")
if pm.get("/prometheus", {}).get("type") != "volume":
    fail("prometheus: /prometheus is not a volume")

# Restart policies, healthchecks, grace periods.
roles = [n for n, s in prod.items() if s.get("image") == "repeaterd:local" and n != "migrate"]
for name in roles + ["postgres", "redis", "prometheus", "grafana"]:
    if prod[name].get("restart") not in ("always", "unless-stopped"):
        fail(f"{name}: no restart policy")
for name in roles:
    s = prod[name]
    env = s.get("environment", {})
    drain = seconds(env.get("REPEATERD_DRAIN_TIMEOUT", "20s"))
    if seconds(s.get("stop_grace_period", "10s")) < drain + 5:
        fail(f"{name}: stop_grace_period {s.get('stop_grace_period', '10s (default)')} < drain {drain:g}s + 5s")
    if "repeaterd" not in " ".join(s.get("healthcheck", {}).get("test", [])):
        fail(f"{name}: no `repeaterd healthcheck` healthcheck")
    for k in ("REPEATERD_ALLOW_PRIVATE_TARGETS", "REPEATERD_BACKOFF_MIN", "REPEATERD_BACKOFF_MAX"):
        if k in env:
            fail(f"{name}: demo setting {k} in docker-compose.yml (it belongs in docker-compose.demo.yml)")
if "demo" in prod:
    fail("docker-compose.yml runs the demo workload; it belongs in docker-compose.demo.yml")

# The overlay is the demo of `make run`, with its settings.
make = open("Makefile").read()
if "demo" not in demo:
    fail("docker-compose.demo.yml adds no demo service")
for k, default in (("REPEATERD_BACKOFF_MIN", None), ("REPEATERD_BACKOFF_MAX", None)):
    mk = re.search(k + r"=\$\$\{" + k + r":-([^}]+)\}", make)
    for name in roles + ["demo"]:
        got = demo.get(name, {}).get("environment", {}).get(k)
        if not mk or got != mk.group(1):
            fail(f"demo overlay: {name} has {k}={got}, make run uses {mk.group(1) if mk else '?'}")
for name in roles + ["demo"]:
    if demo.get(name, {}).get("environment", {}).get("REPEATERD_ALLOW_PRIVATE_TARGETS") != "true":
        fail(f"demo overlay: {name} does not allow private targets, as make run does")

# No secret in the compose file itself.
raw = open("docker-compose.yml").read()
for k in ("POSTGRES_PASSWORD", "DATABASE_URL", "REPEATERD_API_TOKEN", "GF_SECURITY_ADMIN_PASSWORD"):
    if re.search(r"^\s*" + k + r"\s*:", raw, re.M):
        fail(f"docker-compose.yml sets {k}; secrets come from the env file")

# Prometheus finds each role it scrapes by service name, on the port it serves.
promcfg = yaml.safe_load(open("dashboards/prometheus.yml"))
scraped = set()
for job in promcfg["scrape_configs"]:
    for sd in job.get("dns_sd_configs", []):
        for n in sd["names"]:
            scraped.add(n)
            env = prod.get(n, {}).get("environment", {})
            addr = env.get("REPEATERD_METRICS_ADDR") or env.get("REPEATERD_HTTP_ADDR", "")
            if n not in prod:
                fail(f"prometheus.yml: {n} is no compose service")
            elif not addr.endswith(f":{sd['port']}"):
                fail(f"prometheus.yml: scrapes {n} on {sd['port']}, it serves /metrics on {addr or '?'}")
for name in roles:
    if name not in scraped:
        fail(f"prometheus.yml: role {name} is not scraped")

if errors:
    print("check-compose:\n  " + "\n  ".join(errors), file=sys.stderr)
    sys.exit(1)
print(f"check-compose: {len(roles)} roles; grafana dashboards at {path}; prometheus discovers {', '.join(sorted(scraped))}")
PY
echo "check-compose: docker-compose.yml and docker-compose.demo.yml are valid"
