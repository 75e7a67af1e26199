"""MoE layer forward+backward: accord's grouped kernel vs a per-expert Python loop, same routing.

Both run the same ``GroupedExperts`` weights on the same tokens, expert choices and combine
weights (fixed before timing); only the kernel differs. Runs alternate (grouped, loop, ...)
and the median is compared, since this machine's speed drifts between passes.
"""

from __future__ import annotations

import statistics
import time

import torch
from accord.model.moe import GroupedExperts, grouped_mm_supported


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


def run(quick: bool) -> list[dict]:
    torch.set_num_threads(2)
    n_tokens, reps = (1024, 3) if quick else (4096, 5)
    dim, hidden, n_experts = 512, 1024, 16
    rows = []
    # "padded" is what the model picks on the CPU; grouped_mm is shown when torch runs it here
    has_gmm = grouped_mm_supported("cpu", torch.float32)
    impls = ["padded", "grouped_mm", "loop"] if has_gmm else ["padded", "loop"]
    for topk in (1, 2):
        experts, x, choice, weights = _case(n_tokens, dim, hidden, n_experts, topk)
        for impl in impls:  # warm-up
            _time(experts, impl, x, choice, weights)
        times: dict[str, list[float]] = {i: [] for i in impls}
        for _ in range(reps):
            for impl in impls:
                times[impl].append(_time(experts, impl, x, choice, weights))
        med = {i: statistics.median(t) for i, t in times.items()}
        flops = 3 * 2 * n_tokens * topk * 3 * dim * hidden  # fwd + bwd, three GEMMs of D x I
        for impl in impls[:-1]:
            rows.append(
                {
                    "name": f"moe fwd+bwd {impl}{' (CPU default)' if impl == 'padded' else ''} "
                    f"vs per-expert loop (top-{topk})",
                    "value": n_tokens / med[impl],
                    "unit": "tokens/s",
                    "baseline": n_tokens / med["loop"],
                    "ratio": med["loop"] / med[impl],
                    "goal": 3.0,
                    "note": f"D={dim} I={hidden} E={n_experts} N={n_tokens} fp32, 2 threads, "
                    f"median of {reps}; {flops / med[impl] / 1e9:.0f} GFLOP/s "
                    f"vs loop {flops / med['loop'] / 1e9:.0f}",
                }
            )
    return rows


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
