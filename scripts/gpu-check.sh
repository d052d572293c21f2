#!/bin/sh
# gpu-check.sh — `make gpu-check`: on a machine with an NVIDIA GPU, build magna with CUDA and check it there, in
# 10 minutes at most (meant for an H100 with 16 cores; every check has its own timeout, cut to what is left of
# GPU_CHECK_BUDGET, default 570 s from the start, build included). One PASS/FAIL line a check with its
# figures, all of them in BUILD/gpu-check.txt, which ends with the lines to paste into bench/RESULTS.md:
#   cpu_tests_of_gpu_code   the CPU-side tests of the GPU code (math, launch geometry, device query, emulated)
#   cuda_ops                test_cuda_ops: every op on the GPU against the CPU, float32 and bf16 modes
#   cuda_kernels            test_cuda_kernels: the kernels against the same math on the CPU
#   other_gpu_tests         every other ctest labelled gpu (test_cuda_gemm, test_cuda_train, ...)
#   cnn_f32, cnn_bf16       the Fashion-MNIST CNN (models/fmnist-cnn.ini), $CNN_STEPS steps on the GPU against the
#                           CPU from the same seed: loss curves and test accuracy (scripts/curves.py)
#   chargpt_f32, chargpt_bf16   the char-GPT (models/char-gpt.ini), $GPT_STEPS steps: curves and validation loss
#   gpt2_bench, gpt2_speed, gpt2_mfu, gpt2_memory   bench/gpt2.sh: GPT-2 124M against PyTorch on this GPU, and
#                           issue 10's targets: >= torch.compile's tokens/s, >= 45% MFU, memory <= PyTorch's
#   gpt2_profile            where magna's bf16 GPT-2 step goes: 10 steps under MAGNA_PROFILE=1 (the GPU's time per
#                           op kind between events, the products' TFLOP/s), its table at the report's end
#                           (then, budget allowing, the same with attention's wmma kernels, MAGNA_CUDA_ATTENTION=wmma,
#                           and PyTorch's attention alone, bench/torch_attention.py: comparisons added, not checks)
#   memcheck_ops, memcheck_kernels, memcheck_attention   compute-sanitizer's memcheck over those tests (beside the
#                           training runs)
# Exit 0 only when every check passed. Without a GPU (or without a CUDA build) it says so in one line and exits
# 1: nothing it checks can run there. The training data comes from $MAGNA_GPU_DATA (default .gpu-bundle/data:
# fashion-mnist/ and fortunes.txt, made by make gpu-bundle), else from where the CPU runs read it here.
#
#   scripts/gpu-check.sh [--build-dir DIR] [--no-configure]
# --build-dir: the CUDA build (default build-gpu); --no-configure: use DIR as it is (the test of this script
# runs it on the test's own build).
set -u
# the budget's clock starts here, before the build (ps's etimes was used for this; in a VM it sometimes reads a
# just-started process as 4e9 s old, which spent the whole budget before the first check)
START=$(date +%s)
BUILD=build-gpu
CONFIGURE=1
while [ $# -gt 0 ]; do
    case "$1" in
    --build-dir) BUILD=$2; shift 2 ;;
    --no-configure) CONFIGURE=0; shift ;;
    *) echo "usage: scripts/gpu-check.sh [--build-dir DIR] [--no-configure]" >&2; exit 2 ;;
    esac
done
cd "$(dirname "$0")/.." || exit 1
JOBS=$(nproc 2>/dev/null || echo 2)
if [ "$CONFIGURE" = 1 ]; then
    # the libraries that travelled with the tree (make gpu-bundle), unpacked into a prefix the build uses
    set --
    if [ -d .gpu-bundle/debs ]; then
        scripts/gpu-prefix.sh || { echo "gpu-check: FAIL: .gpu-bundle's libraries do not unpack or load here"; exit 1; }
        set -- "-DMAGNA_DEPS_PREFIX=$PWD/.gpu-bundle/prefix"
    else
        echo "gpu-check: no .gpu-bundle (make gpu-bundle makes it): the libraries must be installed here"
    fi
    echo "gpu-check: building with CUDA in $BUILD"
    cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DMAGNA_WITH_CUDA=ON "$@" >"$BUILD.configure.log" 2>&1 ||
        { echo "gpu-check: FAIL: the CUDA build does not configure (see $BUILD.configure.log)"; exit 1; }
    rm -f "$BUILD.configure.log"
    cmake --build "$BUILD" -j"$JOBS" >/dev/null || { echo "gpu-check: FAIL: the CUDA build failed"; exit 1; }
fi
if [ ! -x "$BUILD/test_cuda_kernels" ]; then
    echo "gpu-check: FAIL: $BUILD is not a CUDA build (no test_cuda_kernels): is nvcc installed?"
    exit 1
fi
REPORT=$BUILD/gpu-check.txt
# The budget: the device tool gives a command 600 s, the build included, so every check's timeout is cut to
# what is left of GPU_CHECK_BUDGET seconds (default 570) since this script started, 15 s kept for the report;
# a check with nothing left is a FAIL that says so.
DEADLINE=$((START + ${GPU_CHECK_BUDGET:-570} - 15))
# cap SECONDS: the smaller of SECONDS and what is left of the budget (0 when nothing is)
cap() { left=$((DEADLINE - $(date +%s))); [ "$left" -lt 0 ] && left=0; [ "$1" -lt "$left" ] && echo "$1" || echo "$left"; }
echo "gpu-check $(date -u '+%Y-%m-%d %H:%M UTC') on $(uname -n)" >"$REPORT"
failed=0
passed=0
# result PASS|FAIL NAME FIGURES: one line of the report
result() {
    echo "$1 $2${3:+: $3}" | tee -a "$REPORT"
    if [ "$1" = PASS ]; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
}
# run_timed NAME SECONDS COMMAND...: runs it under a timeout (cut to the budget), its output into
# BUILD/gpu-check-NAME.log, "status seconds limit" into BUILD/gpu-check-NAME.rc (status "skip": no time left)
run_timed() {
    name=$1 limit=$(cap "$2")
    shift 2
    if [ "$limit" -lt 5 ]; then echo "skip 0 0" >"$BUILD/gpu-check-$name.rc"; return; fi
    t0=$(date +%s)
    timeout "$limit" "$@" >"$BUILD/gpu-check-$name.log" 2>&1
    echo "$? $(($(date +%s) - t0)) $limit" >"$BUILD/gpu-check-$name.rc"
}
# report_timed NAME: its line in the report, with the time and the log's last line (a test's "N passed, M failed")
report_timed() {
    name=$1
    read -r rc took limit <"$BUILD/gpu-check-$name.rc" 2>/dev/null || rc=missing
    last=$(grep -v '^[[:space:]]*$' "$BUILD/gpu-check-$name.log" 2>/dev/null | tail -1 | cut -c1-160)
    if [ "$rc" = skip ]; then result FAIL "$name" "skipped: the ${GPU_CHECK_BUDGET:-570} s budget (GPU_CHECK_BUDGET) is spent"
    elif [ "$rc" = 0 ]; then result PASS "$name" "${took} s; $last"
    elif [ "$rc" = 124 ]; then result FAIL "$name" "timed out after $limit s; $last"
    else result FAIL "$name" "exit $rc after ${took:-?} s; $last"
    fi
}
# check NAME SECONDS COMMAND...: both, now
check() {
    run_timed "$@"
    report_timed "$1"
}

rm -f "$BUILD"/gpu-check-*.rc "$BUILD"/gpu-check-*.log # nothing of an earlier run is read as this one's
# A GPU first: without one nothing below can run (the kernels' test exits 77 and says why).
"$BUILD/test_cuda_kernels" >"$BUILD/gpu-check-device.log" 2>&1
rc=$?
if [ $rc -eq 77 ]; then
    echo "gpu-check: no GPU here, nothing checked: $(sed -n 's/^test_cuda_kernels: skipped: //p' "$BUILD/gpu-check-device.log")" |
        tee -a "$REPORT"
    exit 1
fi
DEVICE=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1)
echo "device: $DEVICE" | tee -a "$REPORT"

# The training checks' data, and the CPU reference runs, started now in the background (on all but 4 cores,
# which the GPU checks drive) so that they are done when the GPU runs are.
DATA=${MAGNA_GPU_DATA:-.gpu-bundle/data}
FMNIST=$DATA/fashion-mnist
[ -d "$FMNIST" ] || FMNIST=/usr/share/datasets/fashion-mnist
CORPUS=$DATA/fortunes.txt
[ -e "$CORPUS" ] || CORPUS=/usr/share/games/fortunes
CNN_STEPS=${CNN_STEPS:-300}
GPT_STEPS=${GPT_STEPS:-200}
RUNS=$BUILD/gpu-check-runs
rm -rf "$RUNS"
mkdir -p "$RUNS"
MAGNA=$BUILD/magna
cpu_threads=$((JOBS > 8 ? JOBS - 4 : JOBS))
# train_run NAME SECONDS MODEL DEVICE PRECISION ARGS...: magna train under a timeout; its step log in RUNS/NAME.csv,
# its output in NAME.log, its exit status in NAME.rc
train_run() {
    name=$1 limit=$(cap "$2") model=$3 dev=$4 prec=$5
    shift 5
    if [ "$limit" -lt 5 ]; then
        echo "skipped: the ${GPU_CHECK_BUDGET:-570} s budget (GPU_CHECK_BUDGET) is spent" >"$RUNS/$name.log"
        echo 124 >"$RUNS/$name.rc"
        return
    fi
    # on cuda bf16 is the default, --fp32 keeps every op float32
    if [ "$dev" = cpu ]; then set -- "$@" --threads "$cpu_threads"
    elif [ "$prec" = f32 ]; then set -- "$@" --device cuda --fp32
    else set -- "$@" --device cuda
    fi
    timeout "$limit" "$MAGNA" train "$model" --out "$RUNS/$name" --log-steps "$RUNS/$name.csv" "$@" >"$RUNS/$name.log" 2>&1
    echo $? >"$RUNS/$name.rc"
}
CNN_ARGS="--set data.path=$FMNIST --steps $CNN_STEPS"
GPT_ARGS="--set data.path=$CORPUS --set train.steps=$GPT_STEPS --set data.eval_windows=256"
# shellcheck disable=SC2086 # the ARGS are words without spaces (the data paths of this tree)
(
    train_run cnn_cpu 150 models/fmnist-cnn.ini cpu f32 $CNN_ARGS
    train_run chargpt_cpu 200 models/char-gpt.ini cpu f32 $GPT_ARGS
) &
REFS=$!

check cpu_tests_of_gpu_code 120 sh -c "cd '$BUILD' && ctest -R '^(test_cuda_math|test_cuda_launch|test_device|.*_emu)\$' -j4 --output-on-failure"
if [ -x "$BUILD/test_cuda_ops" ]; then
    check cuda_ops 120 "$BUILD/test_cuda_ops"
else
    result FAIL cuda_ops "no $BUILD/test_cuda_ops: this tree does not have the op-by-op test yet"
fi
check cuda_kernels 60 "$BUILD/test_cuda_kernels"
# the other tests labelled gpu (ctest -L gpu: the GEMM, norms and convolution, models trained on both devices,
# whatever is added), together
check other_gpu_tests 180 sh -c "cd '$BUILD' && ctest -L gpu -E '^(test_cuda_ops|test_cuda_kernels)\$' --output-on-failure"

# memcheck (about 10-100x the tests' time, mostly on the CPU) in the background, beside the training runs below,
# whose timings nothing reads; both are done before the GPT-2 benchmark, which has the GPU to itself
SANITIZER=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
(
    for t in ops kernels attention; do
        if [ -x "$SANITIZER" ] && [ -x "$BUILD/test_cuda_$t" ]; then
            run_timed "memcheck_$t" 150 "$SANITIZER" --tool memcheck --leak-check full --error-exitcode 1 \
                "$BUILD/test_cuda_$t"
        fi
    done
) &
MEMCHECK=$!

# The GPU runs, then each against its CPU reference. Tolerances (scripts/curves.py): float32 on the GPU and on
# the CPU differ only in summation order (cuBLAS's tiles, our reductions' trees vs OpenBLAS and the CPU ops),
# about 1e-6 of a value per op: over the first 5 steps the losses stay within 2e-3 (relative), after which the
# runs drift apart as any two perturbed runs do, so the mean loss of the last 50 steps is compared (within 3%),
# and the result: test accuracy at most 1 point under the CPU's, validation loss at most 2% over. bf16 rounds
# the matmuls' operands to 8 significant bits (2^-9 relative), so 3e-2 early, 5% late, 2 points, 4%. These
# are reasoned, not yet calibrated on a GPU: the first report's figures say how much room they leave.
# shellcheck disable=SC2086
for prec in f32 bf16; do
    train_run "cnn_$prec" 120 models/fmnist-cnn.ini cuda "$prec" $CNN_ARGS
    train_run "chargpt_$prec" 120 models/char-gpt.ini cuda "$prec" $GPT_ARGS
done
wait "$REFS"
wait "$MEMCHECK"
for t in ops kernels attention; do
    if [ ! -x "$SANITIZER" ]; then result FAIL "memcheck_$t" "compute-sanitizer not found"
    elif [ ! -x "$BUILD/test_cuda_$t" ]; then result FAIL "memcheck_$t" "no $BUILD/test_cuda_$t"
    else report_timed "memcheck_$t"
    fi
done
# kv FILE KEY: KEY's value in the file's last line of key=value pairs
kv() { tail -1 "$1" | tr ' ' '\n' | sed -n "s/^$2=//p" | head -1; }
# compare NAME KIND PREC: the GPU run against the CPU's: curves, then the final figure
compare() {
    name=$1 kind=$2 prec=$3
    run=$RUNS/${kind}_$prec ref=$RUNS/${kind}_cpu
    if [ "$prec" = f32 ]; then early=2e-3 late=0.03 acc=0.01 vrel=1.02; else early=3e-2 late=0.05 acc=0.02 vrel=1.04; fi
    if [ "$(cat "$run.rc" 2>/dev/null)" != 0 ] || [ ! -s "$run.csv" ]; then
        result FAIL "$name" "the GPU run failed (exit $(cat "$run.rc" 2>/dev/null), 124: timed out): $(tail -1 "$run.log" 2>/dev/null | cut -c1-160)"
        return
    fi
    if [ "$(cat "$ref.rc" 2>/dev/null)" != 0 ] || [ ! -s "$ref.csv" ]; then
        result FAIL "$name" "the CPU run failed (exit $(cat "$ref.rc" 2>/dev/null), 124: timed out): $(tail -1 "$ref.log" 2>/dev/null | cut -c1-160)"
        return
    fi
    curves=$(python3 scripts/curves.py "$ref.csv" "$run.csv" --early 5 --early-tol "$early" --window 50 --late-tol "$late")
    crc=$?
    key=test_acc
    [ "$kind" = chargpt ] && key=val_loss
    g=$(kv "$run.log" $key) c=$(kv "$ref.log" $key) gms=$(kv "$run.log" step_ms_median) cms=$(kv "$ref.log" step_ms_median)
    if [ "$kind" = cnn ]; then
        ok=$(awk -v g="$g" -v c="$c" -v t="$acc" 'BEGIN { print (g != "" && c != "" && g + 0 >= c - t) ? 1 : 0 }')
        what="test accuracy GPU $g, CPU $c (>= CPU - $acc)"
    else
        ok=$(awk -v g="$g" -v c="$c" -v t="$vrel" 'BEGIN { print (g != "" && c != "" && g + 0 <= c * t) ? 1 : 0 }')
        what="validation loss GPU $g, CPU $c (<= CPU x $vrel)"
    fi
    r=FAIL
    [ $crc -eq 0 ] && [ "$ok" = 1 ] && r=PASS
    result "$r" "$name" "$what; $curves; step ms GPU ${gms:-?}, CPU ${cms:-?} ($cpu_threads threads)"
}
compare cnn_f32 cnn f32
compare cnn_bf16 cnn bf16
compare chargpt_f32 chargpt f32
compare chargpt_bf16 chargpt bf16

# GPT-2 124M against PyTorch, then issue 10's targets from its figures.
rm -f "$BUILD/bench_gpt2/summary.txt" "$BUILD/bench_gpt2/table.md" # no figures of an earlier run
check gpt2_bench 270 bench/gpt2.sh --build-dir "$BUILD"
SUMMARY=$BUILD/bench_gpt2/summary.txt
fig() { tr ' ' '\n' <"$SUMMARY" 2>/dev/null | sed -n "s/^$1=//p" | head -1; }
m_tps=$(fig magna_bf16_tokens_per_s) t_tps=$(fig torch_compile_tokens_per_s) m_mfu=$(fig magna_bf16_mfu)
m_mem=$(fig magna_bf16_mem_gib) t_mem=$(fig torch_compile_mem_gib)
if [ -n "$m_tps" ] && [ -n "$t_tps" ]; then
    r=$(awk -v m="$m_tps" -v t="$t_tps" 'BEGIN { print (m + 0 >= t + 0) ? "PASS" : "FAIL" }')
    result "$r" gpt2_speed "magna bf16 $m_tps tokens/s, torch.compile $t_tps ($(awk -v m="$m_tps" -v t="$t_tps" 'BEGIN { printf "%.2fx", m / t }'); target >= 1x)"
    r=$(awk -v m="$m_mem" -v t="$t_mem" 'BEGIN { print (m != "" && t != "" && m + 0 <= t + 0) ? "PASS" : "FAIL" }')
    result "$r" gpt2_memory "magna bf16 ${m_mem:-?} GiB, torch.compile ${t_mem:-?} GiB (nvidia-smi; target <=)"
else
    result FAIL gpt2_speed "no figures (magna bf16: ${m_tps:-none}, torch.compile: ${t_tps:-none}; see $BUILD/bench_gpt2/*.log)"
    result FAIL gpt2_memory "no figures"
fi
if [ -n "$m_mfu" ] && [ "$m_mfu" != unknown ]; then
    r=$(awk -v m="$m_mfu" 'BEGIN { print (m + 0 >= 45) ? "PASS" : "FAIL" }')
    result "$r" gpt2_mfu "magna bf16 $m_mfu% (target >= 45%)"
else
    result FAIL gpt2_mfu "MFU ${m_mfu:-not measured} (no figures, or a device without a known peak)"
fi
# Where the step goes, for whoever tunes it next: the op profiler's table (src/graph/run.c) over 10 steps at the
# batch the benchmark's bf16 run used, a run apart from the timed one (an event per op is recorded in it).
GPT2_BATCH=$(cat "$BUILD/bench_gpt2/magna_bf16.batch" 2>/dev/null || echo 64)
check gpt2_profile 45 env MAGNA_PROFILE=1 "$MAGNA" train models/gpt2-124m.ini --device cuda --steps 10 \
    --batch "$GPT2_BATCH" --out "$RUNS/gpt2_profile"
# the same with attention's wmma kernels (MAGNA_CUDA_ATTENTION=wmma) instead of mma.sync's: the attention rows
# side by side say what the register-level kernels gained. A comparison, not a check: run last, with what the
# budget has left, and its table added when it has one.
run_timed gpt2_profile_wmma 45 env MAGNA_PROFILE=1 MAGNA_CUDA_ATTENTION=wmma "$MAGNA" train models/gpt2-124m.ini \
    --device cuda --steps 10 --batch "$GPT2_BATCH" --out "$RUNS/gpt2_profile_wmma"
# and PyTorch's attention (scaled_dot_product_attention, flash) at the same shape, counted as the profile counts
run_timed torch_attention 30 "${PYTHON:-python3}" bench/torch_attention.py --batch "$GPT2_BATCH"

took=$(($(date +%s) - START))
{
    echo
    echo "---- $passed passed, $failed failed in $took s. Paste into bench/RESULTS.md: ----"
    echo
    echo "### make gpu-check — $(date -u '+%Y-%m-%d'), $DEVICE"
    echo
    echo '```'
    grep -E '^(PASS|FAIL) ' "$REPORT"
    echo '```'
    [ -f "$BUILD/bench_gpt2/table.md" ] && cat "$BUILD/bench_gpt2/table.md"
    for kind in "" _wmma; do
        log=$BUILD/gpu-check-gpt2_profile$kind.log
        grep -q "^magna profile" "$log" 2>/dev/null || continue
        env=""
        [ -n "$kind" ] && env=" MAGNA_CUDA_ATTENTION=wmma"
        echo
        echo "Where magna's bf16 step goes (\`MAGNA_PROFILE=1$env magna train models/gpt2-124m.ini --device cuda --steps 10 --batch $GPT2_BATCH\`):"
        echo
        echo '```'
        awk '/^magna profile/ { on = 1; print; next } on && /^  / { print; next } { on = 0 }' "$log"
        echo '```'
    done
    if grep -q "^torch_attention " "$BUILD/gpu-check-torch_attention.log" 2>/dev/null; then
        echo
        echo "PyTorch's causal attention at that shape (\`bench/torch_attention.py --batch $GPT2_BATCH\`, the same FLOP count):"
        echo
        echo '```'
        grep "^torch_attention " "$BUILD/gpu-check-torch_attention.log" | tail -1
        echo '```'
    fi
} >>"$REPORT.tail"
cat "$REPORT.tail" >>"$REPORT"
cat "$REPORT.tail" # the end of the output is what a remote run's caller surely sees
rm -f "$REPORT.tail"
# The device tool's machine gives back only what is under $OUT (8 files, 16 MiB each): the report, and the logs
# and curves (no checkpoints) in one archive.
if [ -n "${OUT:-}" ] && [ -d "$OUT" ] && [ -w "$OUT" ]; then
    cp "$REPORT" "$OUT/gpu-check.txt"
    (cd "$BUILD" && find gpu-check-*.log gpu-check-*.rc gpu-check-runs bench_gpt2 -maxdepth 1 -type f \
        \( -name '*.log' -o -name '*.rc' -o -name '*.csv' -o -name '*.txt' -o -name '*.md' -o -name '*.mem' \) \
        -size -4M 2>/dev/null | tar -czf "$OUT/gpu-check-logs.tar.gz" -T -) &&
        echo "gpu-check: the report and the logs also in \$OUT: gpu-check.txt, gpu-check-logs.tar.gz"
fi
echo "gpu-check: $passed passed, $failed failed in $took s (logs: $BUILD/gpu-check-*.log and $RUNS, report: $REPORT)"
[ $failed -eq 0 ]
