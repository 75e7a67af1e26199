"""MoE layer forward+backward: accord's grouped kernels vs a per-expert Python loop, same routing.

All kernels run the same ``GroupedExperts`` weights on the same tokens, expert choices and
combine weights (fixed before timing); only the kernel differs. Runs alternate (each rep
visits every kernel, the order reversing between reps) and medians are compared, since this
machine's speed drifts between passes and other work shares it.

The "moe ceiling" rows time, in the same alternation, the six fwd+bwd GEMMs a *dense* SwiGLU
FFN over the same N*topk rows would run (same FLOPs, single GEMMs, no routing, gather,
SwiGLU or combine). No grouped kernel can beat that on this machine, so loop time / dense
time is the largest speed-up over the loop any MoE kernel could reach here.
"""

from __future__ import annotations

import statistics
import time

import torch

from accord.model.moe import GroupedExperts, grouped_mm_supported, swiglu_interleaved
from bench.flops import swiglu_ffn_flops


def _case(n_tokens: int, dim: int, hidden: int, n_experts: int, topk: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    experts = GroupedExperts(dim, hidden, n_experts)
    experts.reset_parameters()
    x = torch.randn(n_tokens, dim, generator=g)
    logits = torch.randn(n_tokens, n_experts, generator=g)
    probs = logits.softmax(-1)
    choice = probs.topk(topk, dim=-1).indices  # realistic, mildly unbalanced routing
    weights = probs.gather(-1, choice)
    return experts, x, choice, weights


def _time(experts: GroupedExperts, impl: str, x, choice, weights) -> float:
    experts.impl = impl
    experts.zero_grad(set_to_none=True)
    xg = x.clone().requires_grad_(True)
    t0 = time.perf_counter()
    y = experts(xg, choice, weights)
    y.backward(torch.ones_like(y))
    return time.perf_counter() - t0


def dense_ffn_operands(
    rows: int, dim: int, hidden: int, device: str = "cpu", dtype: torch.dtype = torch.float32, seed: int = 1
) -> dict[str, torch.Tensor]:
    """Inputs of a dense SwiGLU FFN's GEMMs, weights laid out as the experts' (``w13`` [2I, D])."""
    g = torch.Generator(device).manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, device=device, dtype=dtype)  # noqa: E731
    return {"x": r(rows, dim), "w13": r(2 * hidden, dim), "w2": r(dim, hidden),
            "a": r(rows, hidden), "dy": r(rows, dim), "dh": r(rows, 2 * hidden)}  # fmt: skip


def dense_ffn_gemms(op: dict[str, torch.Tensor]) -> None:
    """The six GEMMs of a dense FFN's forward+backward (3 x 2*M*3*D*I FLOPs), nothing else."""
    op["x"] @ op["w13"].T  # forward: h = x W13^T, y = a W2^T
    op["a"] @ op["w2"].T
    op["dy"] @ op["w2"]  # backward: da, dW2, dx, dW13
    op["dy"].T @ op["a"]
    op["dh"] @ op["w13"]
    op["dh"].T @ op["x"]


def _time_dense(op: dict[str, torch.Tensor]) -> float:
    t0 = time.perf_counter()
    dense_ffn_gemms(op)
    return time.perf_counter() - t0


def _time_dense_ffn(op: dict[str, torch.Tensor]) -> float:
    """A dense SwiGLU FFN's forward+backward under autograd: the GEMMs plus the SwiGLU."""
    x = op["x"].requires_grad_(True)
    w13, w2 = op["w13"].requires_grad_(True), op["w2"].requires_grad_(True)
    x.grad = w13.grad = w2.grad = None
    t0 = time.perf_counter()
    y = swiglu_interleaved(x @ w13.T) @ w2.T
    y.backward(op["dy"])
    return time.perf_counter() - t0


def _time_any(name: str, case: tuple, dense: dict[str, torch.Tensor]) -> float:
    if name == "dense":
        return _time_dense(dense)
    if name == "dense_ffn":
        return _time_dense_ffn(dense)
    experts, x, choice, weights = case
    return _time(experts, name, x, choice, weights)


def run(quick: bool, device: str = "cpu") -> list[dict]:
    """CPU rows; the CUDA MoE rows are in bench_gpu."""
    if device != "cpu":
        return []
    torch.set_num_threads(2)
    n_tokens, reps = (1024, 3) if quick else (4096, 7)
    dim, hidden, n_experts = 512, 1024, 16
    rows = []
    has_gmm = grouped_mm_supported("cpu", torch.float32)
    impls = ["padded", "grouped_mm", "loop"] if has_gmm else ["padded", "loop"]
    for topk in (1, 2):
        experts, x, choice, weights = _case(n_tokens, dim, hidden, n_experts, topk)
        dense = dense_ffn_operands(n_tokens * topk, dim, hidden)
        auto = experts.impl_for(x, rows=n_tokens * topk)  # weights require grad: the training-time choice
        order = [*impls, "dense", "dense_ffn"]
        for i in order:  # warm-up
            _time_any(i, (experts, x, choice, weights), dense)
        times: dict[str, list[float]] = {i: [] for i in order}
        for _ in range(reps):
            for i in order:
                times[i].append(_time_any(i, (experts, x, choice, weights), dense))
            order.reverse()
        med = {i: statistics.median(t) for i, t in times.items()}
        flops = swiglu_ffn_flops(n_tokens * topk, dim, hidden)
        gfs = {i: flops / m / 1e9 for i, m in med.items()}
        shape = f"D={dim} I={hidden} E={n_experts} N={n_tokens} fp32, 2 threads, median of {reps}"
        for impl in impls[:-1]:
            rows.append(
                {
                    "name": f"moe fwd+bwd {impl}{' (auto in training)' if impl == auto else ''} "
                    f"vs per-expert loop (top-{topk})",
                    "value": n_tokens / med[impl],
                    "unit": "tokens/s",
                    "baseline": n_tokens / med["loop"],
                    "ratio": med["loop"] / med[impl],
                    "goal": 3.0,
                    "note": f"{shape}; {gfs[impl]:.0f} GFLOP/s vs loop {gfs['loop']:.0f}; "
                    f"CPU auto here: {auto}",
                }
            )
        kernels = ", ".join(f"{i} {gfs[i]:.0f}" for i in impls)
        rows.append(
            {
                "name": f"moe ceiling: dense GEMM of the same FLOPs vs per-expert loop (top-{topk})",
                "value": n_tokens / med["dense"],
                "unit": "tokens/s",
                "baseline": n_tokens / med["loop"],
                "ratio": med["loop"] / med["dense"],
                "goal": 3.0,
                "note": f"{shape}; the 6 fwd+bwd GEMMs of a dense FFN over N*top-k rows, no routing: "
                f"upper bound of any grouped kernel's ratio. GFLOP/s: dense {gfs['dense']:.0f}, {kernels}; "
                f"dense FFN with its SwiGLU (autograd) {gfs['dense_ffn']:.0f}, "
                f"ratio {med['loop'] / med['dense_ffn']:.2f}",
            }
        )
    return rows


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
