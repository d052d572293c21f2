#!/bin/sh
# test_gpt2_bench.sh — bench/gpt2.sh's logic without a GPU: with no nvidia-smi it says so and exits 1; with a
# stand-in nvidia-smi (an "H100", used memory 1000 then 5000 MiB), a stand-in magna and a stand-in PyTorch that
# print the key=value lines the real ones print, its table has each run's tokens/s, MFU (tokens/s x 6 N + 12 L T
# d / 989 TFLOP/s), memory and the ratio to torch.compile, and a run that runs out of memory is retried at half
# the batch. What is real is only the script: the figures are made up here.
#   tests/test_gpt2_bench.sh SOURCE_DIR
set -u
src=$1
tmp=$(mktemp -d /tmp/magna_test_gpt2_bench.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail=0
check() { if eval "$2"; then echo "ok $1"; else echo "FAIL $1"; fail=1; fi; }

# 1. an nvidia-smi without a driver (what a machine without a GPU but with the tools says): exit 1, says so
mkdir -p "$tmp/nodriver" "$tmp/bin" "$tmp/build"
printf '#!/bin/sh\necho "NVIDIA-SMI has failed because it could not communicate with the NVIDIA driver."\nexit 9\n' \
    >"$tmp/nodriver/nvidia-smi"
chmod +x "$tmp/nodriver/nvidia-smi"
out=$(PATH="$tmp/nodriver:$PATH" "$src/bench/gpt2.sh" --build-dir "$tmp/build" 2>&1); rc=$?
check "no GPU: exit 1 and says so" '[ $rc -eq 1 ] && echo "$out" | grep -q "no GPU here (nvidia-smi -L: NVIDIA-SMI has failed"'

# 2. stand-ins
cat >"$tmp/bin/nvidia-smi" <<'SMI'
#!/bin/sh
case "$*" in
*-L*) echo "GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-0)" ;;
*query-gpu=name*) echo "NVIDIA H100 80GB HBM3" ;;
*-lms*) echo 1000; echo 5000; exec sleep 30 ;;
*memory.used*) echo 1000 ;;
esac
SMI
cat >"$tmp/build/magna" <<'MAGNA'
#!/bin/sh
case "$1" in
summary) echo "Total params: 124475904"; exit 0 ;;
esac
sleep 0.5
# train ... [--fp32] ... --batch B: float32 at batch 64 runs out of memory
case "$*" in
*"--fp32"*"--batch 64"*) echo "magna train: cuda: out of memory allocating 81 GiB"; exit 1 ;;
*"--fp32"*) echo "train_loss=10.9 uniform_loss=10.8249 tokens_per_s=90000 step_ms_median=364.089 tokens_per_s_median=90000 step=10" ;;
*) echo "train_loss=10.9 uniform_loss=10.8249 tokens_per_s=380000 step_ms_median=163.840 tokens_per_s_median=400000 step=30" ;;
esac
MAGNA
cat >"$tmp/bin/fakepython" <<'PY'
#!/bin/sh
case "$*" in *--peak*) exec python3 "$@" ;; esac
sleep 0.5 # nvidia-smi's memory samples (taken in the background) land while it runs
label=torch_eager tps=300000
case "$*" in *--compile*) label=torch_compile tps=500000 ;; esac
echo "step 1 loss 10.9"
echo "label=$label tokens_per_s=$tps step_ms=131.07 mfu=0.4350 max_allocated_gib=28.50 max_reserved_gib=30.00 loss=10.9 params=124475904 flops_per_token=860131328 batch=64 context=1024"
PY
chmod +x "$tmp/bin/nvidia-smi" "$tmp/build/magna" "$tmp/bin/fakepython"
out=$(PATH="$tmp/bin:$PATH" PYTHON="$tmp/bin/fakepython" "$src/bench/gpt2.sh" --build-dir "$tmp/build" --steps 6 2>&1); rc=$?
echo "$out"
check "with a GPU: exit 0" '[ $rc -eq 0 ]'
# 400000 x 860131328 / 989e12 = 34.8%; memory (5000 - 1000) / 1024 = 3.91 GiB; 400000 / 500000 = 0.80x
check "magna bf16's row" 'echo "$out" | grep -q "^| magna_bf16 | 64 | 400000 | 163.840 | 34.8% | 3.91 | - | 0.80x |$"'
check "float32 out of memory at 64: retried at 32" 'echo "$out" | grep -q "^| magna_f32 | 32 | 90000 | 364.089 | 7.8% | 3.91 | - | 0.18x |$"'
check "torch.compile's row" 'echo "$out" | grep -q "^| torch_compile | 64 | 500000 | 131.07 | 43.5% | 3.91 | 28.50 | 1.00x |$"'
check "the device and date in the heading" 'echo "$out" | grep -q "^### GPT-2 124M, T 1024, random tokens — NVIDIA H100 80GB HBM3, 20"'
check "summary.txt for gpu-check" 'grep -q "magna_bf16_status=ok magna_bf16_batch=64 magna_bf16_tokens_per_s=400000 magna_bf16_step_ms=163.840 magna_bf16_mfu=34.8 magna_bf16_mem_gib=3.91" "$tmp/build/bench_gpt2/summary.txt"'

# 3. a run that gives no figures is a "failed" row, not a missing one
cat >"$tmp/build/magna" <<'MAGNA'
#!/bin/sh
[ "$1" = summary ] && { echo "Total params: 124475904"; exit 0; }
echo "magna train: --device cuda: cannot run on cuda: the CUDA backend does not train yet"; exit 1
MAGNA
out=$(PATH="$tmp/bin:$PATH" PYTHON="$tmp/bin/fakepython" "$src/bench/gpt2.sh" --build-dir "$tmp/build" --runs "magna_bf16 torch_compile" 2>&1)
check "a failed run's row says why" 'echo "$out" | grep -q "^| magna_bf16 | 64 | failed: magna train: --device cuda: cannot run on cuda"'
check "and summary.txt says failed" 'grep -q "magna_bf16_status=failed" "$tmp/build/bench_gpt2/summary.txt"'
exit $fail
