#!/bin/sh
# lm.sh — character language models: magna's char_lstm and char_gpt against every PyTorch on this machine, in
# one run: training tokens/s, validation loss (nats/char) after the same steps, and peak memory.
#
#   bench/lm.sh [--steps N] [--only lstm|gpt] [--peers "torch-debian torch-pip"] [--precisions "f32 bf16"] [--repeat R]
#
# --repeat R runs every configuration R times, round-robin, and the table shows each one's median tokens/s with
# its range (the other columns are the last round's).
# The issue's settings (context 128, batch 32; LSTM 64/256 Adam 2e-3; GPT 4 layers, 4 heads, d 128, AdamW
# 1e-3 wd 0.1) on the fortunes corpus split 90/10 by position. --steps defaults to 1500, the issue's run;
# a smaller number measures speed in less time (the validation loss then means less). The validation pass
# uses the first 256 windows (32k characters) for every program alike, to keep the run short.
#   torch-debian  Debian's python3-torch, through /usr/bin/python3
#   torch-pip     pip's torch in .venv at the repository root
# each in float32 and, on a CPU with avx512_bf16 or AMX, with torch.autocast("cpu", dtype=torch.bfloat16).
# Threads: MAGNA_THREADS (default 2) for every program. Never run this while something else builds or
# benchmarks: the machine has two cores.
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-$root/build}
out=$build/bench_lm_out
steps=1500
models="lstm gpt"
peers="torch-debian torch-pip"
precisions="f32 bf16"
repeat=1
while [ $# -gt 0 ]; do
    case "$1" in
        --steps) steps=$2; shift 2 ;;
        --only) models=$2; shift 2 ;;
        --peers) peers=$2; shift 2 ;;
        --precisions) precisions=$2; shift 2 ;;
        --repeat) repeat=$2; shift 2 ;;
        *) echo "usage: bench/lm.sh [--steps N] [--only lstm|gpt] [--peers LIST] [--precisions LIST] [--repeat R]" >&2; exit 2 ;;
    esac
done
windows=256

case "$repeat" in
    '' | *[!0-9]* | 0) echo "$(basename "$0"): --repeat takes a count of rounds, 1 or more (got '$repeat')" >&2; exit 2 ;;
esac
threads=${MAGNA_THREADS:-2}
export MAGNA_THREADS="$threads"
if [ ! -f "$build/CMakeCache.txt" ]; then
    cmake -S "$root" -B "$build" >/dev/null
fi
cmake --build "$build" --target char_lstm char_gpt -j2 >/dev/null
mkdir -p "$out"
rm -f "$out"/*.log "$out"/*.rates

. "$root/bench/peers.sh"
[ "$repeat" -gt 1 ] && rate_key=tokens_per_s

echo "== $(date -u '+%Y-%m-%d %H:%M:%S UTC') | $(lscpu | sed -n 's/^Model name: *//p') | $threads threads" \
    "| $steps steps | OPENBLAS_CORETYPE for torch: ${coretype:-unset}"

for round in $(seq "$repeat"); do
for model in $models; do
    timed "magna_$model" "$build/char_$model" --steps "$steps" --threads "$threads" --eval-windows "$windows" \
        --sample 200
    # magna's bf16 mixed precision (the dense products on oneDNN), where torch gets its bf16 row too
    if [ -n "$bf16" ] && echo "$precisions" | grep -q bf16; then
        timed "magna_bf16_$model" "$build/char_$model" --steps "$steps" --threads "$threads" \
            --eval-windows "$windows" --sample 200 --bf16
    fi
    for peer in $peers; do
        py=$(peer_python "$peer")
        if ! have_torch "$py"; then
            echo "$peer: not installed ($py cannot import torch)" >"$out/${peer}_$model.log"
            continue
        fi
        for precision in $precisions; do
            [ "$precision" = bf16 ] && [ -z "$bf16" ] && continue
            flag=""
            [ "$precision" = bf16 ] && flag=--bf16
            # shellcheck disable=SC2086 # flag is empty or one word
            timed "${peer}_${precision}_$model" env ${coretype:+OPENBLAS_CORETYPE=$coretype} "$py" \
                "$root/bench/torch_lm.py" --model "$model" --steps "$steps" --eval-windows "$windows" \
                --label "$peer" $flag
        done
    done
done
done

for model in $models; do
    echo
    echo "### char-$model, $steps steps, context 128, batch 32, $threads threads, $repeat round(s)"
    echo
    echo "| configuration | tokens/s | vs best | training s | val loss | peak RSS MiB |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: |"
    table "$model" tokens_per_s seconds val_loss
done | tee "$out/table.md"
