"""Train-test fixtures: shards (synthetic for unit tests, tokenized from the sample bucket for
integration tests) and the environment for trainer subprocesses."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from accord.train.synthetic import write_synthetic_shards

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def synthetic_shards(tmp_path_factory) -> Path:
    """TEST FIXTURE: 24 patterned clips in 3 shards (accord.train.synthetic)."""
    return write_synthetic_shards(tmp_path_factory.mktemp("synthetic_shards"))


@pytest.fixture(scope="session")
def bucket_shards(sample_bucket, tmp_path_factory) -> Path:
    """Real shards: sentences of three English files of the generated bucket, tokenized by
    accord.tokenize (DAC architecture with its fixed random weights, auralis ECAPA)."""
    import torch
    from accord.tokenize.job import TokenizeConfig, run_tokenize
    from accord.tokenize.sample_manifest import rows_from_bucket, write_manifest
    from accord.tokenize.speaker import SpeakerConfig

    torch.set_num_threads(2)
    files = sorted(
        n
        for n, t in sample_bucket.truth.items()
        if t.get("sentences")
        and t["sentences"][0].get("language") == "en"
        and t.get("background") in (None, "clean")
    )[:3]
    rows = rows_from_bucket(sample_bucket, files=files, per_file=2, max_seconds=1.5)
    base = tmp_path_factory.mktemp("bucket_shards")
    manifest = write_manifest(rows, base / "ingest")
    out = base / "shards"
    cfg = TokenizeConfig(executor="local", speaker=SpeakerConfig(ref="ecapa:auralis"))
    # every stage eligible as ingest recorded it (truth rows lack the features the default
    # thresholds would re-check), so the curriculum has data for all four stages
    run_tokenize(str(manifest), str(out), config=cfg, reapply=False)
    return out


@pytest.fixture(scope="session")
def train_env() -> dict[str, str]:
    """Environment for trainer subprocesses: CPU DeepSpeed, cached op builds, one thread each."""
    env = dict(os.environ)
    env.update(
        DS_ACCELERATOR="cpu",
        TORCH_EXTENSIONS_DIR=env.get("TORCH_EXTENSIONS_DIR", str(REPO / ".cache" / "torch_extensions")),
        ACCORD_CACHE=env.get("ACCORD_CACHE", str(REPO / ".cache" / "accord")),
        TORCHDYNAMO_DISABLE="1",
        ACCORD_TRAIN_THREADS="1",
        OMP_NUM_THREADS="1",
        RAY_USAGE_STATS_ENABLED="0",
        PYTHONUNBUFFERED="1",
    )
    return env
