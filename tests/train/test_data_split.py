"""Shard-split reading, prefetch and streaming reads of the loader, with simulated ranks (in-process)."""

from __future__ import annotations

import gc
import threading
from collections import Counter
from pathlib import Path

import pytest

from accord.core.errors import ConfigError
from accord.core.shards import iter_samples
from accord.train.data import LoaderConfig, StageLoader, merge_rank_states
from accord.train.examples import ExampleBuilder
from accord.train.recipe import load_recipe
from accord.train.shard_split import deal
from accord.train.stream import batch_nbytes, sample_nbytes
from accord.train.synthetic import write_synthetic_shards

WORLD = 8


@pytest.fixture(scope="module")
def many_shards(tmp_path_factory) -> Path:
    """TEST FIXTURE: 96 clips in 16 shards, enough for 8 ranks to split."""
    return write_synthetic_shards(tmp_path_factory.mktemp("split_shards"), n_clips=96, n_shards=16)


def _loader(root: Path, rank: int = 0, world: int = 1, **kw) -> StageLoader:
    r = load_recipe("pretrain", debug=True)
    kw = {"max_frames": 256, "read_mode": "split", **kw}
    cfg = LoaderConfig(root=str(root), stage="pretrain", **kw)
    return StageLoader(cfg, ExampleBuilder(r.conditioning, seed=cfg.seed), rank=rank, world=world)


def _ids(batches) -> list[str]:
    return [c for b in batches for c in b.clip_ids]


def _drain(ld: StageLoader) -> list[str]:
    seen: list[str] = []
    try:
        while True:
            seen += _ids(ld.step_batches(1))
    except StopIteration:
        pass
    return seen


def _sig(batches) -> list:
    return [(b.ids_BTC.sum().item(), b.clip_ids) for b in batches]


def test_eight_ranks_read_an_eighth_and_together_an_epoch(many_shards: Path) -> None:
    ranks = [_loader(many_shards, r, WORLD, max_epochs=1, prefetch=2 if r % 2 else 0) for r in range(WORLD)]
    seen = [_drain(ld) for ld in ranks]
    sel = ranks[0].selection
    total = sum(row["bytes"] for row in sel.index_rows.values())
    biggest = max(row["bytes"] for row in sel.index_rows.values())
    read = [ld.io_stats()["bytes_read"] for ld in ranks]
    assert sum(read) == total  # every shard read once, by one rank
    assert all(abs(b - total / WORLD) <= biggest for b in read), (read, total / WORLD)
    assert Counter(c for s in seen for c in s) == Counter(c for c, _ in sel.iter_weights())  # no remainder
    # one rank's stream is the strided stream (the default mode changes nothing on one process)
    one, strided = _loader(many_shards, max_epochs=1), _loader(many_shards, max_epochs=1, read_mode="strided")
    assert _drain(one) == _drain(strided)


def test_kill_and_resume_same_world_is_exact_under_prefetch(many_shards: Path) -> None:
    steps = 5
    ref = [[_sig(ld.step_batches(1)) for _ in range(2 * steps)] for ld in
           (_loader(many_shards, r, WORLD) for r in range(WORLD))]  # fmt: skip
    first = [_loader(many_shards, r, WORLD, prefetch=3) for r in range(WORLD)]
    for ld in first:
        for _ in range(steps):
            ld.step_batches(1)
    states = merge_rank_states([ld.state_dict() for ld in first])  # what a checkpoint records
    for ld in first:
        ld.close()  # "killed": what the threads read ahead is gone
    for r, state in enumerate(states):
        ld = _loader(many_shards, r, WORLD, prefetch=2)
        ld.load_state_dict(state)
        assert [_sig(ld.step_batches(1)) for _ in range(steps)] == ref[r][steps:]
        ld.close()


@pytest.mark.parametrize(("new_world", "new_mode"), [(3, "split"), (1, "strided")])
def test_resume_on_another_world_resplits_without_loss_or_repeat(
    many_shards: Path, new_world: int, new_mode: str
) -> None:
    epochs = 2
    old = [_loader(many_shards, r, WORLD, max_epochs=epochs) for r in range(WORLD)]
    seen: list[str] = []
    for _ in range(4):  # ranks reach epoch 1 at different steps
        for ld in old:
            seen += _ids(ld.step_batches(1))
    assert len({ld.epoch for ld in old}) > 1, "the test wants ranks in different epochs"
    states = merge_rank_states([ld.state_dict() for ld in old])
    for r in range(new_world):
        ld = _loader(many_shards, r, new_world, max_epochs=epochs, read_mode=new_mode)
        ld.load_state_dict(states[min(r, WORLD - 1)])
        seen += _drain(ld)
    want = Counter({c: epochs for c, _ in old[0].selection.iter_weights()})
    assert Counter(seen) == want  # documented remainder: zero items


def test_too_few_shards_for_a_split_is_a_config_error(many_shards: Path) -> None:
    with pytest.raises(ConfigError, match="cannot feed"):
        _loader(many_shards, 0, 17)


def test_deal_balances_within_one_entry() -> None:
    sizes = {f"s{i}": float(1 + (i * 7) % 5) for i in range(23)}
    parts = deal([(s, 0) for s in sizes], lambda w: sizes[w[0]], 4)
    loads = [sum(sizes[s] for s, _ in p) for p in parts]
    assert sorted(s for p in parts for s, _ in p) == sorted(sizes)
    assert max(loads) - min(loads) <= max(sizes.values())


def test_prefetch_error_surfaces_and_threads_end(many_shards: Path, tmp_path: Path) -> None:
    root = tmp_path / "shards"
    write_synthetic_shards(root, n_clips=16, n_shards=2)
    for marker in (root / "shards").glob("*.done"):
        marker.unlink()  # every shard unverified: the worker raises "no readable sample"
    ld = _loader(root, prefetch=2, read_mode="strided")
    with pytest.raises(RuntimeError, match="no readable sample"):
        ld.step_batches(1)
    ld.close()

    def workers() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name.startswith("loader-r") and t.is_alive()]

    dropped = _loader(many_shards, prefetch=2)
    dropped.step_batches(1)
    assert workers()
    del dropped  # never closed: its finalizer stops the thread
    gc.collect()
    for t in workers():
        t.join(5)
    assert not workers()


def test_accounted_peak_is_one_window_and_the_prefetch_queue(many_shards: Path) -> None:
    """The counted part of ``memory_bound``: a window is released before the next fills, and the
    queue holds ``prefetch`` micro-batches plus the one blocked in its put."""
    window, depth = 0.01, 2  # ~4 samples a window, several windows a shard
    ld = _loader(many_shards, max_epochs=1, shuffle_window_mb=window, prefetch=depth)
    batches: list = []
    try:
        while True:
            batches += ld.step_batches(1)
    except StopIteration:
        pass
    ld.close()
    assert ld.stats.samples > 0
    biggest = max(sample_nbytes(s) for s in iter_samples(str(many_shards)))
    bound = window * 2**20 + biggest + (depth + 1) * max(batch_nbytes(b) for b in batches)
    assert ld.io_stats()["peak_loader_bytes"] <= bound
    # what the shards hold: far more than the bound, so a window kept past its turn shows
    assert sum(sample_nbytes(s) for s in iter_samples(str(many_shards))) > 4 * bound


def test_small_shuffle_windows_bound_memory_and_keep_the_epoch(many_shards: Path) -> None:
    whole = _loader(many_shards, max_epochs=1, shuffle_window_mb=0)
    small = _loader(many_shards, max_epochs=1, shuffle_window_mb=0.004)  # ~2 samples a window
    a, b = _drain(whole), _drain(small)
    assert sorted(a) == sorted(b) and a != b
    assert small.io_stats()["peak_loader_bytes"] < whole.io_stats()["peak_loader_bytes"] / 2
    # resume mid-shard inside the windowed order is exact too
    ref = _loader(many_shards, shuffle_window_mb=0.004)
    seq = [_sig(ref.step_batches(1)) for _ in range(6)]
    part = _loader(many_shards, shuffle_window_mb=0.004)
    for _ in range(3):
        part.step_batches(1)
    again = _loader(many_shards, shuffle_window_mb=0.004)
    again.load_state_dict(part.state_dict())
    assert [_sig(again.step_batches(1)) for _ in range(3)] == seq[3:]
