#!/usr/bin/env bash
# Set up the autograder: a virtual environment in .venv with the pinned requirements, and the
# model P6 grades with. Idempotent: a second run installs nothing new and reuses the model.
#
# Gradescope runs this once when it builds the autograder image (as root, with network). Here it
# fetches GPT-2 small from the hub when the network allows; otherwise it builds the project's
# tiny GPT-2 from a fixed seed, and says which one grading will use by default.
#
# Environment:
#   PYTHON                 interpreter for the venv (default python3)
#   AUTOGRADER_NO_GPT2=1   do not try to fetch GPT-2 (the default model is then the tiny one)
#   AUTOGRADER_TORCH_INDEX extra package index for torch, e.g. https://download.pytorch.org/whl/cpu
#                          on Gradescope, where PyPI's torch is the multi-GB CUDA build
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
PYTHON=${PYTHON:-python3}

if ! "$PYTHON" -c "import venv, ensurepip" 2>/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "setup.sh: installing python3-venv"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv python3-pip >/dev/null
fi
if [ ! -x .venv/bin/python ]; then
  echo "setup.sh: creating .venv"
  "$PYTHON" -m venv .venv
fi

stamp=.venv/.requirements.sha256
want=$(sha256sum requirements.txt | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup.sh: installing requirements.txt into .venv"
  extra=()
  [ -n "${AUTOGRADER_TORCH_INDEX:-}" ] && extra=(--extra-index-url "$AUTOGRADER_TORCH_INDEX")
  .venv/bin/python -m pip install --quiet --disable-pip-version-check "${extra[@]}" -r requirements.txt
  echo "$want" > "$stamp"
else
  echo "setup.sh: .venv is up to date"
fi

flags=()
[ -n "${AUTOGRADER_NO_GPT2:-}" ] && flags=(--no-gpt2)
if [ "$(id -u)" = 0 ]; then .venv/bin/python -m autograder prepare-sandbox; fi
.venv/bin/python -m autograder prepare-model "${flags[@]}"
