#!/usr/bin/env bash
# Fuzzes the webhook parsers and verifiers: runs each cargo-fuzz target under fuzz/ for SECONDS
# (default 600), seeded with the real payloads under tests/fixtures/, and prints how many inputs
# each one executed. Exits non-zero, naming the saved input, if any target finds a crash.
#
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]   (targets: github_parse gitlab_parse signature_verify)
#
# cargo-fuzz needs `-Z` compiler flags; RUSTC_BOOTSTRAP=1 lets the pinned stable toolchain accept
# them, so no nightly toolchain is needed.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-600}
shift || true
targets=("$@")
((${#targets[@]})) || targets=(github_parse gitlab_parse signature_verify)

command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1

# The parse targets read their first byte as the event type, in the order of their
# EVENT_TYPES lists; a seed is that byte followed by a fixture body.
declare -A github_selector=(
  [push]=0 [ping]=1 [create]=2 [delete]=3 [pull_request]=4
  [package]=5 [registry_package]=6 [workflow_run]=7
)
declare -A gitlab_selector=([push]=0 [tag_push]=1 [merge_request]=2 [pipeline]=3)

write_seed() { # selector-byte source-file destination-file
  { printf "\\$(printf '%03o' "$1")"; cat "$2"; } >"$3"
}

seed() { # target corpus-dir
  local target=$1 corpus=$2 file kind
  mkdir -p "$corpus"
  case $target in
    github_parse)
      for file in tests/fixtures/github/*/*.json; do
        kind=$(basename "$file"); kind=${kind%%.*}
        write_seed "${github_selector[$kind]:-8}" "$file" "$corpus/$(basename "$(dirname "$file")")-$(basename "$file")"
      done ;;
    gitlab_parse)
      for file in tests/fixtures/gitlab/*/*.json; do
        kind=$(basename "$file"); kind=${kind%%.*}
        write_seed "${gitlab_selector[$kind]:-4}" "$file" "$corpus/$(basename "$(dirname "$file")")-$(basename "$file")"
      done ;;
    signature_verify)
      # A 26-byte secret, then a real body.
      for file in tests/fixtures/github/go-playground-webhooks/push.0.json tests/fixtures/gitlab/docs-examples/push.0.json; do
        { printf '\032'; printf "It's a Secret to Everybody"; cat "$file"; } >"$corpus/$(basename "$(dirname "$file")")-$(basename "$file")"
      done ;;
  esac
}

# Built once up front so the time each target is given goes to fuzzing, not compiling.
cargo fuzz build --fuzz-dir fuzz

status=0
summary=()
for target in "${targets[@]}"; do
  corpus=fuzz/corpus/$target
  seed "$target" "$corpus"
  log=fuzz/artifacts/$target.log
  mkdir -p "fuzz/artifacts/$target"
  echo "fuzzing $target for ${seconds}s (log: $log)" >&2
  if ! cargo fuzz run --fuzz-dir fuzz "$target" "$corpus" -- \
      -max_total_time="$seconds" -print_final_stats=1 -max_len=65536 -rss_limit_mb=2048 \
      -artifact_prefix="fuzz/artifacts/$target/" >"$log" 2>&1; then
    echo "$target: FAILED, see $log and fuzz/artifacts/$target/" >&2
    tail -n 30 "$log" >&2
    status=1
  fi
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
  summary+=("$target: ${execs:-?} execs in ${seconds}s (${rate:-?} exec/s)")
done
printf '%s\n' "${summary[@]}"
exit "$status"
