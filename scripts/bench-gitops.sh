#!/usr/bin/env bash
# GitOps benchmark, in one run against the tools a user would otherwise use:
#   - update-and-push on a 5,000-app env repo with 300 commits of history: gantry's warm mirror
#     vs `git clone --depth 1` + edit + commit + push (target: <= 1 %);
#   - drift across 1,000 apps x 4 environments vs `git diff --no-index` over the same trees
#     (target: <= 1x).
# Prints both figures and their ratios. GANTRY_BENCH_PROFILE=dev skips the optimized build
# (quicker to start, slower gantry); GANTRY_BENCH_ROUNDS sets the number of timed rounds.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v git >/dev/null || { echo "bench-gitops: git is required" >&2; exit 1; }
profile=${GANTRY_BENCH_PROFILE:-bench}
exec cargo bench --profile "$profile" -p gantry-engine --bench gitops
