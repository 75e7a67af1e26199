"""A step by class (or import path): what a job ships to its workers, which build the step there."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

from accord.jobs.step import Step


def load_target(path: str) -> Any:
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


def resolve(target: type | str) -> Any:
    """A class, or the class a ``"package.module:Class"`` path names."""
    return load_target(target) if isinstance(target, str) else target


def path_of(target: type | str) -> str:
    """``"package.module:Class"`` of a class (a path stays as it is)."""
    return target if isinstance(target, str) else f"{target.__module__}:{target.__qualname__}"


@dataclass(frozen=True)
class StepSpec:
    """A step class, its config class and the config's fields (picklable: Ray ships classes by
    reference, so the step's module must be importable on every worker).

    Plans name classes; a ``"package.module:Class"`` path (a site's ``step_targets`` override) is
    imported when the step is built. Built inside the worker: ``Step(config=Config(**kwargs))``
    (or ``Step(**kwargs)`` when the step has no config class), then ``setup()`` once.
    """

    target: type[Step] | str  # the Step class, or "package.module:StepClass"
    config_target: type | str | None = None  # its config dataclass (or its path)
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def step_class(self) -> type[Step]:
        return resolve(self.target)

    @property
    def config_class(self) -> type | None:
        return None if self.config_target is None else resolve(self.config_target)

    @property
    def path(self) -> str:
        """The step's ``"package.module:Class"`` (run records, ``Plan.describe``)."""
        return path_of(self.target)

    def build(self) -> Step:
        cls, config_cls = self.step_class, self.config_class
        step = cls(config=config_cls(**self.kwargs)) if config_cls is not None else cls(**self.kwargs)
        step.setup()
        return step

    @property
    def label(self) -> str:
        return self.path.rpartition(":")[2]

    def __repr__(self) -> str:  # the worker's cache key (graph.built_steps): paths, not object ids
        config = None if self.config_target is None else path_of(self.config_target)
        return f"StepSpec({self.path!r}, {config!r}, {self.kwargs!r})"
