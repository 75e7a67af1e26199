#!/usr/bin/env bash
# Prepare the GPU tier for a CUDA machine without network: wheels into .gpu/ (git-ignored).
#
#   bash scripts/gpu_prepare.sh    # here: network and the project's .venv (make setup)
#   bash scripts/gpu_run.sh        # there, in a copy of the checkout that carries .gpu/
#
# A CUDA image brings Python 3.12, torch with CUDA and the common scientific stack (numpy,
# pyarrow, fsspec, pyyaml, click, rich, einops, msgpack, ninja, psutil, py-cpuinfo, tqdm; see the
# README's "GPU" section). .gpu/ adds what the trainer and the tier import beyond that: accord
# itself (pure Python, built from this checkout), DeepSpeed (an sdist: built here, pure Python
# until its ops are JIT-compiled there), and DeepSpeed's and pytest's dependencies as wheels for
# CPython $ACCORD_GPU_PYTHON, all at the lock's versions (requirements/constraints.txt); and the
# DNSMOS check's data (below).
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PY:-.venv/bin/python}
DIR=${ACCORD_GPU_DIR:-.gpu}
PYVER=${ACCORD_GPU_PYTHON:-3.12}
# the DeepSpeed runtime dependencies a CUDA image lacks, pytest, and what the tier's shards use
DOWNLOAD=(hjson pydantic pydantic_core annotated-types typing-inspection typing_extensions
          webdataset braceexpand packaging pytest pluggy iniconfig Pygments)

pinned() {  # NAME -> NAME==VERSION from the lock (names compare case- and -/_-insensitively)
  local want; want=$(echo "$1" | tr 'A-Z_' 'a-z-')
  local line
  line=$(awk -F'==' -v w="$want" '{n=tolower($1); gsub("_","-",n); if (n==w) print}' \
         requirements/constraints.txt)
  [[ -n "$line" ]] || { echo "gpu_prepare: $1 is not in requirements/constraints.txt" >&2; exit 1; }
  echo "$line"
}

rm -rf "$DIR"
mkdir -p "$DIR"
"$PY" -m pip wheel -q --no-deps --no-build-isolation -w "$DIR" .
"$PY" -m pip wheel -q --no-deps --no-build-isolation -w "$DIR" "$(pinned deepspeed)"
specs=()
for name in "${DOWNLOAD[@]}"; do specs+=("$(pinned "$name")"); done
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version "$PYVER" --implementation cp \
  --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 -d "$DIR" "${specs[@]}"
# DNSMOS P.835 on the GPU (tests/gpu/test_dnsmos_cuda.py): the image has no scipy, soundfile, onnx
# or moonshine_voice, so the real-speech windows, ONNX Runtime's outputs and the weights go along
"$PY" tests/pipeline_steps/dnsmos_windows.py "$DIR/dnsmos_fixture.npz"
echo "gpu_prepare: $(ls "$DIR"/*.whl | wc -l) wheels in $DIR ($(du -sh "$DIR" | cut -f1)):"
ls "$DIR"
