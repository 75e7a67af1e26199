#!/usr/bin/env bash
# The GPU tier on one CUDA machine (`make test-gpu` runs this):
#   1. installs .gpu/ (scripts/gpu_prepare.sh) with `pip --no-index --target .gpu/site`, when present;
#      without it, the project's .venv (or $PYTHON) is used as it is;
#   2. runs the pytest tier (tests/gpu: curriculum + kill/resume, engine parity, KV cache, MoE and
#      attention kernels, ZONOS2 round trip, host syncs, DNSMOS P.835 on the device);
#   3. the drill: `accord train curriculum --model small` on synthetic shards with the recipes'
#      defaults (activation checkpointing on, ZeRO 1, bf16), SIGKILLed mid-pretrain and resumed;
#      prints frames/s and peak GPU memory per stage, and writes them to $OUT/gpu_tier.json
#      ($OUT if set, else the work dir it prints).
#
# Knobs: ACCORD_GPU_TIER_DEVICE=cpu rehearses all of it on the CPU (fp32, tiny shapes);
# ACCORD_GPU_TIER_STEPS (steps per stage in the tier), ACCORD_GPU_DRILL_STEPS (default 12),
# ACCORD_GPU_DRILL_MODEL (default small), ACCORD_GPU_DRILL_SET ("KEY=VALUE ..." recipe overrides,
# e.g. for a CPU rehearsal), ACCORD_GPU_SKIP_TIER=1 (drill only), PYTHON (the interpreter),
# ACCORD_GPU_TIER_TIMEOUT / ACCORD_GPU_DRILL_TIMEOUT (seconds for the pytest tier / each drill
# run, default none: a borrowed machine's time is short, and a hang must not eat the rest).
# The drill's logs land beside the report.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
DIR=${ACCORD_GPU_DIR:-.gpu}
t0=$SECONDS

if compgen -G "$DIR/*.whl" >/dev/null; then
  PY=${PYTHON:-python3}
  # --ignore-requires-python: the 3.12 wheels are the point; accord's metadata may lag behind
  "$PY" -m pip install -q --no-index --no-deps --ignore-requires-python --upgrade --target "$DIR/site" "$DIR"/*.whl
  export PYTHONPATH="$REPO/$DIR/site${PYTHONPATH:+:$PYTHONPATH}"
  export PATH="$REPO/$DIR/site/bin:$PATH"
  echo "gpu_run: installed $DIR into $DIR/site in $((SECONDS - t0)) s"
else
  PY=${PYTHON:-.venv/bin/python}
  echo "gpu_run: no wheels in $DIR (scripts/gpu_prepare.sh); using $PY as it is"
fi
export PYTHONSAFEPATH=1  # the installed accord, never the checkout's folders on sys.path[0]
DEVICE=${ACCORD_GPU_TIER_DEVICE:-cuda}
export ACCORD_GPU_TIER_DEVICE=$DEVICE
if [[ $DEVICE == cuda ]]; then export DS_ACCELERATOR=cuda; else export DS_ACCELERATOR=cpu; fi
export TORCH_EXTENSIONS_DIR=${TORCH_EXTENSIONS_DIR:-$REPO/$DIR/torch_extensions}
export ACCORD_CACHE=${ACCORD_CACHE:-$REPO/$DIR/cache}
export RAY_USAGE_STATS_ENABLED=0 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
WORK=$(mktemp -d "${TMPDIR:-/tmp}/accord-gpu.XXXXXX")
REPORT_DIR=${OUT:-$WORK}
mkdir -p "$REPORT_DIR"
export ACCORD_GPU_TIER_REPORT=$REPORT_DIR
"$PY" -c "import torch; print('gpu_run: torch', torch.__version__, 'cuda', torch.cuda.is_available(),
torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"

tier_rc=0
if [[ ${ACCORD_GPU_SKIP_TIER:-0} != 1 ]]; then
  t1=$SECONDS
  # every module that holds gpu-marked tests (kernels, decoding, attention backends) besides tests/gpu
  ${ACCORD_GPU_TIER_TIMEOUT:+timeout -s INT -k 30 "$ACCORD_GPU_TIER_TIMEOUT"} "$PY" -m pytest -q -m gpu -p no:cacheprovider --durations=10 tests/gpu tests/train/test_step_metrics.py \
    tests/model/test_moe.py tests/model/test_decode.py tests/model/test_attention_backends.py \
    tests/model/test_layers.py \
    || tier_rc=$?
  echo "gpu_run: tier rc=$tier_rc in $((SECONDS - t1)) s"
fi

# --- the drill -------------------------------------------------------------------------------
t2=$SECONDS
STEPS=${ACCORD_GPU_DRILL_STEPS:-12}
SHARDS=$WORK/shards
RUN=$WORK/run
"$PY" -c "import sys; from accord.train.synthetic import write_synthetic_shards as w; \
w(sys.argv[1], n_clips=400, n_shards=4, frames=(100, 600))" "$SHARDS"
ARGS=(train curriculum --shards "$SHARDS" --model "${ACCORD_GPU_DRILL_MODEL:-small}" --run "$RUN"
      --steps-per-stage "$STEPS" --no-eval --set "ckpt_every=$(( STEPS / 2 > 0 ? STEPS / 2 : 1 ))"
      --set log_every=1)
for kv in ${ACCORD_GPU_DRILL_SET:-}; do ARGS+=(--set "$kv"); done
"$PY" -m accord.cli.main "${ARGS[@]}" >"$REPORT_DIR/drill_killed.log" 2>&1 &
pid=$!  # the interpreter itself (no `timeout` between): the SIGKILL below must reach it
latest=$RUN/pretrain/checkpoints/latest
deadline=$((SECONDS + ${ACCORD_GPU_DRILL_TIMEOUT:-86400}))
while kill -0 "$pid" 2>/dev/null && [[ ! -s $latest ]] && ((SECONDS < deadline)); do sleep 0.2; done
killed_at=$(cat "$latest" 2>/dev/null || true)
kill -9 "$pid" 2>/dev/null || true
wait "$pid" 2>/dev/null || true
if [[ -z $killed_at || -e $RUN/pretrain/result.json ]]; then
  echo "gpu_run: the drill ended before it could be killed mid-pretrain" >&2
  tail -30 "$REPORT_DIR/drill_killed.log" >&2
  exit 1
fi
echo "gpu_run: killed the curriculum after pretrain checkpoint $killed_at; resuming"
drill_rc=0
${ACCORD_GPU_DRILL_TIMEOUT:+timeout "$ACCORD_GPU_DRILL_TIMEOUT"} \
  "$PY" -m accord.cli.main "${ARGS[@]}" >"$REPORT_DIR/drill_resumed.log" 2>&1 || drill_rc=$?
[[ $drill_rc == 0 ]] || tail -40 "$REPORT_DIR/drill_resumed.log" >&2

"$PY" - "$RUN" "$REPORT_DIR/gpu_tier.json" "$killed_at" "$tier_rc" "$drill_rc" "$((SECONDS - t0))" \
  "$REPORT_DIR/drill_resumed.log" <<'EOF'
import json, math, statistics, sys
from pathlib import Path

from accord.core.stages import STAGES
from accord.train.metrics import read_metrics

run, out, killed_at, tier_rc, drill_rc, seconds, log = sys.argv[1:]
report = {"killed_at": killed_at, "tier_rc": int(tier_rc), "drill_rc": int(drill_rc),
          "seconds": int(seconds), "resumed": "resumed from" in Path(log).read_text(), "stages": {}}
for stage in STAGES:
    d = Path(run) / stage
    if not (d / "result.json").is_file():
        continue
    r = json.loads((d / "result.json").read_text())
    rows = read_metrics(d)
    losses = [row["loss"] for row in rows]
    report["stages"][stage] = {
        # steady state: the median step (the first ones pay for warm-up, some for checkpoints)
        "frames_per_s": round(statistics.median(row["tokens_per_s"] for row in rows)),
        "frames_per_s_overall": round(r["frames_per_s"]),
        "peak_memory_gib": r.get("peak_memory_gib") and round(r["peak_memory_gib"], 2),
        "steps": r["steps"],
        "first_loss": losses[0],
        "last_loss": losses[-1],
        "finite": all(math.isfinite(x) for x in losses),
    }
Path(out).write_text(json.dumps(report, indent=2))
print(f"{'stage':10} {'frames/s':>10} {'peak GiB':>9} {'loss first -> last':>22}")
for name, s in report["stages"].items():
    print(f"{name:10} {s['frames_per_s']:>10} {str(s['peak_memory_gib']):>9} "
          f"{s['first_loss']:>10.4f} -> {s['last_loss']:.4f}")
print(f"gpu_run: report {out}")
ok = report["tier_rc"] == 0 and report["drill_rc"] == 0 and report["resumed"] and len(report["stages"]) == 4
sys.exit(0 if ok and all(s["finite"] for s in report["stages"].values()) else 1)
EOF
echo "gpu_run: drill in $((SECONDS - t2)) s, all in $((SECONDS - t0)) s"
