#!/bin/sh
# test_gpu_bundle.sh SOURCE_DIR [JOBS] — the path by which magna's libraries reach a GPU machine that reaches
# no package registry (issue 10; README, "GPU"), walked here from what travels, .gpu-bundle/:
#  1. scripts/gpu-prefix.sh unpacks its .debs into a temporary prefix (a second run leaves it as it is);
#  2. the GPU build's configuration (-DMAGNA_WITH_CUDA=ON -DMAGNA_DEPS_PREFIX=it, no MPI: the GPU machine
#     has none) configures in a temporary build folder and resolves jansson, zlib, OpenBLAS and oneDNN
#     inside the prefix; the library (nvcc compiles its .cu files), `magna` and `bigram` build;
#  3. readelf: the programs carry the prefix as DT_RPATH; ldd: libjansson, libz, libdnnl (and its
#     libOpenCL) resolve inside it;
#  4. with no LD_LIBRARY_PATH, `magna train` fits a tiny CNN on the bundle's Fashion-MNIST, and every
#     library the process loaded (ld.so's own account, LD_DEBUG=files: OpenBLAS through dlopen and its
#     libgfortran too) that the prefix has came from the prefix;
#  5. bigram on the bundle's fortunes.txt prints what it prints on the folder it was made from.
# Exit 77 (skipped), with the reason, without .gpu-bundle/debs (make gpu-bundle) or without nvcc.
set -u
SRC=$(cd "$1" && pwd)
JOBS=${2:-2}
B=$SRC/.gpu-bundle
skip() { echo "test_gpu_bundle: skipped: $*"; exit 77; }
[ -d "$B/debs" ] || skip "no $B/debs (make gpu-bundle makes it, where a Debian mirror answers)"
NVCC=${CUDACXX:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
[ -x "$NVCC" ] || skip "no nvcc: the GPU build compiles CUDA"
unset LD_LIBRARY_PATH MAGNA_OPENBLAS # nothing but the programs' RPATH may find the prefix
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
P=$tmp/prefix
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
t0=$(date +%s)
stage() { echo "[$(($(date +%s) - t0)) s] $*"; }

stage "unpacking $B/debs into $P"
"$SRC/scripts/gpu-prefix.sh" --debs "$B/debs" --prefix "$P" || { echo "FAIL: gpu-prefix.sh"; exit 1; }
find "$P" | sort >"$tmp/tree1"
again=$("$SRC/scripts/gpu-prefix.sh" --debs "$B/debs" --prefix "$P") || fail "gpu-prefix.sh, second run"
case "$again" in *"up to date"*) ;; *) fail "a second gpu-prefix.sh did not find the prefix up to date: $again" ;; esac
find "$P" | sort | cmp -s - "$tmp/tree1" || fail "a second gpu-prefix.sh changed the prefix"
[ -z "$(find "$P" -type l -lname '/*')" ] || fail "links to absolute paths remain: $(find "$P" -type l -lname '/*')"
! grep -l '=/usr' "$P"/usr/lib/*/pkgconfig/*.pc || fail "pkg-config files still point at /usr"

stage "configuring the GPU build with -DMAGNA_DEPS_PREFIX=$P"
if ! cmake -S "$SRC" -B "$tmp/build" -DCMAKE_BUILD_TYPE=Release -DMAGNA_WITH_CUDA=ON -DMAGNA_WITH_MPI=OFF \
    -DCMAKE_CUDA_COMPILER="$NVCC" -DMAGNA_DEPS_PREFIX="$P" >"$tmp/configure.log" 2>&1; then
    cat "$tmp/configure.log"
    echo "FAIL: the GPU build does not configure from the prefix"
    exit 1
fi
grep -E '^-- (deps prefix|zlib|jansson|OpenBLAS|oneDNN|CUDA):' "$tmp/configure.log"
for lib in zlib jansson OpenBLAS oneDNN; do
    grep -q "^-- $lib: $P/" "$tmp/configure.log" || fail "CMake did not resolve $lib inside the prefix"
done
grep -q '^-- CUDA: ' "$tmp/configure.log" || fail "the build has no CUDA"

stage "building the library, magna and bigram (-j$JOBS)"
if ! cmake --build "$tmp/build" -j"$JOBS" --target magna_cli bigram >"$tmp/build.log" 2>&1; then
    tail -n 40 "$tmp/build.log"
    echo "FAIL: the GPU build does not build"
    exit 1
fi
M=$tmp/build/magna
grep -q 'MAGNA_HAVE_CUDA' "$tmp/build/CMakeFiles/magna.dir/flags.make" || fail "the library was built without CUDA"

stage "checking where the libraries resolve"
for prog in "$M" "$tmp/build/bigram"; do
    rpath=$(readelf -d "$prog" | sed -n 's/.*(RPATH).*\[\(.*\)\]/\1/p')
    case "$rpath" in "$P"/*) ;; *) fail "$(basename "$prog"): no DT_RPATH into the prefix (readelf: '$rpath')" ;; esac
    ! readelf -d "$prog" | grep -q RUNPATH || fail "$(basename "$prog") has a RUNPATH (not transitive, not for dlopen)"
done
ldd "$M" >"$tmp/ldd" 2>&1 || fail "ldd $M"
for so in libjansson.so.4 libz.so.1 libdnnl.so.2 libOpenCL.so.1; do
    grep -q "$so => $P/" "$tmp/ldd" || fail "ldd: $so does not resolve inside the prefix: $(grep "$so" "$tmp/ldd")"
done
! grep -q 'not found' "$tmp/ldd" || fail "ldd: $(grep 'not found' "$tmp/ldd")"

stage "training a tiny CNN on the bundle's Fashion-MNIST"
cat >"$tmp/cnn.ini" <<EOF
[data]
kind = idx
path = $B/data/fashion-mnist
classes = 10
validation = 128
limit = 640

[model]
input = 1, 28, 28

[layer]
type = conv2d
filters = 4
kernel = 3
padding = same
activation = relu

[layer]
type = max_pool2d
kernel = 2

[layer]
type = flatten

[layer]
type = dense
units = 10

[train]
loss = sparse_cross_entropy
optimizer = adam
lr = 1e-3
batch = 64
epochs = 1
metrics = accuracy
EOF
if ! LD_DEBUG=files LD_DEBUG_OUTPUT=$tmp/ld "$M" train "$tmp/cnn.ini" --out "$tmp/run" --threads 2 \
    >"$tmp/train.log" 2>&1; then
    cat "$tmp/train.log"
    fail "magna train on the bundle's data"
fi
tail -n 1 "$tmp/train.log"
grep -q 'test_acc=' "$tmp/train.log" || fail "magna train printed no test accuracy"
grep -q "blas $P/" "$tmp/train.log" || fail "magna train did not say it uses the prefix's OpenBLAS"
sed -n 's/.*calling init: //p' "$tmp"/ld.* | sort -u >"$tmp/loaded"
find "$P" -name '*.so.*' -printf '%f\n' | sort -u >"$tmp/ours"
while read -r path; do
    name=$(basename "$path")
    case "$path" in "$P"/*) continue ;; esac
    ! grep -qxF "$name" "$tmp/ours" || fail "$name was loaded from $path, not from the prefix"
done <"$tmp/loaded"
for so in libjansson.so.4 libz.so.1 libdnnl.so.2 libOpenCL.so.1 libopenblas.so.0 libgfortran.so.5 libquadmath.so.0; do
    grep -q "^$P/.*/$so\$" "$tmp/loaded" ||
        fail "$so was not loaded from the prefix (loaded: $(grep "$so" "$tmp/loaded"))"
done
echo "loaded from the prefix: $(grep "^$P/" "$tmp/loaded" | xargs -n1 basename | tr '\n' ' ')"

FORTUNES=/usr/share/games/fortunes
if [ -d "$FORTUNES" ]; then
    stage "bigram on fortunes.txt and on $FORTUNES"
    # the same corpus gives the same fit, figures and sample; only the path, file count and speed differ
    norm() { sed 's/^corpus [^:]*: [0-9]* files, /corpus /; s/ tokens_per_s=.*//'; }
    "$tmp/build/bigram" "$B/data/fortunes.txt" >"$tmp/bigram.out" 2>&1 || fail "bigram on fortunes.txt"
    norm <"$tmp/bigram.out" >"$tmp/bigram.file"
    "$tmp/build/bigram" "$FORTUNES" >"$tmp/bigram.out" 2>&1 || fail "bigram on $FORTUNES"
    norm <"$tmp/bigram.out" >"$tmp/bigram.folder"
    tail -n 1 "$tmp/bigram.file"
    cmp -s "$tmp/bigram.file" "$tmp/bigram.folder" ||
        fail "fortunes.txt is not the corpus of $FORTUNES: $(diff "$tmp/bigram.file" "$tmp/bigram.folder" | head -5)"
else
    echo "($FORTUNES absent: fortunes.txt not compared with it)"
fi

stage "done: $failures failed"
[ "$failures" -eq 0 ]
