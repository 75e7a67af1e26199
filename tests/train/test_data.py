"""The data layer: stage selection, weights, packing, determinism, resume, ranks, bad shards."""

from __future__ import annotations

import logging
import shutil
import tarfile
import tracemalloc
import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from accord.core.eligibility import eligible_for
from accord.core.shards import read_index, read_samples, read_shard, shard_tar_uri, write_index, write_shard
from accord.model.sequence import prompt_head
from accord.train.data import LoaderConfig, StageLoader, dataset_of, select_samples, stage_thresholds
from accord.train.examples import ExampleBuilder, mask_crop_frames
from accord.train.recipe import ConditioningConfig, load_recipe
from accord.train.synthetic import clip_sample


def _loader(root: Path, stage: str = "pretrain", rank: int = 0, world: int = 1, **kw) -> StageLoader:
    r = load_recipe(stage, debug=True)
    cfg = LoaderConfig(
        root=str(root), stage=stage, max_frames=kw.pop("max_frames", 300), text_pad_id=466, **kw
    )
    return StageLoader(cfg, ExampleBuilder(r.conditioning, seed=cfg.seed), rank=rank, world=world)


def _sig(batches) -> list[tuple]:
    return [(tuple(b.clip_ids), int(b.ids_BTC.sum()), int(b.mask_BTK.sum())) for b in batches]


def test_stage_selection_and_weights(synthetic_shards: Path) -> None:
    pre = dict(select_samples(str(synthetic_shards), "pretrain").iter_weights())
    mid_sel = select_samples(
        str(synthetic_shards), "midtrain", eligibility={"midtrain": {"min_agreement": 0.9}}
    )
    mid = dict(mid_sel.iter_weights())
    assert len(pre) == 24 and set(mid) < set(pre)
    assert len(mid) == 12 == mid_sel.n_selected  # agreement 0.93 / 0.97 only
    w = dict(
        select_samples(
            str(synthetic_shards), "pretrain", dataset_weights={"setB": 0.0, "setA": 2.0}
        ).iter_weights()
    )
    assert len(w) == 16 and set(w.values()) == {2.0}
    again = select_samples(
        str(synthetic_shards), "pretrain", eligibility={"pretrain": {"min_agreement": 0.9}}
    )
    assert set(dict(again.iter_weights())) == set(mid)


def _whole_corpus_selection(root: Path, stage: str, dataset_weights=None, eligibility=None):
    """The selection as the loader made it before it was per shard (a re-statement, kept as the
    reference): every samples.parquet row at once, one clip_id -> weight mapping for the corpus,
    the shards holding a selected clip id, in index order."""
    thresholds = stage_thresholds(str(root), eligibility)
    dw = dict(dataset_weights or {})
    default_w = float(dw.pop("*", 1.0))
    rows = read_samples(str(root)).to_pylist()
    weights: dict[str, float] = {}
    for row in rows:
        if eligible_for(row, stage, thresholds):
            w = float(dw.get(dataset_of(row), default_w))
            if w > 0:
                weights[str(row["clip_id"])] = w
    used = {r["shard"] for r in rows if str(r["clip_id"]) in weights}
    shards = [s for s in read_index(str(root))["shard"].to_pylist() if s in used]
    per_shard: dict[str, dict[str, float]] = {s: {} for s in shards}
    for r in rows:
        if r["shard"] in per_shard and r["clip_id"] in weights:
            per_shard[r["shard"]][r["clip_id"]] = weights[r["clip_id"]]
    return weights, shards, per_shard, len(rows)


SELECTIONS = [
    ("pretrain", None, None),
    ("midtrain", None, {"midtrain": {"min_agreement": 0.9}}),
    ("pretrain", {"setB": 0.0, "setA": 2.5}, None),
    ("pretrain", {"*": 0.5, "setA": 1.5}, {"pretrain": {"min_agreement": 0.75}}),
    ("anneal2", None, None),
]


@pytest.mark.parametrize(("stage", "dataset_weights", "eligibility"), SELECTIONS)
def test_per_shard_selection_equals_the_whole_corpus_rule(
    synthetic_shards: Path, stage: str, dataset_weights, eligibility
) -> None:
    ref = _whole_corpus_selection(synthetic_shards, stage, dataset_weights, eligibility)
    weights, shards, per_shard, n_rows = ref
    sel = select_samples(str(synthetic_shards), stage, dataset_weights, eligibility)
    assert sel.shards == shards and sel.n_candidates == n_rows and sel.n_selected == len(weights)
    assert {s: sel.shard_weights(s) for s in sel.shards} == per_shard
    assert dict(sel.iter_weights()) == weights


def test_a_missing_or_disagreeing_part_falls_back_to_samples_parquet(
    synthetic_shards: Path, tmp_path: Path, caplog
) -> None:
    root = tmp_path / "shards"
    shutil.copytree(synthetic_shards, root)
    clean = _epoch(_loader(root, max_epochs=1))
    parts = sorted((root / "parts").glob("*.parquet"))
    parts[0].unlink()
    parts[1].write_bytes(parts[1].read_bytes()[:100])  # not Parquet
    table = pq.read_table(parts[2])  # a part that disagrees with samples.parquet: every clip selected
    agreement = pa.array([1.0] * len(table), pa.float32())
    pq.write_table(table.set_column(table.column_names.index("agreement"), "agreement", agreement), parts[2])
    sel = select_samples(str(root), "midtrain")
    with caplog.at_level(logging.WARNING):
        assert dict(sel.iter_weights()) == _whole_corpus_selection(root, "midtrain")[0]
        assert _epoch(_loader(root, max_epochs=1)) == clean
    assert caplog.text.count("selecting its clips from samples.parquet") >= 3
    assert "not a readable Parquet file" in caplog.text
    assert "selects 8 clips, samples.parquet 6" in caplog.text


def test_the_start_up_pass_keeps_no_per_clip_state(synthetic_shards: Path, tmp_path: Path) -> None:
    """The selection over ~100k samples.parquet rows grows traced Python memory by its per-shard
    tallies only (a whole-corpus clip_id -> weight mapping is ~13 MB at this size)."""
    root = tmp_path / "many"
    n_shards, per = 100, 1000
    template = read_samples(str(synthetic_shards))
    pick = pa.array(np.arange(n_shards * per) % template.num_rows)
    table = template.take(pick)
    table = table.set_column(0, "clip_id", pa.array([f"c{i:07d}" for i in range(n_shards * per)]))
    table = table.set_column(1, "shard", pa.array([f"shard-{i // per:06d}" for i in range(n_shards * per)]))
    root.mkdir()
    pq.write_table(table, root / "samples.parquet")
    index = pa.table({"shard": [f"shard-{i:06d}" for i in range(n_shards)], "n_samples": [per] * n_shards})
    pq.write_table(index, root / "index.parquet")
    shutil.copy(synthetic_shards / "tokenize.json", root / "tokenize.json")
    select_samples(str(synthetic_shards), "pretrain")  # warm: imports, first reads
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        sel = select_samples(str(root), "pretrain")
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    # not the selection's: the interpreter's table of interned strings (path parts, in
    # dataset_of), which a parse may happen to resize
    interned = [tracemalloc.Filter(False, "*/pathlib.py")]
    grown = sum(
        d.size_diff
        for d in after.filter_traces(interned).compare_to(before.filter_traces(interned), "filename")
    )
    assert sel.n_candidates == sel.n_selected == n_shards * per and len(sel.shards) == n_shards
    assert grown < 1 * 2**20, f"the selection kept {grown / 2**20:.1f} MiB of Python objects"


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


def test_a_clip_id_in_two_shards_is_weighted_by_each_shards_row(
    synthetic_shards: Path, tmp_path: Path
) -> None:
    """The one case the per-shard selection decides differently from a whole-corpus mapping
    (where the id's last row decided for every copy, and any shard holding the id was read):
    each copy stands on its own row."""
    rng = np.random.default_rng(0)
    a = [clip_sample(i, rng, 30) for i in (0, 1)]  # agreement 0.5, 0.8
    b = [clip_sample(i, rng, 30) for i in (2, 3)]  # agreement 0.93, 0.97
    b[0].meta["clip_id"] = b[0].key = a[0].key  # clip0000 again, now agreeing
    write_shard(str(tmp_path), 0, [s.key for s in a], a)
    write_shard(str(tmp_path), 1, [s.key for s in b], b)
    write_index(str(tmp_path), 2)
    shutil.copy(synthetic_shards / "tokenize.json", tmp_path / "tokenize.json")  # agreement alone
    sel = select_samples(str(tmp_path), "midtrain", eligibility={"midtrain": {"min_agreement": 0.9}})
    assert sel.shards == ["shard-000001"] and sel.n_selected == 2
    assert sel.shard_weights("shard-000000") == {}  # its clip0000 (0.5) is not selected
    assert sorted(sel.iter_weights()) == [("clip0000", 1.0), ("clip0003", 1.0)]
