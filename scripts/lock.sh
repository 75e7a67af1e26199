#!/usr/bin/env bash
# Regenerate requirements/constraints.txt: resolve the dev install once in a scratch venv
# (no constraints), then freeze it. Review the diff before committing.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3.11 -m venv "$tmp/venv"
"$tmp/venv/bin/pip" install -q "pip==25.3"
"$tmp/venv/bin/pip" install -q "torch==2.11.0" "torchaudio==2.11.0" -e ".[pipeline,train,nemo,models,dev]"
{
  echo "# Lock: every Python package of the dev install, pinned (pip freeze of one resolve). Regenerate with scripts/lock.sh."
  "$tmp/venv/bin/pip" freeze --all --exclude-editable | grep -v -E "^(accord|descript-audio|pip)=="
  echo "descript-audio-codec==1.0.0"
  echo "descript-audiotools==0.7.2"
} > requirements/constraints.txt
echo "wrote requirements/constraints.txt"
