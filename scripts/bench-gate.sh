#!/usr/bin/env bash
# Benchmark of the gate: 10,000 findings judged against a policy with 100 exceptions, count and
# score limits and a Rego rule, which must take at most 50 ms. Compares, on the same synthetic
# Trivy report, with what a user would otherwise run in CI: a `jq` filter that only checks a
# score threshold (no exceptions, VEX, counts or Rego). Not part of the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Release build: the budget is about the shipped binary, not a debug build. The bench exits 1
# when the evaluation is over budget.
output=$(GATE_BENCH_DIR="$work" cargo bench --quiet -p gantry-gates --bench gate)
echo "$output" | grep -v '^gantry_parse_evaluate_ms='
read -r gantry_median gantry_best < <(echo "$output" | sed -n 's/^gantry_parse_evaluate_ms=//p')

if ! command -v jq >/dev/null 2>&1; then
  echo "jq is not installed: no comparison (absolute figures above)"
  exit 0
fi
# The jq equivalent of the score threshold alone, timed over the same report, 15 runs.
filter='[.Results[].Vulnerabilities[] | select((.CVSS.nvd.V3Score // 0) >= 9.0)] | length'
times=()
for _ in $(seq 15); do
  start=$(date +%s%N)
  jq "$filter" "$work/report.json" >/dev/null
  end=$(date +%s%N)
  times+=($(( (end - start) / 1000 )))
done
sorted=$(printf '%s\n' "${times[@]}" | sort -n)
jq_median=$(echo "$sorted" | sed -n '8p' | awk '{ printf "%.1f", $1 / 1000 }')
jq_best=$(echo "$sorted" | head -1 | awk '{ printf "%.1f", $1 / 1000 }')
echo "jq threshold filter: median ${jq_median} ms, best ${jq_best} ms ($(jq "$filter" "$work/report.json") findings at or above 9.0)"
awk -v gm="$gantry_median" -v gb="$gantry_best" -v jm="$jq_median" -v jb="$jq_best" 'BEGIN {
  printf "ratio (gantry parse+evaluate / jq): median %.2fx (%.1f vs %.1f ms), best %.2fx (%.1f vs %.1f ms)\n",
    gm / jm, gm, jm, gb / jb, gb, jb
}'
