#!/usr/bin/env bash
# Set up the autograder: a virtual environment in .venv with the pinned requirements, and the
# model P6 grades with. Idempotent: a second run installs nothing new and reuses the model.
#
# Gradescope runs this once when it builds the autograder image (as root, with network); the zip
# `python -m autograder package` builds adds a setup.env with Gradescope's settings. It fetches
# GPT-2 small from the hub when the network allows; otherwise it builds the project's tiny GPT-2
# from a fixed seed, and says which one grading will use by default.
#
# Environment (setup.env beside this script may set them too; the environment wins):
#   PYTHON                    interpreter for the venv (default python3)
#   AUTOGRADER_TORCH=cpu      torch's CPU build (the default, for everyone): taken from
#                             AUTOGRADER_TORCH_INDEX when that index answers within a few
#                             seconds, else from the usual index (PyPI or a local mirror)
#   AUTOGRADER_TORCH=cuda     torch as PyPI ships it for Linux: the multi-GB CUDA build
#   AUTOGRADER_TORCH_INDEX    the CPU build's index (default https://download.pytorch.org/whl/cpu)
#   AUTOGRADER_NO_GPT2=1      do not try to fetch GPT-2 (the default model is then the tiny one)
#   AUTOGRADER_REQUIRE_GPT2=1 fail unless GPT-2 small is ready (set in the Gradescope package, so
#                             an image never grades students with the tiny test model)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
# Run as /autograder/setup.sh beside source/ (Gradescope's layout), work in source/.
if [ ! -d autograder ] && [ -d source/autograder ]; then cd source; fi
if [ -f setup.env ]; then . ./setup.env; fi
PYTHON=${PYTHON:-python3}
TORCH=${AUTOGRADER_TORCH:-cpu}
TORCH_INDEX=${AUTOGRADER_TORCH_INDEX:-https://download.pytorch.org/whl/cpu}
case "$TORCH" in cpu|cuda) ;; *) echo "setup.sh: AUTOGRADER_TORCH must be cpu or cuda, not '$TORCH'" >&2; exit 2;; esac

if ! "$PYTHON" -c "import venv, ensurepip" 2>/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "setup.sh: installing python3-venv"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv python3-pip >/dev/null
fi
if [ -e .venv ] && ! .venv/bin/python -c "import sys" >/dev/null 2>&1; then
  # e.g. a .venv copied from another machine, or whose Python was removed: it cannot be repaired
  echo "setup.sh: .venv's interpreter cannot run; rebuilding .venv"
  rm -rf .venv
fi
if [ ! -x .venv/bin/python ]; then
  echo "setup.sh: creating .venv"
  "$PYTHON" -m venv .venv
fi

# Answers within a few seconds, or is treated as unreachable: an index that is not there must
# neither break nor slow the set-up (pip would retry it for minutes).
reachable() {
  timeout 8 "$PYTHON" -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=5)" "$1" \
    >/dev/null 2>&1
}

stamp=.venv/.requirements.sha256
want=$( (cat requirements.txt; echo "torch=$TORCH") | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  extra=()
  if [ "$TORCH" = cpu ]; then
    if reachable "$TORCH_INDEX/"; then
      extra=(--extra-index-url "$TORCH_INDEX")
      echo "setup.sh: installing requirements.txt into .venv (torch's CPU build from $TORCH_INDEX)"
      if .venv/bin/python -c "import sys, torch; sys.exit(torch.version.cuda is None)" 2>/dev/null; then
        echo "setup.sh: replacing torch's CUDA build in .venv with the CPU build"
        .venv/bin/python -m pip uninstall --quiet --yes torch
      fi
    else
      echo "setup.sh: installing requirements.txt into .venv ($TORCH_INDEX does not answer: torch from the usual index)"
    fi
  else
    echo "setup.sh: installing requirements.txt into .venv (torch's CUDA build, as PyPI ships it)"
  fi
  .venv/bin/python -m pip install --quiet --disable-pip-version-check "${extra[@]}" -r requirements.txt
  echo "$want" > "$stamp"
else
  echo "setup.sh: .venv is up to date"
fi

flags=()
[ -n "${AUTOGRADER_NO_GPT2:-}" ] && flags=(--no-gpt2)
if [ "$(id -u)" = 0 ]; then .venv/bin/python -m autograder prepare-sandbox; fi
.venv/bin/python -m autograder prepare-model "${flags[@]}"
if [ "${AUTOGRADER_REQUIRE_GPT2:-0}" = 1 ] && \
   ! .venv/bin/python -c "import sys; from autograder import models; sys.exit(models.default_model_spec() != 'gpt2')"; then
  echo "setup.sh: GPT-2 small could not be fetched (see above), and AUTOGRADER_REQUIRE_GPT2=1: P6 must not be graded" \
       "with the tiny test model. Build where huggingface.co is reachable, or set AUTOGRADER_REQUIRE_GPT2=0." >&2
  exit 1
fi
