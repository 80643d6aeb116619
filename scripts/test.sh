#!/usr/bin/env bash
# Runs every test of the workspace, installing what the tests need first if it is missing.
# Extra arguments go to `cargo nextest run` (e.g. a filter).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/test-deps.sh
# PostgreSQL for the store and replica tests: 127.0.0.1:5432, or a throwaway server stopped
# when this script exits (so the tests are not exec'd: the exit trap must run).
source scripts/test-postgres.sh
use_test_postgres
status=0
cargo nextest run --workspace --no-fail-fast "$@" || status=$?
exit "$status"
