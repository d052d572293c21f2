#!/bin/sh
# gpt2.sh — GPT-2 124M (models/gpt2-124m.ini) at T = 1024 on random tokens, on a GPU: magna (bf16 mixed precision,
# and float32) against the PyTorch on that machine (bench/torch_gpt2.py: bf16 autocast, scaled_dot_product_attention,
# fused AdamW; eager and torch.compile). Prints tokens/s (the median step after warm-up), MFU, GPU memory and the
# ratios, as a Markdown table to paste into bench/RESULTS.md; key=value figures in $OUT/summary.txt (gpu-check reads
# them). Without a GPU it says so and exits 1.
#
#   bench/gpt2.sh [--build-dir DIR] [--steps N] [--batch B] [--runs "magna_bf16 magna_f32 torch_eager torch_compile"]
#
# --build-dir: the CUDA build holding `magna` (default build-gpu, the one `make gpu-check` makes); --steps: timed
# steps of each bf16 run (default 30; magna's float32 run takes a third of them); --batch: default 64, the file's
# (a run that runs out of memory is retried once at half the batch, and its row says so).
# Timing: magna's is its own `step_ms_median` (each step's wall time up to the loss read back, the median after
# the first tenth of the steps); PyTorch's the median of --steps synchronised steps after 5 untimed ones (where
# torch.compile compiles). MFU: tokens/s x (6 N + 12 L T d) / the device's bf16 dense peak (torch_gpt2.py's
# table by device name: 989 TFLOP/s for an H100 SXM; "unknown" for a device it does not list).
# Memory: the GPU's used memory as nvidia-smi reports it, sampled every 100 ms, minus what was in use before
# the run — the same measure for both (it includes the CUDA context and what each allocator holds), and PyTorch's
# own torch.cuda.max_memory_allocated beside it. PYTHON: the interpreter with torch (default python3).
# Budget: each run has its own timeout (50 s, 40 s, 40 s, 110 s: torch.compile's compilation included), 240 s in
# all, the 4 minutes meant for an H100 (a retry at half the batch adds its run's again); nothing of it has run on
# a GPU yet.
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
build=$root/build-gpu
steps=30
batch=64
runs="magna_bf16 magna_f32 torch_eager torch_compile"
while [ $# -gt 0 ]; do
    case "$1" in
    --build-dir) build=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --batch) batch=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    *) echo "usage: bench/gpt2.sh [--build-dir DIR] [--steps N] [--batch B] [--runs LIST]" >&2; exit 2 ;;
    esac
done
case $build in /*) ;; *) build=$root/$build ;; esac
python=${PYTHON:-python3}
model=$root/models/gpt2-124m.ini
out=$build/bench_gpt2
if ! command -v nvidia-smi >/dev/null 2>&1; then
    echo "bench/gpt2.sh: no GPU here (no nvidia-smi, no NVIDIA driver): nothing measured"
    exit 1
fi
if ! gpus=$(nvidia-smi -L 2>&1) || ! echo "$gpus" | grep -q "^GPU "; then
    echo "bench/gpt2.sh: no GPU here (nvidia-smi -L: $(echo "$gpus" | head -1)): nothing measured"
    exit 1
fi
device=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
mkdir -p "$out"
rm -f "$out"/*.log "$out"/*.csv "$out"/*.mem "$out/summary.txt"
peak=$("$python" "$root/bench/torch_gpt2.py" --peak "$device" 2>/dev/null || echo unknown)
# the model's shape, from the file: FLOPs per token are 6 N + 12 L T d
key() { sed -n "s/^$1 *= *\([0-9]*\).*/\1/p" "$model" | head -1; }
L=$(key layers) T=$(key context) D=$(key d_model)
echo "== $(date -u '+%Y-%m-%d %H:%M UTC') | $device | bf16 peak ${peak} TFLOP/s | GPT-2 124M, T $T, batch $batch, $steps steps"

# mem_watch FILE: samples the GPU's used MiB every 100 ms into FILE until mem_stop
mem_watch() { nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 >"$1" 2>/dev/null & watcher=$!; }
mem_stop() { kill "$watcher" 2>/dev/null; wait "$watcher" 2>/dev/null; }
idle_mib() { nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits | head -1; }

# run NAME TIMEOUT_S BATCH: one run into $out/NAME.log, its used-memory samples into $out/NAME.mem
run() {
    name=$1 limit=$2 b=$3
    base=$(idle_mib)
    mem_watch "$out/$name.mem"
    echo "-- $name (batch $b)" >&2
    case $name in
    magna_bf16 | magna_f32)
        s=$steps fp32=""
        [ "$name" = magna_f32 ] && s=$(( (steps + 2) / 3 )) fp32=--fp32 # bf16 is the CUDA backend's default
        [ "$s" -lt 4 ] && s=4
        # shellcheck disable=SC2086 # fp32 is empty or one word
        timeout "$limit" "$build/magna" train "$model" --device cuda $fp32 --steps "$s" --batch "$b" \
            --out "$out/run_$name" --log-steps "$out/${name}_steps.csv" >"$out/$name.log" 2>&1 ;;
    torch_eager | torch_compile)
        flag=""
        [ "$name" = torch_compile ] && flag=--compile
        # shellcheck disable=SC2086 # flag is empty or one word
        timeout "$limit" "$python" "$root/bench/torch_gpt2.py" $flag --steps "$steps" --batch "$b" \
            --label "$name" >"$out/$name.log" 2>&1 ;;
    esac
    rc=$?
    mem_stop
    # no sample (a run shorter than nvidia-smi's start): "-"
    awk -v base="$base" '$1 ~ /^[0-9]+$/ && $1 + 0 > m { m = $1 + 0 }
        END { if (m == "" || base == "") print "-"; else printf "%.2f\n", (m - base) / 1024 }' "$out/$name.mem" \
        >"$out/$name.peak" 2>/dev/null || echo - >"$out/$name.peak"
    [ $rc -eq 124 ] && echo "(timed out after $limit s)" >>"$out/$name.log"
    return $rc
}

for name in $runs; do
    case $name in
    magna_bf16 | magna_f32)
        if [ ! -x "$build/magna" ]; then echo "no $build/magna: build with CUDA first" >"$out/$name.log"; continue; fi
        limit=50
        [ "$name" = magna_f32 ] && limit=40 ;;
    torch_eager) limit=40 ;;
    torch_compile) limit=110 ;;
    *) echo "bench/gpt2.sh: unknown run '$name'" >&2; exit 2 ;;
    esac
    used=$batch
    if ! run "$name" "$limit" "$batch" && grep -qi "out of memory\|status=oom" "$out/$name.log" && [ "$batch" -gt 1 ]; then
        used=$((batch / 2))
        mv "$out/$name.log" "$out/$name.oom.log"
        run "$name" "$limit" "$used"
    fi
    echo "$used" >"$out/$name.batch"
done

# One row a run: tokens/s, step ms, MFU, memory; "failed" with the log's last line when a run gave no figures.
flops=""
tps_of() { sed -n 's/.*tokens_per_s_median=\([0-9.]*\).*/\1/p; s/^label=.* tokens_per_s=\([0-9.]*\).*/\1/p' "$out/$1.log" | tail -1; }
for name in $runs; do
    [ -f "$out/$name.log" ] || continue
    line=$(tail -1 "$out/$name.log")
    case $name in torch_*) f=$(echo "$line" | sed -n 's/.*flops_per_token=\([0-9]*\).*/\1/p'); [ -n "$f" ] && flops=$f ;; esac
done
if [ -z "$flops" ] && [ -x "$build/magna" ]; then
    n=$("$build/magna" summary "$model" | sed -n 's/^Total params: //p')
    [ -n "$n" ] && flops=$((6 * n + 12 * L * T * D))
fi
compile_tps=$(tps_of torch_compile 2>/dev/null)
{
    echo
    echo "### GPT-2 124M, T $T, random tokens — $device, $(date -u '+%Y-%m-%d')"
    echo
    echo "| run | batch | tokens/s | step ms | MFU | GPU memory GiB (nvidia-smi) | torch max allocated GiB | vs torch.compile |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
} >"$out/table.md"
for name in $runs; do
    [ -f "$out/$name.log" ] || continue
    tps=$(tps_of "$name")
    b=$(cat "$out/$name.batch" 2>/dev/null || echo "$batch")
    mem=$(cat "$out/$name.peak" 2>/dev/null || echo -)
    if [ -z "$tps" ]; then
        echo "| $name | $b | failed: $(tail -1 "$out/$name.log" | cut -c1-120) | | | | | |" >>"$out/table.md"
        echo "${name}_status=failed" >>"$out/summary.txt"
        continue
    fi
    ms=$(sed -n 's/.*step_ms_median=\([0-9.]*\).*/\1/p; s/^label=.* step_ms=\([0-9.]*\).*/\1/p' "$out/$name.log" | tail -1)
    alloc=$(sed -n 's/^label=.* max_allocated_gib=\([0-9.]*\).*/\1/p' "$out/$name.log" | tail -1)
    mfu=$(awk -v t="$tps" -v f="$flops" -v p="$peak" 'BEGIN { if (p == "unknown" || f == "") print "unknown"; else printf "%.1f%%", 100 * t * f / (p * 1e12) }')
    ratio=$(awk -v t="$tps" -v c="$compile_tps" 'BEGIN { if (c + 0 > 0) printf "%.2fx", t / c; else print "-" }')
    echo "| $name | $b | $tps | $ms | $mfu | $mem | ${alloc:--} | $ratio |" >>"$out/table.md"
    printf '%s_status=ok %s_batch=%s %s_tokens_per_s=%s %s_step_ms=%s %s_mfu=%s %s_mem_gib=%s\n' "$name" "$name" "$b" \
        "$name" "$tps" "$name" "$ms" "$name" "$(echo "$mfu" | tr -d %)" "$name" "$mem" >>"$out/summary.txt"
done
{
    echo
    echo "Steps timed: $steps (magna float32: a third); FLOPs per token ${flops:-unknown} (6 N + 12 L T d); peak ${peak} TFLOP/s."
    echo "Memory: nvidia-smi's used memory at its highest minus before the run (context and allocator caches included)."
    for name in magna_bf16 magna_f32; do # what magna's plan holds of it (the rest: weights, Adam, staging, context)
        plan=$(grep -h "^Activation memory:" "$out/$name.log" 2>/dev/null | tail -1)
        [ -n "$plan" ] && echo "$name, planned: $plan."
    done
} >>"$out/table.md"
cat "$out/table.md"
echo "summary: $(tr '\n' ' ' <"$out/summary.txt")"
echo "logs: $out/*.log"
