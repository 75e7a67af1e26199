#!/usr/bin/env bash
# Idempotent setup: apt packages, .venv, and every Python dependency in one pip resolve
# from requirements/constraints.txt (the lock). Re-running is a fast no-op.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(espeak-ng flite festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts
  ffmpeg libsndfile1 sox chromium)
missing=()
for p in "${APT_PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing apt packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PYTHON=${PYTHON:-python3.11}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $PYTHON"
  "$PYTHON" -m venv .venv
fi

stamp=.venv/.accord-setup
want=$(cat pyproject.toml setup.py requirements/constraints.txt scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
echo "setup: installing Python dependencies (one resolve from requirements/constraints.txt)"
.venv/bin/python -m pip install -q --upgrade "pip==25.3"
# One resolve: the project with every extra the tests need, pinned by the lock.
.venv/bin/python -m pip install -q -c requirements/constraints.txt -e ".[pipeline,train,nemo,models,dev]"
# descript-audio-codec pins protobuf<3.20 through descript-audiotools, which conflicts with
# ray/onnx/nemo. Their runtime deps are in the [pipeline] extra above; the two packages
# themselves go in without deps (nothing else is resolved here).
.venv/bin/python -m pip install -q --no-deps -c requirements/constraints.txt \
  descript-audio-codec==1.0.0 descript-audiotools==0.7.2
.venv/bin/python -m pip check >/dev/null 2>&1 || .venv/bin/python -m pip check | grep -v -E "descript-audiotools|^$" || true
echo "$want" > "$stamp"
echo "setup: done"
