#!/usr/bin/env bash
# Executor overhead per no-op step on SQLite (median of ROUNDS rounds, default 5), and RSS
# with 10,000 queued promotions.
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo bench -p gantry-engine --bench executor "$@"
