#!/usr/bin/env bash
# Create .venv (if missing) and install pinned dependencies into it.
# torch comes first from PyTorch's CPU index unless ACELORA_TORCH_INDEX names another
# (e.g. https://download.pytorch.org/whl/cu128 on an NVIDIA machine), because PyPI's
# default Linux wheel is a multi-GB CUDA build that a CPU machine doesn't need.
set -euo pipefail
cd "$(dirname "$0")/.."
want=${1:-requirements.txt}
if [ "$want" = requirements-dev.txt ]; then
  # The suite also drives Debian's chromium (browser tests) and nginx (the APP_PASSWORD proxy,
  # tests/app/test_proxy.py); installed here so the README's one test command is the whole setup.
  ./scripts/test_system_packages.sh
fi
py=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$py" -m venv .venv
index=${ACELORA_TORCH_INDEX:-https://download.pytorch.org/whl/cpu}
pip=(.venv/bin/python -m pip install -q --disable-pip-version-check)
torch_pin=$(grep -E '^torch==' requirements.txt)
# numpy goes in with torch: torch does not depend on it, and importing torch before numpy is
# installed prints "Failed to initialize NumPy: No module named 'numpy'" (an install-order
# artefact, not an ABI mismatch: torch 2.13 works with numpy 2.x).
numpy_pin=$(grep -E '^numpy==' requirements.txt)
if ! .venv/bin/python -c "import numpy, torch" 2>/dev/null; then
  "${pip[@]}" --extra-index-url "$index" "$torch_pin" "$numpy_pin" 2>&1 | grep -v -e "is ignored" -e "Retrying" || true
  .venv/bin/python -W error::UserWarning -c "import torch" || { echo "torch failed to install; see the messages above" >&2; exit 1; }
fi
"${pip[@]}" -r "$want" 2>&1 | grep -v "is ignored" || true
.venv/bin/python -c "import diffusers, peft, streamlit, soundfile" || { echo "dependency install failed; see the messages above" >&2; exit 1; }
