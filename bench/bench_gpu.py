"""Issue #12's GPU table in one run: training MFU, packed attention, MoE experts, decoding.

``python -m bench.run --device cuda`` writes every row on one H200 (bf16): the measured
dense-matmul rate, zonos2-8b forward+backward MFU (one sequence of 6144 rows, and 8 packed
documents), packed-document vs plain-causal attention for every backend in
``accord.model.kernels.BACKENDS``, the MoE experts' grouped kernel vs dense GEMMs of the
same FLOPs, and greedy KV-cache decoding (batch 1, and 16 prompts at once). FLOPs follow
``bench/flops.py`` (issue #12's accounting). ``--device cpu --quick`` runs the same code on
the ``debug`` flavour at tiny shapes (the tests do too); a full CPU run has no rows here.

Every section is timed separately and a failing section becomes one FAILED row, so one run
on a borrowed GPU always returns the rest of the table.
"""

from __future__ import annotations

import json
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass

import torch

from accord.model.attention import attend
from accord.model.config import ModelConfig, get_flavour
from accord.model.kernels import BACKENDS
from accord.model.masks import AttentionMask
from accord.model.moe import GroupedExperts
from accord.model.zonos import ZonosModel
from accord.train.loss import training_loss
from bench.bench_moe import dense_ffn_gemms, dense_ffn_operands
from bench.flops import PEAK_BF16_FLOPS, mfu, swiglu_ffn_flops, train_flops_per_token
from bench.timing import median_times, timed


@dataclass(frozen=True)
class GpuBenchConfig:
    """Shapes of one run: ``FULL`` is issue #12's table, ``TINY`` the CPU smoke run."""

    flavour: str
    seq_len: int  # training rows (batch 1)
    n_docs: int  # packed documents in the second training row
    attn_heads: int
    attn_kv_heads: int
    attn_head_dim: int
    attn_seq_len: int
    moe_dim: int
    moe_hidden: int
    moe_experts: int
    moe_topk: int
    moe_tokens: tuple[int, ...]
    decode_frames: int  # greedy frames per prompt (EOA masked until then, forced there)
    decode_batch: int
    prompt_rows: int
    matmul_n: int  # square GEMM size for the measured dense peak
    reps: int


FULL = GpuBenchConfig(
    flavour="zonos2-8b", seq_len=6144, n_docs=8,
    attn_heads=16, attn_kv_heads=4, attn_head_dim=128, attn_seq_len=6144,
    moe_dim=2048, moe_hidden=3072, moe_experts=16, moe_topk=1, moe_tokens=(16384, 32768, 65536),
    decode_frames=128, decode_batch=16, prompt_rows=64, matmul_n=8192, reps=5,
)  # fmt: skip
TINY = GpuBenchConfig(
    flavour="debug", seq_len=128, n_docs=4,
    attn_heads=4, attn_kv_heads=2, attn_head_dim=16, attn_seq_len=128,
    moe_dim=64, moe_hidden=128, moe_experts=4, moe_topk=1, moe_tokens=(256, 512),
    decode_frames=6, decode_batch=3, prompt_rows=8, matmul_n=128, reps=2,
)  # fmt: skip


def bench_dtype(device: torch.device) -> torch.dtype:
    """bf16 on CUDA (the training dtype); fp32 on the CPU, where bf16 GEMMs are emulated."""
    return torch.bfloat16 if device.type == "cuda" else torch.float32


# -- dense matmul peak ----------------------------------------------------------------------
def matmul_peak(shapes: GpuBenchConfig, device: torch.device) -> dict:
    """TFLOP/s of one square GEMM: the ceiling every other row is read against."""
    n, dtype = shapes.matmul_n, bench_dtype(device)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    med = median_times({"mm": lambda: a @ b}, reps=max(shapes.reps, 3), device=device, warmup=2)["mm"]
    tflops = 2 * n**3 / med / 1e12
    return {
        "name": "dense matmul peak (measured)",
        "value": tflops,
        "unit": "TFLOP/s",
        "note": f"{n}^3 GEMM, {dtype}; {100 * tflops * 1e12 / PEAK_BF16_FLOPS:.0f}% of the "
        f"{PEAK_BF16_FLOPS / 1e12:.0f} TFLOP/s bf16 spec that MFU divides by",
    }


# -- model forward + backward ---------------------------------------------------------------
def build_model(cfg: ModelConfig, device: torch.device) -> ZonosModel:
    """The flavour initialised on the device itself (8B parameters never touch the host)."""
    torch.manual_seed(0)
    with torch.device(device):
        model = ZonosModel(cfg)
    return model.to(bench_dtype(device))


def train_batch(
    cfg: ModelConfig, seq_len: int, n_docs: int, device: torch.device, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(ids [1, T, C], loss mask [1, T, K], doc ids or None): random codes, equal documents."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, cfg.codebook_size, (1, seq_len, cfg.n_codebooks + 1), generator=g)
    ids[..., cfg.n_codebooks] = cfg.text_pad_id
    mask = torch.ones(1, seq_len, cfg.n_codebooks, dtype=torch.bool)
    doc_ids = None
    if n_docs > 1:
        doc_ids = torch.arange(seq_len).mul(n_docs).div(seq_len, rounding_mode="floor")[None]
        mask[0, :-1] &= (doc_ids[0, 1:] == doc_ids[0, :-1]).unsqueeze(-1)  # no target across documents
    mask[0, -1] = False
    return ids.to(device), mask.to(device), None if doc_ids is None else doc_ids.to(device)


def forward_backward(
    model: ZonosModel, ids: torch.Tensor, mask: torch.Tensor, doc_ids: torch.Tensor | None
) -> None:
    """One forward + backward with the trainer's loss (no optimizer step, unlike
    ``Trainer.train_step``: MFU counts model FLOPs)."""
    model.zero_grad(set_to_none=True)
    out = model(ids, doc_ids_BT=doc_ids)
    training_loss(out.logits_BTKV, ids, mask, out.balance_loss, 0.01).loss.backward()


def model_rows(
    model: ZonosModel, shapes: GpuBenchConfig, device: torch.device, peak_tflops: float | None
) -> list[dict]:
    cfg, T = model.cfg, shapes.seq_len
    model.train()
    batches = {
        "one sequence": train_batch(cfg, T, 1, device),
        f"{shapes.n_docs} packed docs": train_batch(cfg, T, shapes.n_docs, device),
    }
    fns = {k: (lambda b=b: forward_backward(model, *b)) for k, b in batches.items()}
    med = median_times(fns, reps=shapes.reps, device=device, warmup=2)
    model.zero_grad(set_to_none=True)
    targets = {"one sequence": 50.0, f"{shapes.n_docs} packed docs": 48.0}
    rows = []
    for kind, sec in med.items():
        tok_s = T / sec
        m = mfu(cfg, T, tok_s)
        tflops = train_flops_per_token(cfg, T) * tok_s / 1e12
        vs_peak = f", {100 * tflops / peak_tflops:.0f}% of the measured matmul peak" if peak_tflops else ""
        rows.append(
            {
                "name": f"{shapes.flavour} fwd+bwd B1x{T} {kind}: MFU",
                "value": 100 * m,
                "unit": "% MFU",
                "target": targets[kind],
                "note": f"{tok_s:,.0f} tokens/s, {tflops:.0f} model TFLOP/s{vs_peak}; "
                f"{bench_dtype(device)}, trainer loss, no optimizer step, no activation checkpointing",
            }
        )
    return rows


# -- attention ------------------------------------------------------------------------------
def attention_rows(shapes: GpuBenchConfig, device: torch.device) -> list[dict]:
    """Packed documents vs plain causal, forward + backward, for every registered backend."""
    H, G, hd, T = shapes.attn_heads, shapes.attn_kv_heads, shapes.attn_head_dim, shapes.attn_seq_len
    dtype = bench_dtype(device)
    g = torch.Generator(device).manual_seed(0)
    q = torch.randn(1, H, T, hd, device=device, dtype=dtype, generator=g).requires_grad_(True)
    k = torch.randn(1, G, T, hd, device=device, dtype=dtype, generator=g).requires_grad_(True)
    v = torch.randn(1, G, T, hd, device=device, dtype=dtype, generator=g).requires_grad_(True)
    do = torch.randn(1, H, T, hd, device=device, dtype=dtype, generator=g)
    doc_ids = torch.arange(T, device=device).mul(shapes.n_docs).div(T, rounding_mode="floor")[None]

    def fwd_bwd(mask: AttentionMask) -> None:
        q.grad = k.grad = v.grad = None
        attend(q, k, v, mask).backward(do)

    fns: dict[str, Callable[[], None]] = {}
    kernels: dict[str, str] = {}
    skipped: dict[str, str] = {}
    for backend in BACKENDS:
        for kind, docs in (("causal", None), ("docs", doc_ids)):
            key = f"{backend}/{kind}"
            try:
                mask = AttentionMask.build(
                    backend, device=device, dtype=dtype, head_dim=hd, q_len=T, doc_ids_BT=docs
                )
                fwd_bwd(mask)  # unsupported cases fail here, before timing
            except Exception as e:  # a backend without this case (e.g. no backward on this device)
                skipped[key] = f"{type(e).__name__}: {str(e).splitlines()[0][:120]}"
                continue
            fns[key] = lambda mask=mask: fwd_bwd(mask)
            kernels[key] = mask.kernel.value
    med = median_times(fns, reps=shapes.reps, device=device, warmup=1)
    plain = med.get("auto/causal") or min(
        (t for key, t in med.items() if key.endswith("/causal")), default=None
    )
    rows = []
    for backend in BACKENDS:
        key, name = f"{backend}/docs", f"attention fwd+bwd T {T} packed docs vs plain causal: {backend}"
        shape = f"T {T}, H{H} G{G} hd{hd}, {shapes.n_docs} docs, {dtype}"
        if key not in med:
            rows.append({"name": name, "value": None, "unit": "ms", "note": f"skipped: {skipped.get(key)}"})
            continue
        causal = med.get(f"{backend}/causal")
        rows.append(
            {
                "name": name,
                "value": 1e3 * med[key],
                "unit": "ms",
                "baseline": None if plain is None else 1e3 * plain,
                "ratio": None if plain is None else plain / med[key],
                "goal": 1.0,
                "note": f"{shape}; kernel {kernels[key]}; ratio = plain-causal time (auto backend) / "
                f"packed time, higher is better (issue: packed <= 1.0x causal); this backend's "
                f"plain causal: {'skipped' if causal is None else f'{1e3 * causal:.2f} ms'}",
            }
        )
    return rows


# -- MoE experts ----------------------------------------------------------------------------
def moe_rows(shapes: GpuBenchConfig, device: torch.device) -> list[dict]:
    """The experts' forward + backward (routing fixed) vs the dense GEMMs of the same FLOPs."""
    torch.manual_seed(0)
    with torch.device(device):
        experts = GroupedExperts(shapes.moe_dim, shapes.moe_hidden, shapes.moe_experts)
    experts.reset_parameters()
    experts.to(bench_dtype(device))
    return [_moe_row(experts, N, shapes, device) for N in shapes.moe_tokens]


def _moe_row(experts: GroupedExperts, N: int, shapes: GpuBenchConfig, device: torch.device) -> dict:
    D, I, E, K = experts.dim, experts.hidden, experts.n_experts, shapes.moe_topk
    dtype = bench_dtype(device)
    g = torch.Generator(device).manual_seed(N)
    x = torch.randn(N, D, device=device, dtype=dtype, generator=g)
    probs = torch.randn(N, E, device=device, generator=g).softmax(-1)
    choice = probs.topk(K, dim=-1).indices  # mildly unbalanced, as a trained router
    weights = probs.gather(-1, choice)
    dy = torch.randn(N, D, device=device, dtype=dtype, generator=g)
    impl = experts.impl_for(x, rows=N * K)
    dense = dense_ffn_operands(N * K, D, I, device=str(device), dtype=dtype)

    def grouped() -> None:
        experts.zero_grad(set_to_none=True)
        experts(x.detach().requires_grad_(True), choice, weights).backward(dy)

    med = median_times({"grouped": grouped, "dense": lambda: dense_ffn_gemms(dense)}, shapes.reps, device)
    flops = swiglu_ffn_flops(N * K, D, I)
    got, ceiling = flops / med["grouped"] / 1e12, flops / med["dense"] / 1e12
    return {
        "name": f"moe experts fwd+bwd N {N} top-{K}: {impl} vs dense GEMMs of the same FLOPs",
        "value": got,
        "unit": "TFLOP/s",
        "baseline": ceiling,
        "ratio": got / ceiling,
        "goal": 0.8,
        "note": f"D {D} I {I} E {E}, {dtype}; gather, SwiGLU and weighted combine included; "
        "baseline: the six GEMMs of a dense SwiGLU FFN over the same rows",
    }


# -- decoding -------------------------------------------------------------------------------
def decode_prompts(cfg: ModelConfig, n: int, rows: int, seed: int = 0) -> list[torch.Tensor]:
    """``n`` prompts of ``rows`` rows [P, K + 1]: random audio codes, padded text column."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        p = torch.randint(0, cfg.codebook_size, (rows, cfg.n_codebooks + 1), generator=g)
        p[:, cfg.n_codebooks] = cfg.text_pad_id
        out.append(p)
    return out


def decode_rows(model: ZonosModel, shapes: GpuBenchConfig, device: torch.device) -> list[dict]:
    """Greedy frames/s at batch 1 and ``decode_batch`` prompts, exactly ``decode_frames`` each."""
    from accord.model.decode import DecodeConfig, Decoder
    from accord.model.sampling import SamplingConfig

    model.eval()
    n_frames = shapes.decode_frames
    sampling = SamplingConfig(temperature=0.0, top_p=1.0, max_frames=n_frames, min_frames=n_frames, seed=0)
    rows = []
    for batch, target in ((1, 600.0), (shapes.decode_batch, 4000.0)):
        prompts = decode_prompts(model.cfg, batch, shapes.prompt_rows)
        t0 = time.perf_counter()
        decoder = Decoder(model, sampling, batch=batch, max_prompt_len=shapes.prompt_rows, cfg=DecodeConfig())
        decoder.generate(prompts)  # warm-up: graphs captured, allocator grown
        setup = time.perf_counter() - t0
        results: list = []

        def once(decoder=decoder, prompts=prompts, results=results) -> None:
            results[:] = decoder.generate(prompts)

        sec = min(timed(once, device) for _ in range(2))
        frames = sum(r.codes_KT.shape[1] for r in results)
        steps = max(r.steps for r in results)
        rows.append(
            {
                "name": f"KV-cache greedy decode {shapes.flavour}, "
                + ("batch 1" if batch == 1 else f"{batch} prompts aggregate"),
                "value": frames / sec,
                "unit": "frames/s",
                "target": target,
                "note": f"{n_frames} frames per prompt ({steps} steps), prompt {shapes.prompt_rows} rows, "
                f"{bench_dtype(device)}; accord.model.decode.Decoder, CUDA graphs: {decoder.graphed}; "
                f"best of 2 after a warm-up ({setup:.1f} s build + warm-up)",
            }
        )
        del decoder
    return rows


# -- the run --------------------------------------------------------------------------------
def _section(name: str, fn: Callable[[], list[dict]], rows: list[dict]) -> None:
    t0, start = time.perf_counter(), len(rows)
    try:
        rows.extend(fn())
    except Exception as e:
        traceback.print_exc()
        rows.append(
            {"name": name, "value": None, "unit": "", "note": f"FAILED: {type(e).__name__}: {e}"[:300]}
        )
    for row in rows[start:]:  # in the log as they come: a run cut short still reports these
        print("   row " + json.dumps(row, default=str), flush=True)
    print(f"   {name}: {time.perf_counter() - t0:.1f}s", flush=True)


def run(quick: bool, device: str = "cpu") -> list[dict]:
    """Issue #12's table on CUDA; the tiny smoke version with ``--quick`` (either device)."""
    if device == "cpu" and not quick:
        return []
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda but torch sees no CUDA device")
    shapes = TINY if quick else FULL
    rows: list[dict] = []
    _section("dense matmul peak", lambda: [matmul_peak(shapes, dev)], rows)
    peak = rows[-1]["value"] if rows and rows[-1].get("value") else None
    _section("moe experts", lambda: moe_rows(shapes, dev), rows)
    _section("attention", lambda: attention_rows(shapes, dev), rows)
    models: list[ZonosModel] = []
    _section("model build", lambda: models.append(build_model(get_flavour(shapes.flavour), dev)) or [], rows)
    if models:
        _section("model fwd+bwd", lambda: model_rows(models[0], shapes, dev, peak), rows)
        _section("decode", lambda: decode_rows(models[0], shapes, dev), rows)
    return rows


if __name__ == "__main__":
    import sys

    dev = "cuda" if "--cuda" in sys.argv else "cpu"
    print(json.dumps(run(quick="--quick" in sys.argv, device=dev), indent=2))
