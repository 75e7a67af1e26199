"""The step declarations checked: before a job runs, and on every item while it runs.

Each :class:`~accord.jobs.step.Step` class declares the item keys it ``reads``, ``may_read``,
``writes`` (output columns) and ``carries`` (working keys). From them a job's plan is

- *checked*: every read is written by an earlier step or is in the unit item
  (:func:`check_reads`); every written name is a column of the job's row schema, down to the
  field of a list of structs, and no working key is named like a column (:func:`check_columns`);
- *ordered*: :func:`order` puts each step after every step that writes what it reads, keeping
  the given order wherever the declarations leave it free (so a plan that was right stays as it
  was, and its outputs with it);

and while the job runs, an output item that lacks a column its step declared it writes is an
error of that item and step (:func:`missing_writes`, called by :mod:`accord.jobs.rows`), never a
silent default in the row. A key ``"a.b"`` names field ``b`` of every element of list ``a``.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from accord.jobs.step import Item, ItemError, Step

MISSING_OUTPUT = "missing_output"  # error type of an item that lacks a declared column


class PlanError(ValueError):
    """A plan whose steps' declarations do not fit together (raised before anything runs)."""


@dataclass(frozen=True)
class Declared:
    """One step of a plan by its name there, with its class's declarations."""

    name: str
    reads: tuple[str, ...] = ()
    may_read: tuple[str, ...] = ()
    writes: tuple[str, ...] = ()
    carries: tuple[str, ...] = ()

    @classmethod
    def of(cls, name: str, step: type[Step] | Step) -> Declared:
        return cls(name, tuple(step.reads), tuple(step.may_read), tuple(step.writes), tuple(step.carries))

    @property
    def outputs(self) -> tuple[str, ...]:
        return (*self.writes, *self.carries)


def covers(written: str, read: str) -> bool:
    """Whether writing ``written`` touches what reading ``read`` sees: the same key, or one is a
    field of the other (``transcripts`` and ``transcripts.text``; not ``transcripts.flags``)."""
    return written == read or read.startswith(written + ".") or written.startswith(read + ".")


def needs(reader: Declared, writer: Declared) -> list[str]:
    """The keys ``reader`` reads that ``writer`` writes. A key the reader writes itself is an
    in-place update (each step adds its fields to ``transcripts``) and orders nothing."""
    own = set(reader.outputs)
    keys = (*reader.reads, *reader.may_read)
    return [k for k in keys if k not in own and any(covers(w, k) for w in writer.outputs)]


def order(steps: Sequence[Declared]) -> list[Declared]:
    """``steps`` in a stable topological order: each after every step it :func:`needs`, and
    otherwise in the given order. A cycle is a :class:`PlanError` naming its steps."""
    left = list(steps)
    out: list[Declared] = []
    while left:
        for i, s in enumerate(left):
            if not any(needs(s, t) for t in left if t is not s):
                out.append(left.pop(i))
                break
        else:
            pairs = [f"{s.name} reads {needs(s, t)} from {t.name}" for s in left for t in left if needs(s, t)]
            raise PlanError(f"steps depend on each other in a cycle: {'; '.join(pairs)}")
    return out


def check_reads(steps: Sequence[Declared], available: Iterable[str] = ()) -> None:
    """Each step's ``reads`` is written by an earlier one of ``steps`` (in run order) or is one
    of ``available`` (the unit item's keys)."""
    have = list(available)
    for s in steps:
        for k in s.reads:
            if not any(covers(w, k) for w in have):
                raise PlanError(f"step {s.name!r} reads {k!r}, which no earlier step writes")
        have.extend(s.outputs)


def _field_names(type_: Any) -> list[str] | None:
    """The field names of a struct column or of a list of structs (None: neither)."""
    import pyarrow as pa

    if pa.types.is_list(type_) or pa.types.is_large_list(type_):
        type_ = type_.value_type
    return [f.name for f in type_] if pa.types.is_struct(type_) else None


def _hint(name: str, names: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, names, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_columns(steps: Sequence[Declared], schema: Any, what: str = "the output schema") -> None:
    """Every name in ``writes`` is a column of ``schema`` (a ``pyarrow.Schema``), ``a.b`` a field
    of column ``a``; no ``carries`` key is a column (it would reach the rows undeclared)."""
    columns = list(schema.names)
    for s in steps:
        for key in s.writes:
            col, _, sub = key.partition(".")
            if col not in columns:
                raise PlanError(
                    f"step {s.name!r} writes {col!r}, which is not a column of {what}{_hint(col, columns)}"
                )
            if sub:
                names = _field_names(schema.field(col).type)
                if names is None or sub not in names:
                    raise PlanError(
                        f"step {s.name!r} writes {key!r}: {sub!r} is not a field of column {col!r}"
                        f"{_hint(sub, names or [])}"
                    )
        for key in s.carries:
            if key.partition(".")[0] in columns:
                raise PlanError(f"step {s.name!r} carries {key!r}, a column of {what}: declare it in writes")


def missing_writes(step: type[Step] | Step, item: Item) -> list[str]:
    """The declared ``writes`` of ``step`` that ``item`` lacks (``a.b``: some element of ``a``
    without ``b``). Empty for a step that declares none."""
    missing = []
    for key in step.writes:
        col, _, sub = key.partition(".")
        lacking = col not in item or (
            sub and any(isinstance(x, dict) and sub not in x for x in item[col] or ())
        )
        if lacking:
            missing.append(key)
    return missing


def missing_error(name: str, missing: list[str]) -> ItemError:
    """The error of an item whose output lacks the declared ``missing`` columns."""
    return ItemError(
        name, MISSING_OUTPUT, f"step {name} declares it writes {missing} but its output lacks them"
    )
