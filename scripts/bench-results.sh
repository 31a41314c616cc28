#!/usr/bin/env bash
# How fast lifesweep reads results back: builds a fixture database of 10,000 synthetic runs
# (steps x m_factor x d_factor x 100 seeds, 1% failed, 50 queued; written through the store
# API, no training) in a temporary directory, then times `lifesweep results` and the other
# read commands on it, best of 5. Goal: `results` answers in under a second.
# Usage: scripts/bench-results.sh [SEEDS]   (default 100 seeds = 10,000 runs)
set -euo pipefail
cd "$(dirname "$0")/.."
seeds="${1:-100}"

cargo build --release --quiet -p lifesweep
cargo build --release --quiet -p lifesweep-results --example fixture_db
target="$(cd "${CARGO_TARGET_DIR:-target}" && pwd)"
bin="$target/release/lifesweep"
fixture="$target/release/examples/fixture_db"

dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT
db="$dir/bench.db"
"$fixture" "$db" --seeds "$seeds" --queued 50

# Best wall time of 5 runs, in seconds.
best_of_5() {
    local best="" start end t
    for _ in 1 2 3 4 5; do
        start=$(date +%s%N)
        "$@" >/dev/null
        end=$(date +%s%N)
        t=$(( (end - start) / 1000000 ))
        if [[ -z "$best" || "$t" -lt "$best" ]]; then best="$t"; fi
    done
    printf '%d.%03d' $((best / 1000)) $((best % 1000))
}

runs=$("$bin" results --db "$db" --runs --format csv | tail -n +2 | wc -l)
echo "database: $runs runs in $db"
printf '%-70s %s\n' "command" "best of 5 (s)"
results_time=""
while IFS= read -r line; do
    read -r -a cmd <<<"$line"
    t=$(best_of_5 "$bin" "${cmd[@]}" --db "$db")
    [[ -z "$results_time" ]] && results_time="$t"
    printf '%-70s %s\n' "lifesweep ${cmd[*]}" "$t"
done <<EOF_COMMANDS
results
results --format json
results --sort success_probability:desc,steps --format csv
results --runs --format csv
status
export --format json
plot --out $dir/plots
report --out $dir/report
EOF_COMMANDS

if awk -v t="$results_time" 'BEGIN { exit !(t < 1.0) }'; then
    echo "goal: lifesweep results under 1 s on $runs runs: met ($results_time s)"
else
    echo "goal: lifesweep results under 1 s on $runs runs: MISSED ($results_time s)"
fi
