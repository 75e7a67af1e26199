"""The options every job command shares: ``--config FILE`` and ``--set KEY=VALUE``.

Named flags are shorthands for config keys: they default to ``None`` (not given) so that only
the flags a user typed override the file; :func:`given` turns them into nested overrides.
Defaults shown in help come from the config dataclasses (:func:`accord.core.config.field_default`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

import click

from accord.core.config import load_config, load_overrides, nest

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")


def config_options(section: str) -> Callable[[F], F]:
    """``--config FILE`` (flat, or with an ``ingest:`` / ``tokenize:`` / ``train:`` section) and
    repeatable ``--set KEY=VALUE`` for the job ``section``."""

    def deco(f: F) -> F:
        f = click.option(
            "--set",
            "sets",
            multiple=True,
            metavar="KEY=VALUE",
            help=f"Override one config key (dotted path, YAML value; repeatable), e.g. "
            f"--set {EXAMPLES[section]}. Wins over --config and the named flags.",
        )(f)
        return click.option(
            "--config",
            "config",
            default=None,
            metavar="FILE",
            help=f"Run config YAML (local or object-store URI), flat or under '{section}:'; "
            "the named flags override it.",
        )(f)

    return deco


EXAMPLES = {
    "ingest": "asr_batch_size=4 --set tokenize.min_stage=anneal1",
    "tokenize": "batch_size=16 --set codec.ref=dac:random",
    "train": "engine.zero_stage=2 --set data.max_frames=2048",
}


def given(dotted: Mapping[str, Any]) -> dict[str, Any]:
    """Nested overrides from ``{"codec.ref": value}`` for the flags that were given (not None)."""
    return nest({k: v for k, v in dotted.items() if v is not None})


def build_config(
    cls: type[T],
    config: str | None,
    sets: Iterable[str],
    section: str,
    flags: Mapping[str, Any] | None = None,
    owner: str | None = None,
) -> T:
    """``cls`` from the file, flags and ``--set`` values; a bad key or value is a usage error."""
    try:
        return load_config(cls, config, sets, section, flags, owner)
    except (ValueError, TypeError) as e:
        raise click.UsageError(str(e)) from None


def build_overrides(
    config: str | None,
    sets: Iterable[str],
    section: str,
    replace: Iterable[str] = (),
) -> dict[str, Any]:
    """The nested overrides of the file and ``--set`` values for ``section``."""
    try:
        return load_overrides(config, sets, section, replace=tuple(replace))
    except ValueError as e:
        raise click.UsageError(str(e)) from None
