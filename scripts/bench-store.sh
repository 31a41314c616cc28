#!/usr/bin/env bash
# The store's overhead per job (claim + result write) on SQLite, with 1 and 8 worker processes
# on one database file in a temporary directory; jobs do no work. Goal: at most 5 ms per job.
# Options go to the benchmark, e.g. scripts/bench-store.sh --workers 1,8,32 --jobs 5000
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo run --release --quiet -p lifesweep-store --example claim_bench -- "$@"
