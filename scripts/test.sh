#!/usr/bin/env bash
# Runs every test of the workspace, installing what the tests need first if it is missing.
# Extra arguments go to `cargo nextest run` (e.g. a filter).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/test-deps.sh
exec cargo nextest run --workspace --no-fail-fast "$@"
