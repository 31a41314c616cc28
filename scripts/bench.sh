#!/usr/bin/env bash
# lifesweep's training speed next to our own PyTorch implementation of the same step, one
# compute thread each, and the fixed costs of a run. Prints a markdown table (the one in
# docs/performance.md).
#
#     scripts/bench.sh [--repeats N] [--seconds S] [--skip-pytorch] [--skip-fused]
#
# - Per batch (board generation + forward + loss + backward + Adam), steps {1, 3} x
#   m_factor {1, 5, 20}, batch 128, 10x10 boards, sigmoid + LeakyReLU: the minimum and the
#   median over N repeats of about S seconds each, wall time; CPU time per batch too (robust
#   when other processes share the cores: the wall-time ratio is the one that counts).
# - Fixed costs: process start to the end of the first batch; evaluation of 1000 5x5 boards;
#   a whole `lifesweep run` of a one-job, one-batch sweep (database created, job submitted,
#   worker process started, network built, one batch, evaluation, result written).
# - Fused seeds: runs per hour of K=8 seeds of steps 1 m_factor 5, 2000 batches, trained one
#   after the other and fused into one call.
#
# The PyTorch side (scripts/bench/pytorch_reference.py) installs torch into
# scripts/bench/.venv on first use (about 3 GB from PyPI).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

REPEATS=5
SECONDS_PER_REPEAT=1.0
SKIP_PYTORCH=0
SKIP_FUSED=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --repeats) REPEATS="$2"; shift 2 ;;
        --seconds) SECONDS_PER_REPEAT="$2"; shift 2 ;;
        --skip-pytorch) SKIP_PYTORCH=1; shift ;;
        --skip-fused) SKIP_FUSED=1; shift ;;
        *) echo "bench.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done

export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 RAYON_NUM_THREADS=1
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT

echo "building (release)..." >&2
cargo build --release --quiet -p lifesweep-train --example bench
cargo build --release --quiet -p lifesweep
BENCH="$TARGET/release/examples/bench"
LIFESWEEP="$TARGET/release/lifesweep"

PYTHON=python3
if [[ $SKIP_PYTORCH == 0 ]]; then
    if [[ ! -x scripts/bench/.venv/bin/python ]]; then
        # first use: the script creates the venv and installs torch
        python3 scripts/bench/pytorch_reference.py first-batch --cell 1x1 >/dev/null
    fi
    PYTHON=scripts/bench/.venv/bin/python
fi

echo "per-batch times, lifesweep..." >&2
"$BENCH" batch --repeats "$REPEATS" --seconds "$SECONDS_PER_REPEAT" > "$OUT/rust_batch.jsonl"
if [[ $SKIP_PYTORCH == 0 ]]; then
    echo "per-batch times, pytorch..." >&2
    "$PYTHON" scripts/bench/pytorch_reference.py batch --repeats "$REPEATS" \
        --seconds "$SECONDS_PER_REPEAT" > "$OUT/torch_batch.jsonl"
fi

# process start to first batch: the caller's clock before exec, the program's after batch 1
first_batch() {
    local best=""
    for _ in 1 2 3; do
        local start end
        start=$(date +%s%N)
        end=$("$@" | sed -n 's/.*"epoch_ns": *\([0-9]*\).*/\1/p')
        local ms=$(( (end - start) / 1000000 ))
        if [[ -z $best || $ms -lt $best ]]; then best=$ms; fi
    done
    echo "$best"
}
echo "fixed costs..." >&2
RUST_FIRST=$(first_batch "$BENCH" first-batch --cell 1x1)
"$BENCH" eval --cell 1x1 --repeats "$REPEATS" > "$OUT/rust_eval.jsonl"
TORCH_FIRST=""
if [[ $SKIP_PYTORCH == 0 ]]; then
    TORCH_FIRST=$(first_batch "$PYTHON" scripts/bench/pytorch_reference.py first-batch --cell 1x1)
    "$PYTHON" scripts/bench/pytorch_reference.py eval --cell 1x1 --repeats "$REPEATS" \
        > "$OUT/torch_eval.jsonl"
fi

# a whole one-job sweep through the real CLI
cat > "$OUT/one.toml" <<'EOF'
[sweep]
name = "bench-one"
[train]
steps = 1
m_factor = 1
use_sigmoid = true
activation = "LeakyReLU"
batch_size = 128
batches = 1
[eval]
boards = 1000
board_size = 5
EOF
RUN_BEST=""
for i in 1 2 3; do
    start=$(date +%s%N)
    "$LIFESWEEP" --quiet run "$OUT/one.toml" --db "$OUT/run$i.db" --workers 1 --format json \
        > /dev/null
    ms=$(( ($(date +%s%N) - start) / 1000000 ))
    if [[ -z $RUN_BEST || $ms -lt $RUN_BEST ]]; then RUN_BEST=$ms; fi
done

# the marginal cost of one more run in a sweep: 21 one-batch runs minus 1, per run
sweep_ms() { # config, extra flags...
    local config="$1"; shift
    local best=""
    for i in 1 2; do
        local start ms
        start=$(date +%s%N)
        "$LIFESWEEP" --quiet run "$config" --db "$OUT/sweep$RANDOM$i.db" --workers 1 --format json \
            "$@" > /dev/null
        ms=$(( ($(date +%s%N) - start) / 1000000 ))
        if [[ -z $best || $ms -lt $best ]]; then best=$ms; fi
    done
    echo "$best"
}
sed -e 's/name = "bench-one"/name = "bench-many"/' "$OUT/one.toml" > "$OUT/many.toml"
printf '[grid]\nseed = { from = 1, to = 21 }\n' >> "$OUT/many.toml"
MANY_MS=$(sweep_ms "$OUT/many.toml")

if [[ $SKIP_FUSED == 0 ]]; then
    echo "fused seeds..." >&2
    "$BENCH" fused --cell 1x5 --k 8 --batches 2000 > "$OUT/fused.jsonl"
    cat > "$OUT/fused.toml" <<'EOF'
[sweep]
name = "bench-fused"
[grid]
seed = { from = 1, to = 8 }
[train]
steps = 1
m_factor = 5
use_sigmoid = true
activation = "LeakyReLU"
batch_size = 128
batches = 2000
[eval]
boards = 1000
board_size = 5
EOF
    CLI_UNFUSED_MS=$(sweep_ms "$OUT/fused.toml" --fuse-seeds 1)
    CLI_FUSED_MS=$(sweep_ms "$OUT/fused.toml" --fuse-seeds 8)
else
    : > "$OUT/fused.jsonl"
    CLI_UNFUSED_MS=""; CLI_FUSED_MS=""
fi

python3 - "$OUT" "$RUST_FIRST" "${TORCH_FIRST:-}" "$RUN_BEST" "$REPEATS" "$SECONDS_PER_REPEAT" \
    "$MANY_MS" "$CLI_UNFUSED_MS" "$CLI_FUSED_MS" <<'PY'
import json, os, sys
out, rust_first, torch_first, run_ms, repeats, seconds, many_ms, unfused_ms, fused_ms = sys.argv[1:10]
per_run = f"{(int(many_ms) - int(run_ms)) / 20:.1f}"
def load(name):
    path = os.path.join(out, name)
    if not os.path.exists(path):
        return []
    return [json.loads(line) for line in open(path) if line.strip()]
rust = {(r["steps"], r["m_factor"]): r for r in load("rust_batch.jsonl")}
torch = {(r["steps"], r["m_factor"]): r for r in load("torch_batch.jsonl")}
print(f"Per batch: batch 128, 10x10 boards, sigmoid + LeakyReLU, one thread; min / median of "
      f"{repeats} repeats of ~{seconds} s, wall time; CPU time of the minimum run in brackets.\n")
print("| steps | m_factor | lifesweep ms | PyTorch ms | PyTorch / lifesweep | lifesweep GFLOP/s | board generation |")
print("|---|---|---|---|---|---|---|")
for key in sorted(rust):
    r = rust[key]
    t = torch.get(key)
    torch_text = f"{t['ms_min']:.3f} / {t['ms_median']:.3f} ({t['cpu_ms_min']:.3f})" if t else "-"
    ratio = f"{t['ms_min'] / r['ms_min']:.1f}x (median {t['ms_median'] / r['ms_median']:.1f}x)" if t else "-"
    data = f"{r['data_ms'] * 1e3:.1f} us ({100 * r['data_ms'] / r['ms_min']:.1f}%)"
    print(f"| {key[0]} | {key[1]} | {r['ms_min']:.3f} / {r['ms_median']:.3f} ({r['cpu_ms_min']:.3f}) "
          f"| {torch_text} | {ratio} | {r['gflops']:.1f} | {data} |")
re, te = load("rust_eval.jsonl"), load("torch_eval.jsonl")
print("\nFixed costs per run: best of 3; steps 1, m_factor 1.\n")
print("| | lifesweep | PyTorch |")
print("|---|---|---|")
print(f"| process start to end of first batch | {rust_first} ms | {torch_first + ' ms' if torch_first else '-'} |")
print(f"| evaluation of 1000 5x5 boards | {re[0]['ms_min']:.2f} ms | {str(round(te[0]['ms_min'], 2)) + ' ms' if te else '-'} |")
print(f"| whole `lifesweep run` of a one-job, one-batch sweep (new database, scheduler, worker process, result written) | {run_ms} ms | |")
print(f"| one more run in a sweep (claim, build, one batch, evaluation, result write): (21 one-batch runs ({many_ms} ms) - 1) / 20 | {per_run} ms | |")
fused = load("fused.jsonl")
if fused:
    f = fused[0]
    print(f"\nFused seeds: K = {f['k']}, steps {f['steps']}, m_factor {f['m_factor']}, {f['batches']} batches; "
          "the first two rows in one process, the others through the real CLI with one worker.\n")
    print("| | seconds for K runs | runs per hour |")
    print("|---|---|---|")
    print(f"| one after the other | {f['separate_s']:.2f} | {f['separate_runs_per_hour']:.0f} |")
    print(f"| fused (`train_and_evaluate_many`) | {f['fused_s']:.2f} | {f['fused_runs_per_hour']:.0f} |")
    if unfused_ms and fused_ms:
        k = f['k']
        print(f"| `lifesweep run`, 1 worker, `--fuse-seeds 1` | {int(unfused_ms) / 1000:.2f} | {k * 3600 * 1000 / int(unfused_ms):.0f} |")
        print(f"| `lifesweep run`, 1 worker, `--fuse-seeds {k}` | {int(fused_ms) / 1000:.2f} | {k * 3600 * 1000 / int(fused_ms):.0f} |")
PY
