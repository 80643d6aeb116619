#!/usr/bin/env bash
# Webhook throughput: signed GitHub pushes against `gantry serve`, against a bare axum server
# that takes the body and answers 200 (benches/bare_webhook_server.rs), with the same load tool
# and settings in the same run: wrk, 64 connections, 2 threads, DURATION seconds each.
#
# Every request is the same real push payload (tests/fixtures/github/go-playground-webhooks/
# push.0.json: a push to refs/heads/master of binkkatal/sample_app), signed with the server's
# secret (X-Hub-Signature-256 computed once), with its own X-GitHub-Delivery id. The gantry
# config below has that repository as an app whose trigger matches the push (branch `master` ->
# environment `dev`, the quickstart's step DAG: resolve-artifact, retag, update-config, open-pr),
# so every delivery is parsed, planned and becomes a run; newer runs supersede queued ones, and
# the admitted one waits for the image CI never pushes. While the load goes on, intake yields to
# the endpoints (about a tenth of the time) and the backlog is processed as it eases; the runs
# line after each round shows how far it got.
#
# A second baseline, "checked", is the same axum server doing what any receiver must before it
# accepts a delivery — verify the signature over the body, check the body is JSON — with
# gantry's own functions, and storing nothing (benches/bare_webhook_server.rs --checked): it
# shows how much of the gap to the bare server those checks alone take on this machine.
#
# Each round runs the three servers in turn (bare, checked, gantry) and starts gantry on a fresh
# data directory. Printed: per round and as medians, requests/s and p99 latency of each, and
# gantry's share of the bare and the checked throughput. Targets: >= 50 % of the bare
# throughput, p99 <= 20 ms.
#
# Environment: ROUNDS (default 3), DURATION (seconds, default 10), CONNECTIONS (64), THREADS (2),
# KEEP=1 keeps the work dir. Installs wrk (Debian) when it is missing. Needs python3 and curl.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-2}
FIXTURE=tests/fixtures/github/go-playground-webhooks/push.0.json
SECRET=gantry-bench-secret

if ! command -v wrk >/dev/null 2>&1; then
  echo "installing wrk" >&2
  sudo=""; [[ $(id -u) -ne 0 ]] && sudo="sudo"
  $sudo apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends wrk >/dev/null
fi
for tool in python3 curl wrk; do
  command -v "$tool" >/dev/null || { echo "bench-webhooks: $tool is missing" >&2; exit 2; }
done

echo "building gantry and the bare server (release)..." >&2
artifacts=$(cargo build --quiet --release --bin gantry --bench bare_webhook_server --message-format=json)
executable() {
  python3 -c '
import json, sys
for line in sys.stdin:
    message = json.loads(line)
    if message.get("reason") == "compiler-artifact" and message["target"]["name"] == sys.argv[1] and message.get("executable"):
        print(message["executable"])
' "$1" <<<"$artifacts" | tail -n 1
}
GANTRY=$(executable gantry)
BARE=$(executable bare_webhook_server)
[[ -x $GANTRY && -x $BARE ]] || { echo "bench-webhooks: build produced no binaries" >&2; exit 2; }

work=$(mktemp -d)
server_pid=""
stop_server() {
  if [[ -n $server_pid ]]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
  fi
}
cleanup() {
  stop_server
  if [[ ${KEEP:-0} == 1 ]]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

# --- gantry's configuration: the fixture's repository, with a trigger its push matches --------
mkdir -p "$work/config"
cat >"$work/config/gantry.yaml" <<'EOF'
registries:
  - name: local
    url: oci-layout:registry
apps:
  - name: sample-app
    source_repo: binkkatal/sample_app
    registry: local
    repository: sample-app
    pipeline: default
environments:
  - name: dev
    order: 1
    config_repo: { url: repos/dev.git, branch: main, path: "apps/{app}/kustomization.yaml" }
    tag_template: "{env}-{version}"
  - name: staging
    order: 2
    after: [dev]
    config_repo: { url: repos/staging.git, branch: main, path: "apps/{app}/kustomization.yaml" }
    tag_template: "{env}-{version}"
pipelines:
  - name: default
    triggers:
      - on: branch
        pattern: master
        environment: dev
        artifact_tag: sha-{sha7}
        artifact_wait: 10m
    steps:
      - { name: resolve, kind: resolve-artifact }
      - { name: retag, kind: retag, needs: [resolve] }
      - { name: update-config, kind: update-config, needs: [resolve] }
      - { name: open-pr, kind: open-pr, needs: [retag, update-config] }
EOF
"$GANTRY" validate --config "$work/config" >/dev/null

# --- the load: one real push, signed once, a fresh delivery id per request ---------------------
signature=$(python3 -c '
import hashlib, hmac, sys
print("sha256=" + hmac.new(sys.argv[1].encode(), open(sys.argv[2], "rb").read(), hashlib.sha256).hexdigest())
' "$SECRET" "$FIXTURE")
cat >"$work/push.lua" <<EOF
-- Same request for both servers; X-GitHub-Delivery is <label>-<thread>-<n>. wrk builds one
-- request per thread before the load to see whether they vary, so a thread's first sent is n = 2.
local file = assert(io.open("$PWD/$FIXTURE", "rb"))
wrk.method = "POST"
wrk.body = file:read("*a")
file:close()
wrk.headers["Content-Type"] = "application/json"
wrk.headers["User-Agent"] = "GitHub-Hookshot/bench"
wrk.headers["X-GitHub-Event"] = "push"
wrk.headers["X-Hub-Signature-256"] = "$signature"

local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("thread_id", threads)
end

local label, sent = "run", 0
function init(args)
  label = args[1] or label
end

function request()
  sent = sent + 1
  wrk.headers["X-GitHub-Delivery"] = label .. "-" .. thread_id .. "-" .. sent
  return wrk.format()
end
EOF

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_until_up() { # port, log
  for _ in $(seq 400); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.05
  done
  echo "bench-webhooks: server did not come up on port $1" >&2
  cat "$2" >&2
  exit 1
}

# Runs wrk; prints "<requests/s> <p99 ms> <non-2xx responses> <requests>".
load() { # url, label, output file
  wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency -s "$work/push.lua" "$1" -- "$2" >"$3"
  python3 - "$3" <<'EOF'
import re, sys
text = open(sys.argv[1]).read()
rate = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
value, unit = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", text, re.M).groups()
p99 = float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
errors = re.search(r"Socket errors:.*", text)
total = int(re.search(r"(\d+) requests in", text).group(1))
print(f"{rate:.0f} {p99:.2f} {int(bad.group(1)) if bad else 0} {total}")
if errors:
    print(errors.group(0), file=sys.stderr)
EOF
}

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)  (cores: $(nproc))"
printf '%-6s %-7s %12s %10s %10s\n' round server "requests/s" "p99 ms" "non-2xx"
bare_rates=(); bare_p99s=(); checked_rates=(); checked_p99s=(); gantry_rates=(); gantry_p99s=()
# Runs the baseline server with the given arguments for one load; sets rate and p99.
baseline() { # label, server arguments...
  local label=$1 port
  shift
  port=$(free_port)
  "$BARE" "127.0.0.1:$port" "$@" >"$work/$label.log" 2>&1 &
  server_pid=$!
  wait_until_up "$port" "$work/$label.log"
  read -r rate p99 bad _ < <(load "http://127.0.0.1:$port/hooks/github" "$label" "$work/wrk-$label.txt")
  stop_server
  if [[ $bad != 0 ]]; then
    echo "bench-webhooks: the $label server answered $bad requests with an error status" >&2
    exit 1
  fi
}
for round in $(seq "$ROUNDS"); do
  # Bare axum, then the same with the signature and JSON checks.
  baseline "bare$round"
  printf '%-6s %-7s %12s %10s %10s\n' "$round" bare "$rate" "$p99" 0
  bare_rates+=("$rate"); bare_p99s+=("$p99")
  baseline "checked$round" --checked "$SECRET"
  printf '%-6s %-7s %12s %10s %10s\n' "$round" checked "$rate" "$p99" 0
  checked_rates+=("$rate"); checked_p99s+=("$p99")

  # gantry serve, fresh data directory.
  port=$(free_port)
  data="$work/data-$round"
  GANTRY_GITHUB_SECRET=$SECRET GANTRY_LOG=${GANTRY_LOG:-info,tower_http=warn,sqlx=warn} \
    "$GANTRY" serve --data-dir "$data" --config "$work/config" --listen "127.0.0.1:$port" \
    >"$work/gantry-$round.out" 2>"$work/gantry-$round.log" &
  server_pid=$!
  wait_until_up "$port" "$work/gantry-$round.log"
  read -r rate p99 bad total < <(load "http://127.0.0.1:$port/hooks/github" "gantry$round" "$work/wrk-gantry-$round.txt")
  printf '%-6s %-7s %12s %10s %10s\n' "$round" gantry "$rate" "$p99" "$bad"
  if [[ $bad != 0 ]]; then
    echo "bench-webhooks: gantry answered $bad requests with an error status; log: $work/gantry-$round.log" >&2
    KEEP=1
    exit 1
  fi
  gantry_rates+=("$rate"); gantry_p99s+=("$p99")
  # The first delivery of the round went the whole way: stored, parsed, matched, a run created.
  sleep 1
  status=$(curl -fsS "http://127.0.0.1:$port/api/deliveries/github/gantry$round-1-2" || echo "not found")
  runs=$(curl -fsS "http://127.0.0.1:$port/api/runs?limit=1000" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
  echo "       gantry answered 202 to $total deliveries; the first one: $status; runs: $runs (listing stops at 1000)"
  stop_server
  # The round's data (hundreds of MB) goes, so the next round does not share the machine with
  # its writeback.
  [[ ${KEEP:-0} == 1 ]] || rm -rf "$data"
done
echo "load average after:  $(cut -d' ' -f1-3 /proc/loadavg)"

python3 - "${bare_rates[*]}" "${bare_p99s[*]}" "${checked_rates[*]}" "${checked_p99s[*]}" "${gantry_rates[*]}" \
  "${gantry_p99s[*]}" <<'EOF'
import statistics, sys
bare_rates, bare_p99s, checked_rates, checked_p99s, gantry_rates, gantry_p99s = (
    [float(v) for v in arg.split()] for arg in sys.argv[1:]
)
ratios = [g / b for g, b in zip(gantry_rates, bare_rates)]
def spread(values, fmt):
    return f"median {fmt.format(statistics.median(values))} (min {fmt.format(min(values))}, max {fmt.format(max(values))})"
print(f"bare axum:    requests/s {spread(bare_rates, '{:.0f}')}, p99 ms {spread(bare_p99s, '{:.2f}')}")
print(f"checked axum: requests/s {spread(checked_rates, '{:.0f}')}, p99 ms {spread(checked_p99s, '{:.2f}')}")
print(f"gantry serve: requests/s {spread(gantry_rates, '{:.0f}')}, p99 ms {spread(gantry_p99s, '{:.2f}')}")
print(f"checked / bare throughput: {spread([c / b * 100 for c, b in zip(checked_rates, bare_rates)], '{:.0f} %')}")
print(f"gantry / checked throughput: {spread([g / c * 100 for g, c in zip(gantry_rates, checked_rates)], '{:.0f} %')}")
print(f"gantry / bare throughput: {spread([r * 100 for r in ratios], '{:.0f} %')}")
met = statistics.median(ratios) >= 0.5 and statistics.median(gantry_p99s) <= 20.0
print(f"targets (>= 50 % of bare, p99 <= 20 ms, medians): {'met' if met else 'NOT met'}")
ceiling = statistics.median([c / b * 100 for c, b in zip(checked_rates, bare_rates)])
if ceiling < 50:
    print(f"note: the checks alone leave {ceiling:.0f} % of the bare throughput on this machine; no receiver that verifies signatures and JSON reaches 50 % here")
EOF
