"""The data layer: stage selection, weights, packing, determinism, resume, ranks, bad shards."""

from __future__ import annotations

import logging
import shutil
import tarfile
import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from accord.core.shards import read_shard, shard_tar_uri, write_shard
from accord.model.sequence import prompt_head
from accord.train.data import LoaderConfig, StageLoader, select_samples
from accord.train.examples import ExampleBuilder, mask_crop_frames
from accord.train.recipe import ConditioningConfig, load_recipe


def _loader(root: Path, stage: str = "pretrain", rank: int = 0, world: int = 1, **kw) -> StageLoader:
    r = load_recipe(stage, debug=True)
    cfg = LoaderConfig(
        root=str(root), stage=stage, max_frames=kw.pop("max_frames", 300), text_pad_id=466, **kw
    )
    return StageLoader(cfg, ExampleBuilder(r.conditioning, seed=cfg.seed), rank=rank, world=world)


def _sig(batches) -> list[tuple]:
    return [(tuple(b.clip_ids), int(b.ids_BTC.sum()), int(b.mask_BTK.sum())) for b in batches]


def test_stage_selection_and_weights(synthetic_shards: Path) -> None:
    pre = select_samples(str(synthetic_shards), "pretrain")
    mid = select_samples(str(synthetic_shards), "midtrain", eligibility={"midtrain": {"min_agreement": 0.9}})
    assert len(pre.weights) == 24 and set(mid.weights) < set(pre.weights)
    assert len(mid.weights) == 12  # agreement 0.93 / 0.97 only
    w = select_samples(str(synthetic_shards), "pretrain", dataset_weights={"setB": 0.0, "setA": 2.0})
    assert len(w.weights) == 16 and set(w.weights.values()) == {2.0}
    again = select_samples(
        str(synthetic_shards), "pretrain", eligibility={"pretrain": {"min_agreement": 0.9}}
    )
    assert set(again.weights) == set(mid.weights)


def test_weights_repeat_clips(synthetic_shards: Path) -> None:
    seen = _epoch(_loader(synthetic_shards, dataset_weights={"*": 2.0}, max_epochs=1))
    assert len(seen) == 48 and all(seen.count(c) == 2 for c in set(seen))


def test_packing_keeps_clips_whole_and_separate(synthetic_shards: Path) -> None:
    (b,) = _loader(synthetic_shards, seqs_per_batch=2).step_batches(1)
    assert b.ids_BTC.shape[0] == 2 and b.ids_BTC.shape[1] <= 304
    docs = b.doc_ids_BT
    for row in range(2):
        d = docs[row][docs[row] >= 0]
        assert torch.all(d[1:] >= d[:-1])  # contiguous documents
        # the last row of each document never carries loss (no cross-clip targets)
        ends = torch.nonzero(torch.diff(docs[row]) != 0).flatten()
        assert not b.mask_BTK[row, ends].any()
    assert not b.mask_BTK[docs < 0].any()
    assert b.speaker_NS is None  # pretrain: no speaker conditioning


def test_deterministic_and_resumable(synthetic_shards: Path) -> None:
    a = _loader(synthetic_shards)
    first = [_sig(a.step_batches(1)) for _ in range(8)]
    b = _loader(synthetic_shards)
    assert [_sig(b.step_batches(1)) for _ in range(8)] == first
    c = _loader(synthetic_shards)
    for _ in range(3):
        c.step_batches(1)
    state = c.state_dict()
    d = _loader(synthetic_shards)
    d.load_state_dict(state)
    assert [_sig(d.step_batches(1)) for _ in range(5)] == first[3:]
    # it crosses epochs: 8 batches of <= 300 rows over ~1650 rows of clips (each clip carries
    # ZONOS2's 17 silence rows)
    assert d.epoch >= 1


def test_ranks_split_the_one_process_stream(synthetic_shards: Path) -> None:
    one = _loader(synthetic_shards)
    r0, r1 = _loader(synthetic_shards, rank=0, world=2), _loader(synthetic_shards, rank=1, world=2)
    for _ in range(3):
        both = one.step_batches(2)
        assert _sig(r0.step_batches(1)) + _sig(r1.step_batches(1)) == _sig(both)
    assert r0.state_dict() == r1.state_dict() == {**one.state_dict(), "stats": r0.state_dict()["stats"]}


def test_truncated_shard_is_skipped_logged_and_counted(
    synthetic_shards: Path, tmp_path: Path, caplog
) -> None:
    root = tmp_path / "shards"
    shutil.copytree(synthetic_shards, root)
    tar = Path(shard_tar_uri(str(root), "shard-000001"))
    tar.write_bytes(tar.read_bytes()[: tar.stat().st_size // 2])
    with pytest.raises(Exception, match=r"truncated|EOF|unexpected end"):
        read_shard(str(tar))
    ld = _loader(root, max_epochs=1)
    seen: list[str] = []
    with caplog.at_level(logging.WARNING):
        try:
            while True:
                seen += [c for b in ld.step_batches(1) for c in b.clip_ids]
        except StopIteration:
            pass
    assert ld.stats.corrupt_shards == 1 and ld.stats.skipped_shards == ["shard-000001"]
    assert "skipping shard" in caplog.text
    assert len(seen) == 16  # the two readable shards, every clip once


def test_conditioning_per_stage(synthetic_shards: Path) -> None:
    (sample,) = [s for s in read_shard(shard_tar_uri(str(synthetic_shards), "shard-000000"))[0][:1]]
    a1 = ExampleBuilder(load_recipe("anneal1").conditioning)
    a2 = ExampleBuilder(load_recipe("anneal2").conditioning)
    pre = ExampleBuilder(load_recipe("pretrain").conditioning)
    e_pre, e1, e2 = pre(sample, 0), a1(sample, 0), a2(sample, 0)
    assert e_pre.speaker_S is None
    assert torch.equal(e2.speaker_S, torch.from_numpy(sample.spk))
    assert e1.mask_TK.sum() < e2.mask_TK.sum()  # the crop is masked in anneal1 only
    # transcript choice and dropout are per-epoch draws, fixed for a given epoch
    texts = {pre(sample, ep).ids_TC[:, -1].tolist().__str__() for ep in range(12)}
    assert len(texts) == 2 and pre(sample, 3).ids_TC.equal(pre(sample, 3).ids_TC)


def test_rate_and_quality_dropout_rates(synthetic_shards: Path) -> None:
    samples, _ = read_shard(shard_tar_uri(str(synthetic_shards), "shard-000000"))
    b = ExampleBuilder(ConditioningConfig(rate=True, quality=True, rate_drop_p=0.4, quality_drop_p=0.25))
    rate_kept = qual_kept = 0
    n = 0
    for ep in range(60):
        for s in samples:
            rng = np.random.default_rng([ep, zlib.crc32(s.clip_id.encode())])
            toks = prompt_head(b.controls(s.meta, rng, True, "clean"), b.vocab)
            rate_kept += any(b.vocab.rate_offset <= t < b.vocab.rate_offset + b.vocab.n_rate for t in toks)
            qual_kept += any(
                t in range(b.vocab.rate_offset + b.vocab.n_rate, b.vocab.background_offset) for t in toks
            )
            n += 1
    assert abs(rate_kept / n - 0.6) < 0.07 and abs(qual_kept / n - 0.75) < 0.07


def test_training_prompt_uses_zonos2_order(synthetic_shards: Path) -> None:
    """Speaker row, background, accurate, rate, quality rows, then text (ZONOS2's prompt order)."""
    samples, _ = read_shard(shard_tar_uri(str(synthetic_shards), "shard-000000"))
    cond = ConditioningConfig(speaker="full", rate=True, quality=True, quality_mode=True,
                              quality_mode_min_agreement=0.0, quality_mode_min_snr_db=-1e9)  # fmt: skip
    b = ExampleBuilder(cond)
    v = b.vocab
    s = next(x for x in samples if (x.meta.get("speaking_rate") or 0) > 0)
    ex = b(s, 0)
    text_col = ex.ids_TC[:, -1].tolist()
    bos = text_col.index(2)
    kinds = [v.describe(t).strip("<>").split(":")[0] for t in text_col[1:bos]]
    quality = [f for f in v.quality_offsets if f in v.quality_values(s.meta)]
    assert kinds == ["background", "accurate", "rate", *quality]
    assert text_col[0] == v.text_pad_id and text_col[1] == v.background_token(v.background_marker(s.meta))
    # no speaker embedding: no slot and no markers, the rest unchanged
    plain = ExampleBuilder(replace(cond, speaker="none"))(s, 0).ids_TC[:, -1].tolist()
    assert plain[: plain.index(2)] == text_col[3:bos]
    # an augmented speaker prompt is marked noisy
    aug = ExampleBuilder(ConditioningConfig(speaker="crop", aug_prompt_prob=1.0))
    if s.spkaug is not None:
        assert aug(s, 0).ids_TC[1, -1] == v.background_token("noisy")


def test_crop_mask_follows_the_delay_pattern() -> None:
    mask = torch.ones(30, 3, dtype=torch.bool)
    mask_crop_frames(mask, audio_start=5, f0=2, f1=4)
    for j in range(3):
        off = torch.nonzero(~mask[:, j]).flatten().tolist()
        assert off == [5 + 2 + j - 1, 5 + 3 + j - 1]


def _epoch(ld: StageLoader) -> list[str]:
    """The clip ids of one whole epoch (``max_epochs=1``)."""
    seen: list[str] = []
    try:
        while True:
            seen += [c for b in ld.step_batches(1) for c in b.clip_ids]
    except StopIteration:
        pass
    return seen


def test_changed_bytes_skip_only_their_samples(synthetic_shards: Path, tmp_path: Path) -> None:
    root = tmp_path / "shards"
    shutil.copytree(synthetic_shards, root)
    clean = sorted(_epoch(_loader(root, max_epochs=1)))
    tars = {n: Path(shard_tar_uri(str(root), n)) for n in ("shard-000000", "shard-000001")}
    keys = {n: sorted(s.key for s in read_shard(str(t))[0]) for n, t in tars.items()}
    # one code inside the int16 array (past the 128-byte .npy header); one member header mid-tar
    for name, member, at in (("shard-000000", "codes.npy", "data"), ("shard-000001", "json", "header")):
        with tarfile.open(tars[name]) as t:
            info = t.getmember(f"{keys[name][2]}.{member}")
        data = bytearray(tars[name].read_bytes())
        data[info.offset_data + 200 if at == "data" else info.offset + 60] ^= 0x5A
        tars[name].write_bytes(bytes(data))
    ld = _loader(root, max_epochs=1)
    seen = sorted(_epoch(ld))
    lost = {keys["shard-000000"][2], keys["shard-000001"][2]}
    assert seen == sorted(set(clean) - lost), "the clean shards' samples minus the two bad ones"
    assert ld.stats.corrupt_samples == 2 and ld.stats.skipped_shards == []


def test_a_shard_without_a_matching_marker_is_not_trained_on(
    synthetic_shards: Path, tmp_path: Path, caplog
) -> None:
    root = tmp_path / "shards"
    shutil.copytree(synthetic_shards, root)
    (root / "shards" / "shard-000001.done").unlink()  # never finished
    samples, _ = read_shard(shard_tar_uri(str(root), "shard-000002"))
    samples[0].codes = samples[0].codes + 1  # rewritten after index.parquet was built
    write_shard(str(root), 2, [s.key for s in samples], samples)
    ld = _loader(root, max_epochs=1)
    with caplog.at_level(logging.WARNING):
        seen = _epoch(ld)
    assert set(seen) == {s.key for s in read_shard(shard_tar_uri(str(root), "shard-000000"))[0]}
    assert ld.stats.unverified_shards == 2 and sorted(ld.stats.skipped_shards) == [
        "shard-000001",
        "shard-000002",
    ]
    assert "no done marker" in caplog.text and "does not match index.parquet" in caplog.text
