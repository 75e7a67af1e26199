#!/usr/bin/env bash
# Multi-node training with torchrun (elastic c10d rendezvous): run this same command on every node.
#   NNODES=4 NPROC_PER_NODE=8 RDZV_ENDPOINT=train-node-0:29400 \
#     infra/launch/torchrun.sh pretrain --shards s3://B/shards --model zonos2-8b --run-dir s3://B/run/pretrain
# (spell the run dir --run-dir: torchrun's own parser would claim an abbreviated --run).
# One node, CPU: NNODES=1 NPROC_PER_NODE=2 DS_ACCELERATOR=cpu infra/launch/torchrun.sh pretrain ...
set -euo pipefail
source "$(dirname "$0")/common.sh"
[ $# -ge 1 ] || { echo "usage: $0 STAGE [accord train options...]" >&2; exit 2; }
STAGE=$1; shift
accord_stage_check "$STAGE"
NNODES=${NNODES:-1}
NPROC_PER_NODE=${NPROC_PER_NODE:-gpu}
RDZV_ENDPOINT=${RDZV_ENDPOINT:-localhost:29400}
RDZV_ID=${RDZV_ID:-accord-$STAGE}
accord_run torchrun --nnodes "$NNODES" --nproc-per-node "$NPROC_PER_NODE" \
  --rdzv-backend c10d --rdzv-endpoint "$RDZV_ENDPOINT" --rdzv-id "$RDZV_ID" \
  --max-restarts "${MAX_RESTARTS:-0}" \
  -m accord.cli.main train "$STAGE" --deepspeed-config "$ACCORD_DEEPSPEED_CONFIG" "$@"
