#!/bin/sh
# gpu-bundle.sh — `make gpu-bundle`: what the CUDA build and `make gpu-check` need on a GPU machine that
# reaches no package registry, into the git-ignored .gpu-bundle/, which travels with the tree (the device
# tool's carry list: `.gpu-bundle`; README, "GPU"):
#   .gpu-bundle/debs/      Debian's .deb files of the libraries (apt-get download; scripts/gpu-prefix.sh
#                          unpacks them there into .gpu-bundle/prefix)
#   .gpu-bundle/data/      fashion-mnist/ (Debian's four .gz files) and fortunes.txt (the fortune cookies
#                          as one file, the bytes magna_corpus_load reads from /usr/share/games/fortunes)
#   .gpu-bundle/MANIFEST   each file with its version, size and SHA-256, and the total
# Running it again fetches only what changed (a .deb is kept when its SHA-256 is the candidate's).
#
#   scripts/gpu-bundle.sh [--if-possible]
# --if-possible (make test): when no Debian mirror answers, say so and exit 0; test_gpu_bundle then skips.
set -eu
cd "$(dirname "$0")/.."
IF_POSSIBLE=0
case "${1:-}" in
    --if-possible) IF_POSSIBLE=1 ;;
    "") ;;
    *) echo "usage: scripts/gpu-bundle.sh [--if-possible]" >&2; exit 2 ;;
esac
ARCH=amd64 # the GPU machines' (x86-64 + H100/H200)

# The packages, and why exactly these. The GPU machine (Ubuntu 24.04 with gcc, CMake, CUDA 13, Python +
# PyTorch) has libc6, libgcc-s1, libstdc++6 and gcc's libgomp1, newer than Debian 12's, so those stay
# out: in particular one libgomp must serve magna, OpenBLAS and oneDNN together, the system's.
#   libjansson4 libjansson-dev   safetensors headers (src/io/safetensors.c), linked
#   zlib1g zlib1g-dev            .gz data; Ubuntu has libz.so.1 but not zlib.h, and the dev link needs the
#                                runtime of its own version beside it
#   libopenblas0-openmp          sgemm, loaded with dlopen (src/core/runtime.c declares its few symbols:
#                                no -dev package, which would add 5 MB of libopenblas.a); required: without
#                                it every new graph carries the error "could not load OpenBLAS"
#   libgfortran5 libquadmath0    what libopenblas.so.0 needs and gcc without gfortran lacks
#   libdnnl2 libdnnl-dev         oneDNN for conv2d (without it conv2d runs im2col + sgemm; it fits, so it travels)
#   ocl-icd-libopencl1           libdnnl.so.2 needs libOpenCL.so.1 (Debian builds oneDNN's OpenCL GPU
#                                runtime), which neither Ubuntu's base nor NVIDIA's driver installs
PACKAGES="libjansson4 libjansson-dev zlib1g zlib1g-dev libopenblas0-openmp libgfortran5 libquadmath0 libdnnl2
libdnnl-dev ocl-icd-libopencl1"
FMNIST=/usr/share/datasets/fashion-mnist
FORTUNES=/usr/share/games/fortunes

B=.gpu-bundle
mkdir -p "$B/debs" "$B/data/fashion-mnist"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# not_here MESSAGE: no mirror (or no apt): fatal, unless --if-possible
not_here() {
    if [ "$IF_POSSIBLE" = 1 ]; then
        echo "gpu-bundle: not made: $1 (test_gpu_bundle skips without a bundle)"
        exit 0
    fi
    echo "gpu-bundle: $1" >&2
    exit 1
}
command -v apt-get >/dev/null && command -v apt-cache >/dev/null ||
    not_here "apt-get not found (a Debian machine makes the bundle)"

# The candidate versions' records, one apt-cache call (each costs ~0.7 s): "PACKAGE VERSION SHA256" lines
records() {
    # shellcheck disable=SC2046
    apt-cache show --no-all-versions $(for p in $PACKAGES; do printf '%s:%s ' "$p" "$ARCH"; done) 2>/dev/null |
        awk '/^Package: /{p=$2} /^Version: /{v=$2} /^SHA256: /{s=$2}
             /^$/{if(p)print p, v, s; p=""} END{if(p)print p, v, s}'
}
records >"$tmp/records" || true
if ! grep -q '^libjansson4 ' "$tmp/records"; then
    # no package lists yet (a fresh container): read them once, as install-deps.sh does
    if [ "$(id -u)" -eq 0 ]; then sudo=""; elif command -v sudo >/dev/null; then sudo="sudo"; else
        not_here "apt knows no libjansson4 and updating its lists needs root"
    fi
    $sudo apt-get update -qq >/dev/null 2>&1 || not_here "apt-get update failed (no Debian mirror?)"
    records >"$tmp/records" || true
fi

# debs/: exactly the candidate versions of PACKAGES. Names are NAME_VERSION_ARCH.deb without the epoch
# (apt-get download writes it as %3a) and with only [A-Za-z0-9._+-]: they travel as plain file names.
: >"$tmp/keep"
manifest=""
missing=""
for p in $PACKAGES; do
    version=$(awk -v p="$p" '$1 == p { print $2 }' "$tmp/records")
    sha=$(awk -v p="$p" '$1 == p { print $3 }' "$tmp/records")
    [ -n "$version" ] && [ -n "$sha" ] || not_here "apt knows no $p:$ARCH"
    name=$(printf '%s_%s_%s.deb' "$p" "${version#*:}" "$ARCH" | tr -c 'A-Za-z0-9._+\n-' '_')
    echo "$p $name $sha" >>"$tmp/keep"
    [ -f "$B/debs/$name" ] && [ "$(sha256sum "$B/debs/$name" | cut -d' ' -f1)" = "$sha" ] ||
        missing="$missing $p:$ARCH"
    manifest="$manifest
deb debs/$name $version $sha"
done
if [ -n "$missing" ]; then # one apt-get call: each costs ~0.7 s of reading the lists
    # shellcheck disable=SC2086
    (cd "$tmp" && apt-get download -q $missing >download.log 2>&1) ||
        { cat "$tmp/download.log" >&2; not_here "apt-get download failed"; }
    for p in $missing; do
        p=${p%:*}
        got=$(ls "$tmp/${p}"_*.deb)
        name=$(awk -v p="$p" '$1 == p { print $2 }' "$tmp/keep")
        [ "$(sha256sum "$got" | cut -d' ' -f1)" = "$(awk -v p="$p" '$1 == p { print $3 }' "$tmp/keep")" ] ||
            not_here "$p: the download's SHA-256 is not the index's"
        mv "$got" "$B/debs/$name"
        echo "gpu-bundle: fetched $name"
    done
fi
for f in "$B"/debs/*; do # an older version, or a package no longer wanted, would be unpacked too
    [ -e "$f" ] || continue
    cut -d' ' -f2 "$tmp/keep" | grep -qxF "$(basename "$f")" && continue
    rm -f "$f"
    echo "gpu-bundle: removed $(basename "$f")"
done

# data/: the files the GPU checks train on, as the CPU runs here read them
for f in train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz; do
    [ -f "$FMNIST/$f" ] || { echo "gpu-bundle: $FMNIST/$f missing: run make deps (dataset-fashion-mnist)" >&2; exit 1; }
    cmp -s "$FMNIST/$f" "$B/data/fashion-mnist/$f" || cp "$FMNIST/$f" "$B/data/fashion-mnist/$f"
done
# The corpus reader (src/data/text.c) reads a folder's regular files, not *.dat, in byte order of their
# names, and appends them as they are: the same order, the same bytes.
[ -d "$FORTUNES" ] || { echo "gpu-bundle: $FORTUNES missing: run make deps (fortunes)" >&2; exit 1; }
: >"$tmp/fortunes.txt"
for f in $(cd "$FORTUNES" && find . -maxdepth 1 -type f ! -name '*.dat' | sed 's|^\./||' | LC_ALL=C sort); do
    cat "$FORTUNES/$f" >>"$tmp/fortunes.txt"
done
cmp -s "$tmp/fortunes.txt" "$B/data/fortunes.txt" || mv "$tmp/fortunes.txt" "$B/data/fortunes.txt"

# A prefix unpacked here (scripts/gpu-prefix.sh) would travel too: ~85 MB, past the carry limit, and
# with this machine's paths in it. The GPU machine unpacks its own.
if [ -e "$B/prefix" ]; then
    rm -rf "$B/prefix"
    echo "gpu-bundle: removed $B/prefix (it would travel; the GPU machine makes its own)"
fi

for f in "$B"/data/fashion-mnist/* "$B/data/fortunes.txt"; do
    manifest="$manifest
data ${f#"$B"/} - $(sha256sum "$f" | cut -d' ' -f1)"
done
total=$(du -sb "$B" --exclude=MANIFEST | cut -f1)
{
    echo "# scripts/gpu-bundle.sh, $(date -u '+%Y-%m-%d %H:%M UTC'): kind path version sha256 bytes"
    echo "$manifest" | sed '/^$/d' | while read -r kind path version sha; do
        echo "$kind $path $version $sha $(stat -c %s "$B/$path")"
    done
    echo "total $total"
} >"$B/MANIFEST"
echo "gpu-bundle: $B: $(ls "$B/debs" | wc -l) packages, Fashion-MNIST, fortunes.txt: $total bytes" \
    "($(awk "BEGIN { printf \"%.1f\", $total / 1048576 }") MiB of the device tool's 64 MiB carry limit)"
