#!/bin/sh
# test_cli_cuda.sh MAGNA_EMU MAGNA SOURCE_DIR — `magna train --device cuda` end to end, on the emulated CUDA
# device (magna-emu: the same command linked with magna_emu), against the CPU command on the same model files:
# the housing MLP, a tiny GPT and a tiny LSTM on a small text, and a tiny seq2seq. In float32 (--fp32) the final
# key=value figures must match the CPU's to 1e-4 relative; in bf16 (the default on cuda) they must be close.
# The weights trained "on the GPU" then generate text with the CPU command.
set -u
EMU=$1 CPU=$2 SRC=$3
T=$(mktemp -d /tmp/magna_cli_cuda.XXXXXX)
trap 'rm -rf "$T"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

# the value of KEY in the last line of file F
value() { tail -n 1 "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }
# close A B TOL: |a - b| <= tol * max(1, |b|)
close() { awk -v a="$1" -v b="$2" -v t="$3" 'BEGIN { d = a - b; if (d < 0) d = -d; m = b < 0 ? -b : b; if (m < 1) m = 1;
          exit !(a != "" && b != "" && d <= t * m) }'; }

# run NAME KEY MODEL_FILE [options]: CPU, CUDA fp32 and CUDA bf16, comparing KEY
run() {
    name=$1 key=$2 model=$3
    shift 3
    "$CPU" train "$model" --out "$T/$name-cpu" "$@" >"$T/$name-cpu.log" 2>&1 || { fail "$name: cpu run"; cat "$T/$name-cpu.log"; return; }
    "$EMU" train "$model" --device cuda --fp32 --out "$T/$name-cuda" "$@" >"$T/$name-cuda.log" 2>&1 ||
        { fail "$name: cuda run"; tail -5 "$T/$name-cuda.log"; return; }
    "$EMU" train "$model" --device cuda --out "$T/$name-bf16" "$@" >"$T/$name-bf16.log" 2>&1 ||
        { fail "$name: cuda bf16 run"; tail -5 "$T/$name-bf16.log"; return; }
    c=$(value "$T/$name-cpu.log" "$key") g=$(value "$T/$name-cuda.log" "$key") b=$(value "$T/$name-bf16.log" "$key")
    echo "$name: $key cpu $c, cuda fp32 $g, cuda bf16 $b"
    close "$g" "$c" 1e-4 || fail "$name: cuda fp32 $key $g vs cpu $c"
    close "$b" "$c" 0.05 || fail "$name: cuda bf16 $key $b vs cpu $c"
}

run housing test_rmse "$SRC/models/housing-mlp.ini" --epochs 20

CORPUS=$T/corpus.txt
# a small text with structure: the model files' text path, a few hundred lines
i=0
while [ $i -lt 300 ]; do
    echo "line $i: the quick brown fox jumps over the lazy dog $((i * 7 % 13)) times" >>"$CORPUS"
    i=$((i + 1))
done
cat >"$T/gpt.ini" <<EOF
[data]
kind = text
path = $CORPUS
context = 16
eval_windows = 24
[model]
kind = gpt
layers = 2
heads = 2
d_model = 16
[train]
loss = sparse_cross_entropy
optimizer = adamw
lr = 3e-3
weight_decay = 0.1
batch = 8
steps = 12
EOF
cat >"$T/lstm.ini" <<EOF
[data]
kind = text
path = $CORPUS
context = 16
eval_windows = 24
[model]
kind = sequential
[layer]
type = embedding
units = 8
[layer]
type = lstm
units = 16
[layer]
type = dense
units = vocab
[train]
loss = sparse_cross_entropy
optimizer = adam
lr = 3e-3
batch = 8
steps = 12
EOF
cat >"$T/seq2seq.ini" <<EOF
[data]
kind = numbers
test = 20
[model]
kind = seq2seq
layers = 1
heads = 2
d_model = 16
[train]
loss = sparse_cross_entropy
optimizer = adamw
lr = 3e-3
batch = 8
steps = 10
clip = 1
beam = 2
EOF
run gpt val_loss "$T/gpt.ini"
run lstm val_loss "$T/lstm.ini"
run seq2seq test_loss "$T/seq2seq.ini"

# weights trained on the (emulated) GPU generate on the CPU
if "$CPU" generate "$T/gpt.ini" --weights "$T/gpt-cuda/model.safetensors" --prompt "line" --length 20 --seed 1 \
    >"$T/gen.log" 2>&1; then
    echo "generate on the cpu from cuda weights: $(head -c 60 "$T/gen.log" | tr '\n' ' ')"
else
    fail "generate from cuda-trained weights"; cat "$T/gen.log"
fi

[ $fails -eq 0 ] && echo "test_cli_cuda: all passed" || echo "test_cli_cuda: $fails failed"
[ $fails -eq 0 ]
