#!/bin/sh
# Makes the virtual environment of the interoperability tests (tests/interop/): Python's own `safetensors`,
# `numpy` and `tensorboard` from PyPI, the readers other people use, in .venv-interop (git-ignored).
# Idempotent: a stamp file naming the packages marks a finished install, so a second run costs nothing.
#   scripts/interop-venv.sh [VENV_DIR]
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
venv=${1:-$root/.venv-interop}
packages="safetensors numpy tensorboard"
stamp="$venv/.magna-interop"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$packages" ]; then exit 0; fi
# python3 -m venv needs Debian's python3-venv (scripts/install-deps.sh installs it)
python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check $packages
echo "$packages" > "$stamp"
echo "interop-venv: $venv holds $("$venv/bin/python" -c 'import safetensors, numpy, tensorboard as t; print("safetensors", safetensors.__version__, "numpy", numpy.__version__, "tensorboard", t.__version__)')"
