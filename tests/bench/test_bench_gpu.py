"""The CUDA benchmark's code path at tiny shapes on the CPU, and issue #12's FLOP accounting."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from accord.model.config import get_flavour
from bench import bench_gpu, flops
from bench.run import met, select_modules

CPU = torch.device("cpu")
SHAPES = dataclasses.replace(
    bench_gpu.TINY, seq_len=32, n_docs=2, attn_seq_len=32, moe_tokens=(64,), decode_frames=2,
    decode_batch=2, prompt_rows=4, matmul_n=32, reps=1,
)  # fmt: skip


def _check(row: dict, unit: str) -> None:
    assert isinstance(row["name"], str) and row["unit"] == unit, row
    assert isinstance(row["value"], float) and math.isfinite(row["value"]) and row["value"] > 0, row
    if "ratio" in row:
        assert row["ratio"] == pytest.approx(
            row["baseline"] / row["value"] if unit == "ms" else row["value"] / row["baseline"]
        )


def test_debug_flavour_flops_match_a_hand_count() -> None:
    """debug: D 64, 4 layers (MoE at 1 and 2, top-2 at 2), H4 G2 hd16, FFN 128, E4, R16, 9 x 1026 head."""
    attention = 64 * 64 + 2 * 32 * 64 + 64 * 64 + 64 * 4  # wq, wkv, wo, gater
    ffn = 2 * 128 * 64 + 64 * 128  # w_in, w_out (one expert is the same shape)
    router = 64 * 16 + 16 * 16 + 16 * 16 + 16 * 4
    head = 64 * 9 * 1026
    per_token = 4 * attention + 2 * ffn + 2 * router + (1 + 2) * ffn + head
    cfg = get_flavour("debug")
    assert flops.matmul_params_per_token(cfg) == per_token == 767_232
    T = 100
    causal_attention = 3 * 4 * (2 * 2 * T * 4 * 16) / 2  # fwd+bwd x layers x (QK^T + PV) x causal half
    assert flops.train_flops_per_token(cfg, T) == 6 * per_token + causal_attention
    assert flops.mfu(cfg, T, tokens_per_s=1e6) == pytest.approx(
        (6 * per_token + causal_attention) * 1e6 / 989e12
    )


def test_zonos2_8b_accounting_reproduces_the_issue_baseline() -> None:
    """Issue #12 / GPU.md: 29.6k tokens/s was 21.9% MFU, 24.6k (8 packed docs) 18.2%."""
    cfg = get_flavour("zonos2-8b")
    assert 100 * flops.mfu(cfg, 6144, 29.6e3) == pytest.approx(21.9, abs=0.05)
    assert 100 * flops.mfu(cfg, 6144, 24.6e3) == pytest.approx(18.2, abs=0.05)


def test_every_section_runs_on_the_cpu_at_tiny_shapes() -> None:
    peak = bench_gpu.matmul_peak(SHAPES, CPU)
    _check(peak, "TFLOP/s")

    moe = bench_gpu.moe_rows(SHAPES, CPU)
    assert len(moe) == len(SHAPES.moe_tokens)
    for row in moe:
        _check(row, "TFLOP/s")
        assert row["goal"] == 0.8

    attention = bench_gpu.attention_rows(SHAPES, CPU)
    from accord.model.kernels import BACKENDS

    assert [r["name"].rsplit(": ", 1)[1] for r in attention] == list(BACKENDS)
    timed = [r for r in attention if r["value"] is not None]
    assert timed, attention
    for row in attention:
        if row["value"] is None:
            assert row["note"].startswith("skipped: ")  # e.g. flex: no backward on the CPU
        else:
            assert row["unit"] == "ms" and row["ratio"] == pytest.approx(row["baseline"] / row["value"])

    model = bench_gpu.build_model(get_flavour(SHAPES.flavour), CPU)
    rows = bench_gpu.model_rows(model, SHAPES, CPU, peak_tflops=peak["value"])
    assert [r["target"] for r in rows] == [50.0, 48.0]
    for row in rows:
        _check(row, "% MFU")
        tok_s = float(row["note"].split(" tokens/s")[0].replace(",", ""))
        rounding = 0.5 / tok_s  # the note prints whole tokens/s
        assert row["value"] == pytest.approx(100 * flops.mfu(model.cfg, SHAPES.seq_len, tok_s), rel=rounding)
    assert all(p.grad is None for p in model.parameters())

    decode = bench_gpu.decode_rows(model, SHAPES, CPU)
    assert [r["target"] for r in decode] == [600.0, 4000.0]
    for row in decode:
        _check(row, "frames/s")


def test_packed_training_batch_never_targets_across_documents() -> None:
    cfg = get_flavour("debug")
    ids, mask, doc_ids = bench_gpu.train_batch(cfg, 12, 3, CPU)
    assert ids.shape == (1, 12, cfg.n_codebooks + 1) and doc_ids.tolist() == [[0] * 4 + [1] * 4 + [2] * 4]
    assert mask[0, :, 0].tolist() == [True] * 3 + [False] + [True] * 3 + [False] + [True] * 3 + [False]
    assert bench_gpu.train_batch(cfg, 12, 1, CPU)[2] is None


def test_met_column_reads_ratio_goals_and_absolute_targets() -> None:
    assert met({"ratio": 0.9, "goal": 0.8}) == "yes" and met({"ratio": 0.7, "goal": 0.8}) == "NO"
    assert met({"value": 51.0, "target": 50.0}) == "yes" and met({"value": 20.0, "target": 50.0}) == "NO"
    assert met({"value": None, "target": 50.0}) == "" and met({"value": 3.0}) == ""


def test_full_cpu_run_has_no_rows_and_cuda_needs_a_device() -> None:
    assert bench_gpu.run(quick=False, device="cpu") == []
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="no CUDA device"):
            bench_gpu.run(quick=True, device="cuda")


def test_cuda_runs_select_the_gpu_table_unless_told_otherwise() -> None:
    names = ["bench_gpu", "bench_ingest", "bench_moe"]
    assert select_modules(names, "cpu", None) == names
    assert select_modules(names, "cuda", None) == ["bench_gpu"]
    assert select_modules(names, "cuda", ["bench_moe"]) == ["bench_moe"]
