#!/bin/sh
# fmnist.sh — Fashion-MNIST training speed: magna's examples against every PyTorch on this machine, one run,
# one table per model (the seed's MLP and CNN), samples/s of the training loop and peak memory.
#
#   bench/fmnist.sh [--epochs N] [--only mlp|cnn] [--repeat R]
#
# --repeat R runs every configuration R times, round-robin (all of them once, then again), and the table shows
# each one's median samples/s with its range: on a shared machine one run can be off by 1.5x either way.
# Builds build/fmnist_mlp and build/fmnist_cnn if needed (BUILD_DIR overrides the folder) and runs each for
# --epochs (default 1) under /usr/bin/time -v, then bench/torch_fmnist.py under each PyTorch it finds:
#   torch-debian  Debian's python3-torch (apt-get install python3-torch), through /usr/bin/python3
#   torch-pip     pip's torch from PyPI, in the virtual environment .venv at the repository root
# each in float32 and, on a CPU with avx512_bf16 or AMX, with torch.autocast("cpu", dtype=torch.bfloat16).
# A missing peer shows as "not installed".
#
# samples/s: training images over the seconds of the training epochs alone (no data loading, no validation
# or test pass), as each program reports it on its key=value line. Peak memory: "Maximum resident set size"
# of the whole process (data, model, and for PyTorch the interpreter and library). Test accuracy after the
# epochs is shown to make sure every program learned the same thing.
#
# Threads: MAGNA_THREADS (default 2) for magna and for each PyTorch alike. Debian's torch links Debian's
# OpenBLAS 0.3.21, which does not recognise AMD Zen 4/5 and falls back to its AVX2 kernels unless
# OPENBLAS_CORETYPE=SkylakeX is set before it loads; on a CPU with AVX-512 this script sets it for the
# PyTorch runs (magna sets it for itself). Never run this while something else builds or benchmarks: the
# machine has two cores.
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-$root/build}
out=$build/bench_fmnist_out
epochs=1
models="mlp cnn"
repeat=1
while [ $# -gt 0 ]; do
    case "$1" in
        --epochs) epochs=$2; shift 2 ;;
        --only) models=$2; shift 2 ;;
        --repeat) repeat=$2; shift 2 ;;
        *) echo "usage: bench/fmnist.sh [--epochs N] [--only mlp|cnn] [--repeat R]" >&2; exit 2 ;;
    esac
done

case "$repeat" in
    '' | *[!0-9]* | 0) echo "$(basename "$0"): --repeat takes a count of rounds, 1 or more (got '$repeat')" >&2; exit 2 ;;
esac
threads=${MAGNA_THREADS:-2}
export MAGNA_THREADS="$threads"

if [ ! -f "$build/CMakeCache.txt" ]; then
    cmake -S "$root" -B "$build" >/dev/null
fi
cmake --build "$build" --target fmnist_mlp fmnist_cnn -j2 >/dev/null
mkdir -p "$out"
rm -f "$out"/*.log "$out"/*.rates

. "$root/bench/peers.sh"
[ "$repeat" -gt 1 ] && rate_key=samples_per_s

echo "== $(date -u '+%Y-%m-%d %H:%M:%S UTC') | $(lscpu | sed -n 's/^Model name: *//p') | $threads threads" \
    "| $epochs epoch(s) | OPENBLAS_CORETYPE for torch: ${coretype:-unset}"

for round in $(seq "$repeat"); do
for model in $models; do
    timed "magna_$model" "$build/fmnist_$model" --epochs "$epochs" --threads "$threads"
    # magna's bf16 mixed precision (the CNN's convolutions through oneDNN), where torch gets its bf16 row too
    if [ "$model" = cnn ] && [ -n "$bf16" ]; then
        timed "magna_bf16_$model" "$build/fmnist_$model" --epochs "$epochs" --threads "$threads" --bf16
    fi
    for peer in torch-debian torch-pip; do
        py=$(peer_python "$peer")
        if ! have_torch "$py"; then
            echo "$peer: not installed ($py cannot import torch)" >"$out/${peer}_$model.log"
            continue
        fi
        for precision in f32 bf16; do
            [ "$precision" = bf16 ] && [ -z "$bf16" ] && continue
            flag=""
            [ "$precision" = bf16 ] && flag=--bf16
            # shellcheck disable=SC2086 # flag is empty or one word
            timed "${peer}_${precision}_$model" env ${coretype:+OPENBLAS_CORETYPE=$coretype} "$py" \
                "$root/bench/torch_fmnist.py" --model "$model" --epochs "$epochs" --label "$peer" $flag
        done
    done
done
done

# One Markdown table per model from the logs: each program's last key=value line and time's peak RSS.
for model in $models; do
    echo
    echo "### Fashion-MNIST $model, $epochs epoch(s), batch 64, Adam 1e-3, $threads threads, $repeat round(s)"
    echo
    echo "| configuration | samples/s | vs best | training s | test acc | peak RSS MiB |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: |"
    table "$model" samples_per_s seconds test_acc
done | tee "$out/table.md"
