"""The four stages in order: pretrain -> midtrain -> anneal1 -> anneal2.

Each stage starts from the previous stage's exported final weights only (optimizer, LR
schedule and data position start fresh, as the recipes define) and runs in its own
``RUN/<stage>/`` directory with its resolved config beside its checkpoints. A stage whose
``final/`` already exists is skipped on a re-run, so an interrupted curriculum resumes at the
stage it was in (and that stage resumes from its own latest checkpoint).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch.distributed as dist

from accord.core.stages import STAGES, stages_from
from accord.core.storage import write_json_atomic
from accord.train.evaluator import Evaluator
from accord.train.stage import StageArgs, run_stage

log = logging.getLogger(__name__)


def run_curriculum(
    base: StageArgs,
    steps_per_stage: int | None = None,
    start: str = "pretrain",
    evaluator: Evaluator | None = None,
) -> dict[str, Any]:
    """Run ``start`` and every later stage, each evaluated by ``evaluator`` if given; ``base.stage``
    and ``base.run_dir`` are replaced per stage."""
    run_root = Path(base.run_dir)
    init = base.init
    results: dict[str, Any] = {}
    for stage in stages_from(start):
        stage_dir = run_root / stage
        final = stage_dir / "final"
        if (final / "params.json").exists() and (stage_dir / "result.json").exists():
            log.info("%s already finished: %s", stage, final)
            results[stage] = {"skipped": True, "final": str(final)}
        else:
            args = replace(
                base, stage=stage, run_dir=stage_dir, init=init, steps=steps_per_stage or base.steps
            )
            results[stage] = run_stage(args, evaluator=evaluator)
        init = final
    if not dist.is_initialized() or dist.get_rank() == 0:
        summary = {
            s: {k: v for k, v in r.items() if k != "logged_losses"} | {"stage_order": STAGES.index(s)}
            for s, r in results.items()
        }
        write_json_atomic(run_root / "curriculum.json", summary)
    return results
