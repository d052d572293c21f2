#!/bin/sh
# run_kernels.sh — magna's kernel benchmark and every PyTorch on this machine, in one run, one table.
#
#   bench/run_kernels.sh [--quick]
#
# Builds build/bench_kernels if needed (BUILD_DIR overrides the folder), runs it, then runs
# bench/torch_kernels.py under each PyTorch it finds:
#   torch-debian  Debian's python3-torch (apt-get install python3-torch), through /usr/bin/python3
#   torch-pip     pip's torch from PyPI, in the virtual environment .venv at the repository root
# and prints the joined table (bench/join_kernels.py). A missing peer shows as "—".
#
# Threads: MAGNA_THREADS (default: all cores) for magna and for each PyTorch alike.
# Debian's torch links Debian's OpenBLAS 0.3.21, which does not recognise AMD Zen 4/5 and falls back to its
# AVX2 kernels unless OPENBLAS_CORETYPE=SkylakeX is set before it loads (magna sets it for itself at run
# time); on a CPU with AVX-512 this script sets it for the PyTorch runs too, so the peer is at its best.
# Never run this while something else builds or benchmarks: the machine has two cores.
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-$root/build}
out=$build/bench_kernels_out
quick=""
[ "${1:-}" = "--quick" ] && quick="--quick"

threads=${MAGNA_THREADS:-$(nproc)}
export MAGNA_THREADS="$threads"

if [ ! -f "$build/CMakeCache.txt" ]; then
    cmake -S "$root" -B "$build" >/dev/null
fi
cmake --build "$build" --target bench_kernels -j2 >/dev/null
mkdir -p "$out"
rm -f "$out"/*.json

echo "== $(date -u '+%Y-%m-%d %H:%M:%S UTC') | $(lscpu | sed -n 's/^Model name: *//p') | $threads threads"
"$build/bench_kernels" --json "$out/magna.json" $quick

. "$root/bench/peers.sh" # coretype, have_torch

peers=""
run_torch() { # label python
    label=$1
    py=$2
    if have_torch "$py"; then
        echo
        if [ -n "$coretype" ]; then
            OPENBLAS_CORETYPE=$coretype "$py" "$root/bench/torch_kernels.py" --label "$label" \
                --json "$out/$label.json" $quick
        else
            "$py" "$root/bench/torch_kernels.py" --label "$label" --json "$out/$label.json" $quick
        fi
    else
        echo
        echo "$label: not installed ($py cannot import torch)"
    fi
    peers="$peers $label=$out/$label.json"
}
run_torch torch-debian /usr/bin/python3
run_torch torch-pip "$root/.venv/bin/python"

echo
echo "GFLOP/s, medians; magna / best = magna's speed over the fastest peer (above 1: magna is faster)"
# shellcheck disable=SC2086 # peers is a list of words by design
python3 "$root/bench/join_kernels.py" "$out/magna.json" $peers | tee "$out/table.md"
