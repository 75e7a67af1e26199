"""Step declarations (accord/jobs/contract.py): checked when a plan is built, and on every item
while the job runs. No Ray, no models."""

from __future__ import annotations

import pickle
from fractions import Fraction

import pyarrow as pa
import pytest

from accord.jobs.contract import (
    MISSING_OUTPUT,
    Declared,
    PlanError,
    check_columns,
    check_reads,
    missing_writes,
    order,
)
from accord.jobs.graph import JobGraph
from accord.jobs.local import iter_local
from accord.jobs.rows import ERROR, ITEM, Unit, pack, process_rows, unpack
from accord.jobs.spec import StepSpec
from accord.jobs.step import Step

SCHEMA = pa.schema(
    [
        ("clip_id", pa.string()),
        ("score", pa.float32()),
        ("notes", pa.list_(pa.struct([("text", pa.string()), ("flag", pa.bool_())]))),
    ]
)


def test_columns_a_step_writes_must_exist() -> None:
    ok = Declared("scorer", writes=("score", "notes.flag"), carries=("audio",))
    check_columns([ok], SCHEMA, "SCHEMA")
    message = r"step 'scorer' writes 'scroe', which is not a column of SCHEMA \(did you mean 'score'\?\)"
    with pytest.raises(PlanError, match=message):
        check_columns([Declared("scorer", writes=("scroe",))], SCHEMA, "SCHEMA")
    with pytest.raises(PlanError, match="'flg' is not a field of column 'notes'"):
        check_columns([Declared("scorer", writes=("notes.flg",))], SCHEMA)
    with pytest.raises(PlanError, match="carries 'score', a column"):  # a column must be declared as one
        check_columns([Declared("scorer", carries=("score",))], SCHEMA)


def test_a_read_must_be_written_earlier() -> None:
    make = Declared("make", writes=("notes",), carries=("audio",))
    use = Declared("use", reads=("notes.text", "audio"), writes=("score",))
    check_reads([make, use], available=("clip_id",))
    with pytest.raises(PlanError, match=r"step 'use' reads 'notes\.text', which no earlier step writes"):
        check_reads([use, make])
    # a may_read needs no writer
    check_reads([Declared("opt", may_read=("language",))])


def test_order_puts_readers_after_writers_and_keeps_the_rest() -> None:
    a = Declared("a", writes=("x",))
    b = Declared("b", reads=("y",), writes=("z",))  # reads what c writes: must follow it
    c = Declared("c", may_read=("x",), writes=("y",))
    d = Declared("d", writes=("w",))  # independent: keeps its place relative to the others
    assert [s.name for s in order([a, b, c, d])] == ["a", "c", "b", "d"]
    assert [s.name for s in order([a, c, b, d])] == ["a", "c", "b", "d"]  # a right order stays
    # fields of one list: writing notes.flag does not feed a reader of notes.text
    t = Declared("t", reads=("notes.text",), writes=("notes.flag",))
    f = Declared("f", reads=("notes.text",), writes=("score",))
    assert [s.name for s in order([t, f])] == ["t", "f"]
    # a step that reads and writes a key updates it in place: no order from that key
    u1 = Declared("u1", reads=("notes",), writes=("notes",))
    u2 = Declared("u2", reads=("notes",), writes=("notes",))
    assert [s.name for s in order([u2, u1])] == ["u2", "u1"]
    with pytest.raises(PlanError, match="cycle"):
        order([Declared("p", reads=("q",), writes=("p",)), Declared("q", reads=("p",), writes=("q",))])


class Promises(Step):
    """Declares ``score`` but leaves it out for odd items (the bug the runtime check catches)."""

    name = "promises"
    writes = ("score",)

    def process(self, item):
        return [item if item["x"] % 2 else {**item, "score": 1.0}]


class Cuts(Step):
    """A source step: a unit -> three items, declaring ``clip_id`` and forgetting it on the second."""

    name = "cuts"
    writes = ("clip_id",)

    def process(self, item):
        return [{"x": i, **({} if i == 1 else {"clip_id": f"c{i}"})} for i in range(3)]


def test_a_declared_column_missing_at_run_time_is_that_items_error() -> None:
    items = [({"source_uri": "s", "clip_id": f"c{i}", "x": i}, Fraction(1)) for i in range(4)]
    rows = process_rows(Promises(), [pack("s", ITEM, items)], batched=True)
    errors = [unpack(r)[0] for r in rows if r["kind"] == ERROR]
    kept = [it for r in rows if r["kind"] == ITEM for it, _ in unpack(r)]
    assert [e["clip_id"] for e in errors] == ["c1", "c3"]
    assert {e["error_type"] for e in errors} == {MISSING_OUTPUT} and {e["step"] for e in errors} == {
        "promises"
    }
    assert "score" in errors[0]["reason"]
    assert [it["clip_id"] for it in kept] == ["c0", "c2"]
    assert missing_writes(Promises, {"score": None}) == []  # present (even None) is written


def test_source_steps_are_checked_too() -> None:
    graph = JobGraph(source=[StepSpec(Cuts)])
    rows = [r for block in iter_local([Unit("u", {"source_uri": "u"})], graph) for r in block]
    errors = [unpack(r)[0] for r in rows if r["kind"] == ERROR]
    items = [it for r in rows if r["kind"] == ITEM for it, _ in unpack(r)]
    assert [e["error_type"] for e in errors] == [MISSING_OUTPUT]
    assert [it["clip_id"] for it in items] == ["c0", "c2"]


def test_step_spec_by_class_or_path() -> None:
    by_class = StepSpec(Cuts)
    by_path = StepSpec(f"{__name__}:Cuts")
    assert by_class.path == by_path.path == f"{__name__}:Cuts" and by_class.label == "Cuts"
    assert repr(by_class) == repr(by_path)  # the workers' cache key does not depend on the form
    again = pickle.loads(pickle.dumps(by_class))  # classes travel by reference (Ray does the same)
    assert again.step_class is Cuts and isinstance(again.build(), Cuts)
