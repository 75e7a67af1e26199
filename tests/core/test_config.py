"""The one config loader: nested dataclasses, tuples, strict keys, and defaults < file < flags < --set."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from accord.core.config import (
    MERGE_OVER_DEFAULT,
    deep_merge,
    field_default,
    from_dict,
    load_config,
    load_overrides,
    parse_sets,
    to_dict,
)


@dataclass
class Inner:
    ref: str = "model:a"
    rate: float = 1.0
    edges: tuple[float, ...] = (1.0, 2.0)


@dataclass
class Job:
    name: str = "job"
    batch: int = 8
    limit: int | None = None
    names: tuple[str, ...] = ("x", "y")
    pair: tuple[float, float] = (0.0, 1.0)
    inner: Inner = field(default_factory=Inner)
    table: dict[str, tuple[float, ...]] = field(default_factory=dict)
    models: dict[str, str] = field(
        default_factory=lambda: {"a": "1", "b": "2"}, metadata={MERGE_OVER_DEFAULT: True}
    )
    extra: dict | None = None


def test_nested_tuples_and_numbers() -> None:
    job = from_dict(
        Job,
        {
            "names": "p, q,,r",
            "pair": [1, "5e-3"],  # YAML 1.1 reads 5e-3 as a string
            "inner": {"edges": [3, 4.5]},
            "table": {"snr": [10, 20]},
            "limit": None,
        },
    )
    assert job.names == ("p", "q", "r") and job.pair == (1.0, 0.005)
    assert job.inner == Inner(edges=(3.0, 4.5)) and isinstance(job.inner.edges[0], float)
    assert job.table == {"snr": (10.0, 20.0)} and job.limit is None
    assert from_dict(Job, to_dict(job)) == job, "to_dict round-trips (tuples as lists)"
    assert to_dict(job)["names"] == ["p", "q", "r"]


def test_unknown_keys_name_the_dotted_path_and_the_known_keys() -> None:
    with pytest.raises(ValueError, match=r"unknown inner keys: inner\.reff; known: edges, rate, ref"):
        from_dict(Job, {"inner": {"reff": "x"}})
    with pytest.raises(ValueError, match=r"unknown job config keys: bacth; known: batch, extra"):
        from_dict(Job, {"bacth": 1}, name="job config")
    with pytest.raises(ValueError, match=r"unknown tokenize\.inner keys: tokenize\.inner\.x"):
        from_dict(Job, {"inner": {"x": 1}}, path="tokenize")


def test_wrong_types_fail_with_their_path() -> None:
    with pytest.raises(ValueError, match=r"inner\.rate: expected a number"):
        from_dict(Job, {"inner": {"rate": "fast"}})
    with pytest.raises(ValueError, match=r"batch: expected an integer"):
        from_dict(Job, {"batch": 2.5})
    with pytest.raises(ValueError, match=r"pair: expected 2 values"):
        from_dict(Job, {"pair": [1, 2, 3]})


def test_merge_over_default_keeps_the_other_defaults() -> None:
    assert from_dict(Job, {"models": {"b": "9"}}).models == {"a": "1", "b": "9"}
    assert from_dict(Job, {"table": {"t": [1]}}).table == {"t": (1.0,)}, "plain dicts replace"


def test_parse_sets_and_deep_merge() -> None:
    assert parse_sets(["a.b=1", "a.c=x,y", "d=null", "e=true", "f=5.0e-3"]) == {
        "a": {"b": 1, "c": "x,y"},
        "d": None,
        "e": True,
        "f": 0.005,
    }
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_sets(["novalue"])
    base = {"a": {"b": 1, "c": 2}, "w": {"k": 1}}
    assert deep_merge(base, {"a": {"b": 3}, "w": {"j": 2}}) == {"a": {"b": 3, "c": 2}, "w": {"k": 1, "j": 2}}
    assert deep_merge(base, {"w": {"j": 2}}, replace=("w",))["w"] == {"j": 2}
    assert base == {"a": {"b": 1, "c": 2}, "w": {"k": 1}}, "inputs are not modified"


def test_precedence_defaults_file_flags_sets(tmp_path) -> None:
    run = tmp_path / "run.yaml"
    run.write_text("train:\n  batch: 16\n  name: from-file\n  inner: {ref: model:file, rate: 2.0}\n")
    sets = ["inner.ref=model:set", "train.batch=32"]
    job = load_config(Job, str(run), sets, section="train", flags={"name": "flag", "batch": 24})
    assert job.batch == 32 and job.name == "flag"
    assert job.inner == Inner(ref="model:set", rate=2.0)
    assert job.names == ("x", "y"), "untouched keys keep their defaults"
    flat = tmp_path / "flat.yaml"
    flat.write_text("batch: 4\n")
    assert load_config(Job, str(flat), section="tokenize").batch == 4, "a flat file is one job's config"
    assert load_config(Job).batch == 8


def test_sections_route_to_their_job(tmp_path) -> None:
    run = tmp_path / "run.yaml"
    run.write_text("ingest: {asr: moonshine}\ntokenize: {min_stage: anneal1}\n")
    sets = ["asr_batch_size=4", "tokenize.batch_size=2"]
    ingest = load_overrides(str(run), sets, section="ingest")
    tokenize = load_overrides(str(run), sets, section="tokenize", owner="ingest")
    assert ingest == {"asr": "moonshine", "asr_batch_size": 4}
    assert tokenize == {"min_stage": "anneal1", "batch_size": 2}


def test_field_default_reads_the_owner() -> None:
    assert field_default(Job, "inner.ref") == "model:a"
    assert field_default(Job, "models") == {"a": "1", "b": "2"}
