"""What the trainer asks of an evaluation: the :class:`Evaluator` it is given (as torchtitan's
``TrainSpec`` gives its validator), never one it builds.

When: once per stage, after the stage's weights are exported to ``final/`` and its summary is
written, on rank 0 only, if the stage runs its eval (``StageArgs.run_eval``, by default the
recipe's ``eval.enabled``; ``accord train --no-eval`` turns it off). A trainer given no
evaluator evaluates nothing.

With what: the exported ``final/`` (ZONOS2 layout), the shards root the stage trained on (its
``tokenize.json`` names the codec and speaker encoder), the resolved :class:`Recipe` (its
``eval`` section: sentence count, frame cap, ASR, speaker and codec refs; its
``conditioning``: what the stage conditions on) and the trainer's device.

What it returns: the report, a JSON-ready dict. The trainer writes all of it to
``RUN/<stage>/eval.json`` and keeps it without its per-sentence ``items`` in ``result.json``'s
``eval``. An evaluator that raises loses nothing: the trainer records
``{"error": "<type>: <message>"}`` in both instead, the weights already being written.

The mini-eval ``accord train`` wires in (synthesis, ASR, speaker similarity) is
``accord.app.evaluation.mini_eval``: it stands above train/, which imports no ASR backend.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import torch

from accord.train.recipe import Recipe

EVAL_JSON = "eval.json"  # the report's name in a stage's run directory
REPORT_ITEMS = "items"  # the report's per-sentence details: eval.json only, not result.json


class Evaluator(Protocol):
    """Evaluates a stage's exported weights; a plain function of this signature is one."""

    def __call__(
        self, final_dir: Path, shards: str, recipe: Recipe, device: torch.device
    ) -> dict[str, Any]: ...
