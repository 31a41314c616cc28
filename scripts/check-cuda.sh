#!/usr/bin/env bash
# Compiles lifesweep with `--features cuda` on a machine with no GPU and no CUDA toolkit, so that
# the GPU build is checked everywhere: nvcc, the CUDA headers and libraries come from the Python
# package index into a scratch directory; candle's kernels are compiled for CUDA_COMPUTE_CAP
# (default 90: H100/H200); the binary is linked against the real cuBLAS, cuRAND and NVRTC
# libraries and a stub of the driver library (libcuda, which only an NVIDIA driver provides).
#
#   bash scripts/check-cuda.sh            # scratch in $CHECK_CUDA_DIR or a new temporary directory
#
# Why CUDA 13: the CUDA 12 wheels (nvidia-cuda-nvcc-cu12) carry ptxas but not the nvcc driver;
# the CUDA 13 wheels (nvidia-cuda-nvcc, one nvidia/cu13 prefix for every package) carry all of
# it. 13.4 is the newest CUDA that candle's cudarc (0.19) knows. Not part of scripts/test.sh: it
# downloads about 1 GB and rebuilds the workspace (see the README's "Scaling out").
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

cuda_version=13.4.92
scratch=${CHECK_CUDA_DIR:-$(mktemp -d /tmp/lifesweep-check-cuda.XXXXXX)}
mkdir -p "$scratch"
export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}
started=$(date +%s)
step() { echo "check-cuda: $* ($(($(date +%s) - started)) s)"; }

step "scratch directory $scratch"
if [ ! -x "$scratch/venv/bin/pip" ]; then
    python3 -m venv "$scratch/venv"
fi
"$scratch/venv/bin/pip" install -q --disable-pip-version-check \
    "nvidia-cuda-nvcc==$cuda_version" "nvidia-cuda-crt==$cuda_version" "nvidia-nvvm==$cuda_version" \
    "nvidia-cuda-runtime==$cuda_version" "nvidia-cuda-nvrtc==$cuda_version" \
    "nvidia-cublas<14" "nvidia-curand<11" "nvidia-cuda-cccl<14"
cuda_root=$("$scratch/venv/bin/python" -c 'import nvidia, os; print(os.path.join(nvidia.__path__[0], "cu13"))')
step "CUDA $cuda_version installed in $cuda_root"
"$cuda_root/bin/nvcc" --version | tail -n 2

# The linker wants unversioned names (libcublas.so), which the wheels do not ship.
for library in cublas cublasLt curand nvrtc cudart; do
    versioned=$(find "$cuda_root/lib" -maxdepth 1 -name "lib$library.so.*" | sort | head -n 1)
    [ -n "$versioned" ] || { echo "check-cuda: lib$library.so.* missing in $cuda_root/lib" >&2; exit 2; }
    ln -sf "$(basename "$versioned")" "$cuda_root/lib/lib$library.so"
done

# A stub libcuda.so.1 with every driver function cudarc declares, for the link only (as the
# CUDA toolkit's lib/stubs/libcuda.so is): the driver itself comes with the GPU.
cargo fetch --locked --quiet
cudarc_version=$(awk '/^name = "cudarc"$/ { getline; gsub(/"/, "", $3); print $3 }' Cargo.lock)
cudarc_src=$(find "${CARGO_HOME:-$HOME/.cargo}/registry/src" -maxdepth 2 -type d -name "cudarc-$cudarc_version" | head -n 1)
[ -n "$cudarc_src" ] || { echo "check-cuda: cudarc $cudarc_version sources not found" >&2; exit 2; }
mkdir -p "$cuda_root/lib/stubs"
{
    grep -ohE '\bfn cu[A-Za-z0-9_]+\(' "$cudarc_src"/src/driver/sys/*.rs | sed -E 's/^fn //; s/\($//'
    grep -ohE 'link_name = "cu[A-Za-z0-9_]+"' "$cudarc_src"/src/driver/sys/*.rs | sed -E 's/.*"(.*)"/\1/'  || true
} | sort -u | awk '{ print "void " $1 "(void) {}" }' > "$scratch/libcuda-stub.c"
cc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$cuda_root/lib/stubs/libcuda.so.1" "$scratch/libcuda-stub.c"
ln -sf libcuda.so.1 "$cuda_root/lib/stubs/libcuda.so"
step "driver stub with $(wc -l < "$scratch/libcuda-stub.c") functions"

export CUDA_ROOT=$cuda_root CUDA_PATH=$cuda_root CUDA_HOME=$cuda_root
export PATH=$cuda_root/bin:$PATH
export LIBRARY_PATH=$cuda_root/lib:$cuda_root/lib/stubs${LIBRARY_PATH:+:$LIBRARY_PATH}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$repo/target/cuda}
step "cargo build --features cuda (CUDA_COMPUTE_CAP=$CUDA_COMPUTE_CAP, target $CARGO_TARGET_DIR)"
cargo build --locked --release -p lifesweep --features cuda

# The binary needs libcuda.so.1 to start at all (cudarc links it): with the stub it starts far
# enough to print its version. (Nothing here calls into the stub.)
export LD_LIBRARY_PATH=$cuda_root/lib:$cuda_root/lib/stubs
"$CARGO_TARGET_DIR/release/lifesweep" --version
step "done: the cuda build compiles and links"
