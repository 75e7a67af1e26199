"""Model training throughput (forward + backward tokens/s) for the debug and small flavours.

The peer is the same model with its MoE layers switched to a per-expert Python loop (same
weights, same batch), alternated run by run.
"""

from __future__ import annotations

import statistics
import time

import torch

from accord.model.config import get_flavour
from accord.model.sequence import audio_loss
from accord.model.zonos import ZonosModel
from bench.flops import train_flops_per_token


def _batch(cfg, B: int, T: int):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, cfg.codebook_size, (B, T, cfg.n_codebooks + 1), generator=g)
    ids[..., cfg.n_codebooks] = cfg.text_pad_id
    mask = torch.ones(B, T, cfg.n_codebooks, dtype=torch.bool)
    return ids, mask


def _step(model: ZonosModel, ids, mask) -> float:
    model.zero_grad(set_to_none=True)
    t0 = time.perf_counter()
    out = model(ids)
    loss, _ = audio_loss(out.logits_BTKV, ids, mask)
    (loss + out.balance_loss).backward()
    return time.perf_counter() - t0


def run(quick: bool, device: str = "cpu") -> list[dict]:
    """CPU rows; the CUDA model rows (MFU at the zonos2-8b shape) are in bench_gpu."""
    if device != "cpu":
        return []
    torch.set_num_threads(2)
    rows = []
    shapes = {"debug": (4, 256), "small": (1, 256)} if quick else {"debug": (8, 512), "small": (2, 512)}
    reps = 2 if quick else 3
    for flavour, (B, T) in shapes.items():
        torch.manual_seed(0)
        model = ZonosModel(get_flavour(flavour))
        ids, mask = _batch(model.cfg, B, T)
        for impl in ("auto", "loop"):  # warm-up
            model.set_moe_impl(impl)
            _step(model, ids, mask)
        times: dict[str, list[float]] = {"auto": [], "loop": []}
        for _ in range(reps):
            for impl in times:
                model.set_moe_impl(impl)
                times[impl].append(_step(model, ids, mask))
        med = {k: statistics.median(v) for k, v in times.items()}
        gflops = train_flops_per_token(model.cfg, T) * B * T / med["auto"] / 1e9
        rows.append(
            {
                "name": f"model {flavour} fwd+bwd",
                "value": B * T / med["auto"],
                "unit": "tokens/s",
                "baseline": B * T / med["loop"],
                "ratio": med["loop"] / med["auto"],
                "note": f"batch {B}x{T} rows, fp32, 2 threads; {gflops:.0f} model GFLOP/s (bench/flops.py); "
                "baseline: same model, per-expert-loop MoE",
            }
        )
    return rows


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
