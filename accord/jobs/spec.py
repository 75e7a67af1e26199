"""A step by import path: what a job ships to its workers, which build the step there."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

from accord.jobs.step import Step


def load_target(path: str) -> Any:
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


@dataclass(frozen=True)
class StepSpec:
    """A step class by import path, its config class and the config's fields (picklable).

    Built inside the Ray worker: ``Step(config=Config(**kwargs))`` (or ``Step(**kwargs)``
    when the step has no config class), then ``setup()`` once.
    """

    target: str  # "package.module:StepClass"
    config_target: str | None = None  # "package.module:ConfigClass"
    kwargs: dict[str, Any] = field(default_factory=dict)

    def build(self) -> Step:
        cls = load_target(self.target)
        if self.config_target:
            step = cls(config=load_target(self.config_target)(**self.kwargs))
        else:
            step = cls(**self.kwargs)
        step.setup()
        return step

    @property
    def label(self) -> str:
        return self.target.rpartition(":")[2]
