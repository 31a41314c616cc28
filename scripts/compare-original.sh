#!/usr/bin/env bash
# Runs the seed's reference points with lifesweep and prints them beside the original PyTorch
# script's numbers from SEED.md (training successes over seeds 1..10).
#
#   scripts/compare-original.sh [DB]      (default: target/compare-original.db)
set -euo pipefail
cd "$(dirname "$0")/.."
db=${1:-target/compare-original.db}
cargo build --release --quiet
bin=target/release/lifesweep
"$bin" run configs/reference-points.toml --db "$db" --quiet --format csv >/dev/null || status=$?
if [ "${status:-0}" -ne 0 ] && [ "${status:-0}" -ne 1 ]; then exit "$status"; fi

echo "lifesweep, seeds 1..20 (success probability with 95% Wilson interval):"
"$bin" results reference-points --db "$db" --group-by steps,m_factor --format table

echo
echo "lifesweep, seeds 1..10 only (the original's seeds):"
"$bin" results reference-points --db "$db" --group-by steps,m_factor --where 'seed<=10' --format table

cat <<'TABLE'

original PyTorch script, seeds 1..10 (SEED.md):
  steps 1 m_factor 1: 0/10
  steps 1 m_factor 2: 1/10
  steps 1 m_factor 5: 9/10
  steps 2 m_factor 5: 3/10
TABLE
