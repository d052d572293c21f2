#!/bin/sh
# gpu-check.sh — `make gpu-check`: on a machine with an NVIDIA GPU, build magna with CUDA and run every GPU
# test, then compute-sanitizer's memcheck over them; one PASS/FAIL line a check, and the same lines in
# BUILD/gpu-check.txt. Exit 0 only when every check passed. Without a GPU (or without a CUDA build) it says
# so in one line and exits 1: nothing it checks can run there.
#
#   scripts/gpu-check.sh [--build-dir DIR] [--no-configure]
# --build-dir: the CUDA build (default build-gpu); --no-configure: use DIR as it is (the test of this script
# runs it on the test's own build).
set -u
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
echo "gpu-check $(date -u '+%Y-%m-%d %H:%M UTC') on $(uname -n)" >"$REPORT"
failed=0
# check NAME COMMAND...: runs it, its output into BUILD/gpu-check-NAME.log, one line into the report
check() {
    name=$1; shift
    if "$@" >"$BUILD/gpu-check-$name.log" 2>&1; then r=PASS; else r=FAIL; failed=$((failed + 1)); fi
    echo "$r $name" | tee -a "$REPORT"
}

# A GPU first: without one nothing below can run (the kernels' test exits 77 and says why).
"$BUILD/test_cuda_kernels" >"$BUILD/gpu-check-device.log" 2>&1
rc=$?
if [ $rc -eq 77 ]; then
    echo "gpu-check: no GPU here, nothing checked: $(sed -n 's/^test_cuda_kernels: skipped: //p' "$BUILD/gpu-check-device.log")" |
        tee -a "$REPORT"
    exit 1
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | sed 's/^/device: /' |
    tee -a "$REPORT"
check cpu_tests_of_gpu_code sh -c "cd '$BUILD' && ctest -R '^(test_cuda_math|test_cuda_launch|test_device)\$' --output-on-failure"
check kernels_vs_cpu_math "$BUILD/test_cuda_kernels"
check attention_vs_cpu "$BUILD/test_cuda_attention"
check rnn_vs_cpu "$BUILD/test_cuda_rnn"
SANITIZER=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
if [ -x "$SANITIZER" ]; then
    check memcheck_kernels "$SANITIZER" --tool memcheck --leak-check full --error-exitcode 1 "$BUILD/test_cuda_kernels"
    check memcheck_attention "$SANITIZER" --tool memcheck --error-exitcode 1 "$BUILD/test_cuda_attention"
    # the flash-style kernels share tiles between warps and lanes: a missing barrier is a race only a GPU shows
    check racecheck_attention "$SANITIZER" --tool racecheck --error-exitcode 1 "$BUILD/test_cuda_attention"
else
    echo "FAIL memcheck (compute-sanitizer not found)" | tee -a "$REPORT"
    failed=$((failed + 1))
fi
# What issue 10 asks of this command that does not exist yet, said rather than skipped in silence.
echo "not yet: every op on CUDA vs the CPU, bf16 mode, CNN and char-GPT training on the GPU, GPT-2 124M vs PyTorch" |
    tee -a "$REPORT"
echo "gpu-check: $failed failed (logs: $BUILD/gpu-check-*.log, report: $REPORT)"
[ $failed -eq 0 ]
