#!/bin/sh
# Installs the Debian packages magna needs, by name, only those not installed yet (so a second run
# costs nothing): `apt-get update` once, then `apt-get install -y`.
#   scripts/install-deps.sh          build + test packages, with the data sets the tests and demos read
#   scripts/install-deps.sh bench    also the PyTorch builds the benchmarks compare against
set -eu

# data sets (DESIGN §4): python3-sklearn ships Boston housing, iris and digits; dataset-fashion-mnist.
# fortunes: the fortune cookies, the default corpus of the language models (models/char-*.ini).
# python3-venv: the interoperability tests' virtual environment (scripts/interop-venv.sh, made by ctest).
# libopenmpi-dev openmpi-bin: data-parallel training across processes (src/dist; mpiexec runs test_dist).
packages="build-essential cmake pkg-config libopenblas-openmp-dev libdnnl-dev zlib1g-dev libjansson-dev python3-sklearn
dataset-fashion-mnist fortunes python3-venv libopenmpi-dev openmpi-bin"
case "${1:-}" in
    bench) packages="$packages python3-torch" ;;
esac

missing=""
for p in $packages; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" -eq 0 ]; then sudo=""; elif command -v sudo >/dev/null; then sudo="sudo"; else
    echo "install-deps: need root (or sudo) to install:$missing" >&2
    exit 1
fi
echo "install-deps: installing$missing"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
# shellcheck disable=SC2086
$sudo apt-get install -y -qq --no-install-recommends $missing
