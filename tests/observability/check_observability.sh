#!/usr/bin/env bash
# Lints kvserve's observability assets with promtool (Debian's prometheus package):
#   1. promtool check rules and promtool test rules on deploy/observability/kvserve-rules*.yml;
#   2. the Grafana dashboard: its structure, and every query parsed by promtool (the queries are
#      turned into recording rules, Grafana's $__rate_interval and variables substituted first);
#   3. a live scrape of the real server binary through promtool check metrics; every kvserve_
#      metric the rules and the dashboard use must be in it, and every kvserve_ series (but the
#      process-wide ones) must carry a `model` label.
#
#   tests/observability/check_observability.sh [BUILD_DIR]      (ctest passes it; default build/)
set -euo pipefail

src=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-$src/build}
obs=$src/deploy/observability
# Debian's python3: the image's pyenv python3 on PATH may differ; only the standard library is used.
python=/usr/bin/python3
command -v promtool >/dev/null || {
  echo "check_observability: promtool not found; run scripts/install-deps.sh test" >&2
  exit 1
}

work=$(mktemp -d)
server_pid=
cleanup() {
  if [[ -n $server_pid ]]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

echo "== promtool check rules"
promtool check rules "$obs/kvserve-rules.yml"

echo "== promtool test rules"
(cd "$obs" && promtool test rules kvserve-rules.test.yml)

echo "== dashboard"
"$python" - "$obs/kvserve-dashboard.json" "$work/dashboard-rules.json" <<'PY'
import json, re, sys

dashboard_path, rules_path = sys.argv[1:3]
with open(dashboard_path) as f:
    dash = json.load(f)
problems = []
for key in ("uid", "title", "schemaVersion", "panels", "templating"):
    if key not in dash:
        problems.append(f"missing top-level '{key}'")
variables = {v["name"]: v for v in dash.get("templating", {}).get("list", [])}
if variables.get("datasource", {}).get("type") != "datasource":
    problems.append("no 'datasource' variable of type datasource")
ids = set()
rules = []
for panel in dash.get("panels", []):
    pid = panel.get("id")
    where = f"panel {pid} '{panel.get('title')}'"
    if pid in ids:
        problems.append(f"{where}: duplicate id")
    ids.add(pid)
    grid = panel.get("gridPos", {})
    if not all(k in grid for k in "xywh") or grid["x"] + grid["w"] > 24:
        problems.append(f"{where}: bad gridPos {grid}")
    if panel.get("datasource", {}).get("uid") != "${datasource}":
        problems.append(f"{where}: datasource must be the ${{datasource}} variable, not a fixed uid")
    targets = panel.get("targets", [])
    if not targets:
        problems.append(f"{where}: no queries")
    for t in targets:
        expr = t.get("expr", "")
        if not expr:
            problems.append(f"{where}: target {t.get('refId')} has no expr")
            continue
        # Grafana's macros and variables, as Grafana would expand them.
        expr = (expr.replace("$__rate_interval", "5m").replace("$__interval", "1m")
                    .replace("$__range", "1h"))
        expr = re.sub(r"\$\{?(\w+)\}?", lambda m: ".*" if m.group(1) in variables else m.group(0), expr)
        if "$" in expr:
            problems.append(f"{where}: unknown variable in {expr}")
        rules.append({"record": f"dashboard:panel{pid}:{t.get('refId', 'X').lower()}", "expr": expr})
for v in variables.values():
    if v.get("type") == "query":
        query = v.get("query", {})
        query = query.get("query", "") if isinstance(query, dict) else query
        m = re.fullmatch(r"label_values\((.*),\s*\w+\)", query)
        if not m:
            problems.append(f"variable {v['name']}: not a label_values(selector, label) query")
        else:
            selector = re.sub(r"\$\{?(\w+)\}?", ".*", m.group(1))
            rules.append({"record": f"dashboard:variable:{v['name']}", "expr": selector})
if problems:
    print("\n".join("dashboard: " + p for p in problems), file=sys.stderr)
    sys.exit(1)
with open(rules_path, "w") as f:
    json.dump({"groups": [{"name": "dashboard", "rules": rules}]}, f, indent=1)
print(f"dashboard: {len(ids)} panels, {len(rules)} queries")
PY
promtool check rules "$work/dashboard-rules.json"

echo "== live scrape of build/server/kvserve"
server=$build/server/kvserve
cli=$build/tools/cli/kvserve-cli
[[ -x $server && -x $cli ]] || { echo "check_observability: build $server and $cli first" >&2; exit 1; }
OMP_WAIT_POLICY=PASSIVE "$server" --listen=127.0.0.1:0 --metrics-address=127.0.0.1:0 --http-address=127.0.0.1:0 --threads=1 \
  2>"$work/server.log" &
server_pid=$!
metrics_url=
for _ in $(seq 600); do
  metrics_url=$(grep -o 'metrics on http://127\.0\.0\.1:[0-9]*/metrics' "$work/server.log" |
                sed 's/^metrics on //' || true)
  [[ -n $metrics_url ]] && break
  kill -0 "$server_pid" 2>/dev/null || break
  sleep 0.1
done
[[ -n $metrics_url ]] || { echo "check_observability: no metrics line; log:" >&2; cat "$work/server.log" >&2; exit 1; }
grpc_port=$(grep -o 'listening on 127\.0\.0\.1:0 (port [0-9]*' "$work/server.log" | grep -o '[0-9]*$')
# Some traffic, so that histograms and counters have samples: a success, an invalid request and
# one for an unknown model (its failure is counted with model="").
"$cli" --target="127.0.0.1:$grpc_port" generate --prompt "Hello" --max-tokens 4 >/dev/null \
  2>"$work/cli.log" || { cat "$work/cli.log" >&2; exit 1; }
"$cli" --target="127.0.0.1:$grpc_port" generate --prompt "Hello" --max-tokens 0 >/dev/null 2>&1 || true
"$cli" --target="127.0.0.1:$grpc_port" generate --prompt "Hello" --model no-such-model \
  >/dev/null 2>&1 || true
"$python" -c 'import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=30).read().decode())' \
  "$metrics_url" >"$work/scrape.txt"
echo "scraped $(grep -c '^kvserve_' "$work/scrape.txt") kvserve_ samples from $metrics_url"
# promtool check metrics exits non-zero and names the problem (e.g. a counter without _total).
lint=$(promtool check metrics <"$work/scrape.txt" 2>&1) || { echo "$lint" >&2; exit 1; }
[[ -z $lint ]] || { echo "$lint" >&2; exit 1; }

"$python" - "$work/scrape.txt" "$obs/kvserve-rules.yml" "$obs/kvserve-dashboard.json" <<'PY'
import re, sys

scrape_path, *asset_paths = sys.argv[1:]
names = set()
problems = []
process_wide = {"kvserve_build_info", "kvserve_process_resident_memory_bytes",
                "kvserve_malformed_requests_total", "kvserve_stream_buffered_bytes",
                "kvserve_stream_idle_timeouts_total"}
for line in open(scrape_path):
    if line.startswith("#") or not line.strip():
        continue
    name = re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line).group(0)
    names.add(name)
    if name.startswith("kvserve_") and name not in process_wide and 'model="' not in line:
        problems.append(f"series without a model label: {line.strip()}")
for path in asset_paths:
    # Metric names only: not the middle part of a recording rule's level:metric:operation name.
    text = open(path).read()
    for used in sorted(set(re.findall(r"(?<![\w:])kvserve_[a-z0-9_]+(?![\w:])", text))):
        if used not in names:
            problems.append(f"{path}: {used} is not in the scrape")
if problems:
    print("\n".join(problems), file=sys.stderr)
    sys.exit(1)
print(f"every kvserve_ metric used by the rules and the dashboard is served ({len(names)} names)")
PY
echo "observability lint: OK"
