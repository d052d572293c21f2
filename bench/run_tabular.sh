#!/bin/sh
# run_tabular.sh — the small-model training loops (housing MLP, digits MLP) in magna and in every PyTorch on
# this machine, in one run, one table.
#
#   bench/run_tabular.sh [repeats]
#
# Builds build/housing and build/digits if needed (BUILD_DIR overrides the folder) and runs each `repeats`
# times (default 3; the table takes the median ms/epoch), the first run also writing its split as JSON
# (--dump-split). Then bench/torch_tabular.py trains the same models on the same rows under each PyTorch
# it finds, `repeats` timed runs each:
#   torch-debian  Debian's python3-torch (apt-get install python3-torch), through /usr/bin/python3
#   torch-pip     pip's torch from PyPI, in the virtual environment .venv at the repository root
# and prints the joined table. A missing peer shows as "—".
#
# Settings (both sides): housing 13-64-1, MSE, Adam 1e-3, batch 32, 200 epochs; digits 64-128-64-10,
# cross-entropy, Adam 1e-3, batch 32, 30 epochs; the examples' default split seeds (housing 3, digits 42; the 21:10 table in RESULTS.md used housing split 42). ms/epoch is the training loop only.
# Threads: MAGNA_THREADS (default: all cores) for magna and for each PyTorch alike. On a CPU with AVX-512,
# OPENBLAS_CORETYPE=SkylakeX is set for the PyTorch runs (Debian's OpenBLAS 0.3.21 does not recognise Zen 4/5
# without it; magna sets it for itself). Never run this while something else builds or benchmarks.
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-$root/build}
out=$build/bench_tabular_out
repeats=${1:-3}

threads=${MAGNA_THREADS:-$(nproc)}
export MAGNA_THREADS="$threads"

if [ ! -f "$build/CMakeCache.txt" ]; then
    cmake -S "$root" -B "$build" >/dev/null
fi
cmake --build "$build" --target housing digits -j2 >/dev/null
mkdir -p "$out"
rm -f "$out"/*.json "$out"/*.txt

echo "== $(date -u '+%Y-%m-%d %H:%M:%S UTC') | $(lscpu | sed -n 's/^Model name: *//p') | $threads threads"
i=1
while [ "$i" -le "$repeats" ]; do
    dump_h="" dump_d=""
    if [ "$i" -eq 1 ]; then
        dump_h="--dump-split $out/housing_split.json"
        dump_d="--dump-split $out/digits_split.json"
    fi
    # shellcheck disable=SC2086 # the dump options are words by design
    "$build/housing" $dump_h >"$out/magna_housing_$i.txt"
    # shellcheck disable=SC2086
    "$build/digits" $dump_d >"$out/magna_digits_$i.txt"
    echo "magna run $i: housing $(tail -n 1 "$out/magna_housing_$i.txt")"
    echo "magna run $i: digits  $(tail -n 1 "$out/magna_digits_$i.txt")"
    i=$((i + 1))
done

. "$root/bench/peers.sh" # coretype, have_torch

peers=""
run_torch() { # label python
    label=$1
    py=$2
    if have_torch "$py"; then
        set -- "$root/bench/torch_tabular.py" run --label "$label" --json "$out/$label.json" --repeats "$repeats" \
            --housing-split "$out/housing_split.json" --digits-split "$out/digits_split.json"
        if [ -n "$coretype" ]; then
            OPENBLAS_CORETYPE=$coretype "$py" "$@"
        else
            "$py" "$@"
        fi
    else
        echo "$label: not installed ($py cannot import torch)"
    fi
    peers="$peers --peer $label=$out/$label.json"
}
run_torch torch-debian /usr/bin/python3
run_torch torch-pip "$root/.venv/bin/python"

echo
echo "ms per epoch of the training loop (median of $repeats runs); magna speed / best peer above 1: magna is faster"
py=python3
[ -x /usr/bin/python3 ] && py=/usr/bin/python3
# shellcheck disable=SC2086 # peers is a list of words by design
"$py" "$root/bench/torch_tabular.py" join --magna-housing "$out"/magna_housing_*.txt \
    --magna-digits "$out"/magna_digits_*.txt $peers | tee "$out/table.md"
