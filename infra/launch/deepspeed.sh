#!/usr/bin/env bash
# Multi-node training with the DeepSpeed launcher (ssh/pdsh from this node to every host in the hostfile).
#   infra/launch/deepspeed.sh STAGE [accord train options...]
#   HOSTFILE=infra/launch/hostfile infra/launch/deepspeed.sh pretrain --shards s3://B/shards --model zonos2-8b --run-dir s3://B/run/pretrain
# The stage's DeepSpeed config (infra/deepspeed/STAGE.json, override with ACCORD_DEEPSPEED_CONFIG) is passed
# as --deepspeed-config (merged over the config the trainer generates from the stage recipe). Ranks get
# RANK / LOCAL_RANK / WORLD_SIZE from the environment
# (--no_local_rank: no --local_rank argument is appended to the accord command line).
set -euo pipefail
source "$(dirname "$0")/common.sh"
[ $# -ge 1 ] || { echo "usage: $0 STAGE [accord train options...]" >&2; exit 2; }
STAGE=$1; shift
accord_stage_check "$STAGE"
HOSTFILE=${HOSTFILE:-$ACCORD_ROOT/infra/launch/hostfile}
MASTER_PORT=${MASTER_PORT:-29500}
# Variables the launcher forwards to every node (DeepSpeed reads this file from the launch dir).
printf '%s\n' "ACCORD_DEEPSPEED_CONFIG=$ACCORD_DEEPSPEED_CONFIG" "TORCH_EXTENSIONS_DIR=$TORCH_EXTENSIONS_DIR" \
  "OMP_NUM_THREADS=$OMP_NUM_THREADS" "RAY_USAGE_STATS_ENABLED=0" "TOKENIZERS_PARALLELISM=false" \
  ${ACCORD_MODELS:+"ACCORD_MODELS=$ACCORD_MODELS"} > "${DS_ENV_FILE:-$PWD/.deepspeed_env}"
accord_run deepspeed --hostfile "$HOSTFILE" --master_port "$MASTER_PORT" --no_local_rank \
  --module accord.cli.main train "$STAGE" --deepspeed-config "$ACCORD_DEEPSPEED_CONFIG" "$@"
