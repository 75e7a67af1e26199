"""Training metrics accumulated on the training device and read by the host once per log.

Reading a CUDA tensor on the host (``float(t)``, ``.item()``, ``.cpu()``, ``.tolist()``) waits
for the GPU to finish everything queued before it. Done per micro-batch, as the trainer once
did for its loss, per-codebook NLL and router counts, that serialises the host with the GPU
and starves the queue. :class:`StepMetrics` keeps every sum as a device tensor (adding to it
only queues kernels) and :meth:`StepMetrics.flush` moves them to the host in one copy, after
one all-reduce across ranks, at the steps that are logged. Between flushes it never reads a
device tensor: with ``device="meta"`` every method but ``flush`` runs, which is how the CPU
tests prove it.

A flushed row covers the window since the previous flush (Megatron's logging interval):
micro-batch means of the loss terms, token-weighted per-codebook NLL, expert loads and the
throughput over the window's wall time, which ends after the host read and so includes the
GPU's work.
"""

from __future__ import annotations

import time
from typing import Any

import torch
import torch.distributed as dist

from accord.train.loss import LossOut
from accord.train.metrics import expert_utilisation

SCALARS = ("loss", "nll", "balance")


class StepMetrics:
    """Device-side sums of one logging window; ``flush`` is the only host sync."""

    def __init__(self, n_codebooks: int, device: torch.device | str) -> None:
        self.n_codebooks = n_codebooks
        self.device = torch.device(device)
        self.reset()
        self.device = self._scalars_3.device  # "cuda" -> "cuda:0": what tensors report

    def reset(self) -> None:
        zeros = lambda n: torch.zeros(n, dtype=torch.float64, device=self.device)  # noqa: E731
        self._scalars_3 = zeros(len(SCALARS))
        self._nll_sum_K = zeros(self.n_codebooks)
        self._tokens_K = zeros(self.n_codebooks)
        self._router: dict[int, torch.Tensor] = {}  # layer -> routed slots per expert (int64)
        self.micro_batches = 0
        self.steps = 0
        self.frames = 0  # real rows this rank trained on (host ints from the collator)
        self._t0 = time.perf_counter()

    def _on_device(self, name: str, t: torch.Tensor) -> torch.Tensor:
        # CUDA happily multiplies by a 0-d CPU tensor, so a loss computed on the wrong device
        # would pass unnoticed; the device attribute is host metadata, checking it is free
        if t.device != self.device:
            raise ValueError(f"StepMetrics on {self.device} got {name} on {t.device}")
        return t.detach()

    def add(self, lo: LossOut, router_counts: dict[int, torch.Tensor], n_frames: int) -> None:
        """One micro-batch's loss terms and router counts (queues device ops, never syncs)."""
        loss, nll, bal = (self._on_device(n, getattr(lo, n)) for n in SCALARS)
        self._scalars_3 += torch.stack([loss.double(), nll.double(), bal.double()])
        nll_K = self._on_device("nll_K", lo.nll_K).double()
        tokens_K = self._on_device("n_tokens_K", lo.n_tokens_K).double()
        # nll_K is a per-codebook mean, NaN where a codebook had no target: back to a sum
        self._nll_sum_K += torch.where(tokens_K > 0, nll_K * tokens_K, 0.0)
        self._tokens_K += tokens_K
        for layer, counts_E in router_counts.items():
            counts_E = self._on_device(f"router counts of layer {layer}", counts_E)
            acc = self._router.get(layer)
            self._router[layer] = counts_E.clone() if acc is None else acc + counts_E
        self.micro_batches += 1
        self.frames += int(n_frames)

    def end_step(self) -> None:
        self.steps += 1

    def flush(self, world: int = 1) -> dict[str, Any]:
        """The window's row (rank means / sums over ``world`` ranks); every rank must call it."""
        if self.micro_batches == 0:
            raise RuntimeError("StepMetrics.flush: no micro-batch since the last flush")
        layers = sorted(self._router)
        K = self.n_codebooks
        counts = [self._router[layer].double() for layer in layers]
        frames_1 = torch.full((1,), float(self.frames), dtype=torch.float64, device=self.device)
        flat = torch.cat([self._scalars_3, self._nll_sum_K, self._tokens_K, frames_1, *counts])
        if world > 1 and dist.is_initialized():
            dist.all_reduce(flat)
        host = flat.cpu()  # the one host sync of the window
        dt = time.perf_counter() - self._t0
        n_micro = self.micro_batches * world
        scalars, nll_sum_K, tokens_K = host[:3], host[3 : 3 + K], host[3 + K : 3 + 2 * K]
        frames = float(host[3 + 2 * K])
        router, off = {}, 4 + 2 * K
        for layer, c in zip(layers, counts, strict=True):
            router[layer] = host[off : off + c.numel()]
            off += c.numel()
        row: dict[str, Any] = {name: float(scalars[i]) / n_micro for i, name in enumerate(SCALARS)}
        row.update({f"nll/cb{k}": float(nll_sum_K[k] / tokens_K[k]) for k in range(K) if tokens_K[k] > 0})
        row.update(expert_utilisation(router))
        row.update(
            frames=int(frames),
            tokens_per_s=frames / dt,
            step_s=dt / max(1, self.steps),
            steps_in_window=self.steps,
        )
        self.reset()
        return row
