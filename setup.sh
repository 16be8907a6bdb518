#!/usr/bin/env bash
# Creates ./.venv and installs dineuro into it; safe to run again (it then installs nothing new).
# Order matters: the CPU build of torch goes in first, so that `torch>=2.2` in our dependencies
# is already satisfied and pip does not pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check "torch==2.13.0"
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[dev]"
