# Shared by the launch scripts (sourced, not run): the stage's DeepSpeed config and the env every rank needs.
# shellcheck shell=bash
ACCORD_ROOT=${ACCORD_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
STAGES="pretrain midtrain anneal1 anneal2"

accord_stage_check() {
  local stage=$1
  case " $STAGES " in
    *" $stage "*) ;;
    *) echo "unknown stage '$stage'; expected one of: $STAGES" >&2; return 2 ;;
  esac
  ACCORD_DEEPSPEED_CONFIG=${ACCORD_DEEPSPEED_CONFIG:-$ACCORD_ROOT/infra/deepspeed/$stage.json}
  if [ ! -f "$ACCORD_DEEPSPEED_CONFIG" ]; then
    echo "DeepSpeed config not found: $ACCORD_DEEPSPEED_CONFIG" >&2
    return 2
  fi
  export ACCORD_DEEPSPEED_CONFIG
}

export RAY_USAGE_STATS_ENABLED=${RAY_USAGE_STATS_ENABLED:-0}
export TOKENIZERS_PARALLELISM=${TOKENIZERS_PARALLELISM:-false}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-4}
export TORCH_EXTENSIONS_DIR=${TORCH_EXTENSIONS_DIR:-$HOME/.cache/torch_extensions}
export NCCL_ASYNC_ERROR_HANDLING=${NCCL_ASYNC_ERROR_HANDLING:-1}

# ACCORD_LAUNCH_DRY_RUN=1 prints the command instead of running it (used by tests/infra).
accord_run() {
  if [ "${ACCORD_LAUNCH_DRY_RUN:-0}" = 1 ]; then
    printf '%q ' "$@"
    echo
  else
    exec "$@"
  fi
}
