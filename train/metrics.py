"""Run metrics: loss per codebook, expert utilisation and balance, tokens/s, grad norm, LR.

Rank 0 appends one JSON line per logged step to ``metrics.jsonl`` (the source of truth the
tests and the run summary read), mirrors scalars to TensorBoard when it is installed, and at
the end of a stage renders ``summary.png`` and ``summary.html``.
"""

from __future__ import annotations

import base64
import html
import json
import logging
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)


def expert_utilisation(router_stats: dict[int, torch.Tensor]) -> dict[str, float]:
    """Per MoE layer: share of routed slots per expert and max/mean load (1.0 = balanced).

    Takes host tensors (``StepMetrics.flush`` reads them from the device once per log).
    """
    out: dict[str, float] = {}
    imbalance = []
    for layer, counts in sorted(router_stats.items()):
        c = counts.detach().float().cpu()
        total = float(c.sum())
        if total <= 0:
            continue
        share = c / total
        for e, s in enumerate(share.tolist()):
            out[f"experts/layer{layer}/e{e}"] = s
        ratio = float(c.max() / c.mean())
        out[f"experts/layer{layer}/max_over_mean"] = ratio
        imbalance.append(ratio)
    if imbalance:
        out["experts/max_over_mean"] = sum(imbalance) / len(imbalance)
    return out


class MetricsLogger:
    def __init__(self, run_dir: Path, enabled: bool = True, tensorboard: bool = True) -> None:
        self.run_dir = run_dir
        self.enabled = enabled
        self.path = run_dir / "metrics.jsonl"
        self.tb = None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(run_dir / "tensorboard"))
            except Exception as e:  # tensorboard is optional at run time
                log.info("TensorBoard disabled: %s", e)

    def log(self, step: int, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        row = {"step": step, **row}
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        if self.tb is not None:
            for k, v in row.items():
                if isinstance(v, int | float) and k != "step":
                    self.tb.add_scalar(k, v, step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    p = run_dir / "metrics.jsonl"
    if not p.exists():
        return []
    rows = [json.loads(line) for line in p.read_text().splitlines() if line.strip()]
    # a resumed run re-logs steps after its checkpoint: keep the last value of each step
    by_step = {r["step"]: r for r in rows}
    return [by_step[s] for s in sorted(by_step)]


def write_summary(run_dir: Path, title: str, extra: dict[str, Any] | None = None) -> Path | None:
    """``summary.png`` (loss, per-codebook loss, LR, grad norm, expert balance) + ``summary.html``."""
    rows = read_metrics(run_dir)
    if not rows:
        return None
    try:
        import matplotlib
    except ImportError:  # a lean training image (the GPU tier's) may lack it; metrics.jsonl has it all
        log.warning("matplotlib is not installed: no %s", run_dir / "summary.png")
        return None

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r["step"] for r in rows]
    fig, axes = plt.subplots(2, 3, figsize=(13, 7))
    series = [
        ("loss", ["loss", "nll"]),
        ("per-codebook NLL", sorted(k for k in rows[-1] if k.startswith("nll/cb"))),
        ("learning rate", sorted(k for k in rows[-1] if k.startswith("lr/"))),
        ("grad norm", ["grad_norm"]),
        ("tokens/s", ["tokens_per_s"]),
        ("expert max/mean load", ["experts/max_over_mean", "balance"]),
    ]
    for ax, (name, keys) in zip(axes.flat, series, strict=True):
        for k in keys:
            ys = [r.get(k) for r in rows]
            pts = [(s, y) for s, y in zip(steps, ys, strict=True) if isinstance(y, int | float)]
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], label=k)
        ax.set_title(name)
        ax.set_xlabel("step")
        if keys and len(keys) <= 10:
            ax.legend(fontsize=6)
    fig.suptitle(title)
    fig.tight_layout()
    png = run_dir / "summary.png"
    fig.savefig(png, dpi=80)
    plt.close(fig)
    last = rows[-1]
    table = "".join(
        f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(str(v))}</td></tr>"
        for k, v in {**last, **(extra or {})}.items()
        if not str(k).startswith("experts/layer")
    )
    img = base64.b64encode(png.read_bytes()).decode()
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head>"
        f"<body><h1>{html.escape(title)}</h1><img src='data:image/png;base64,{img}'/>"
        f"<h2>last logged step</h2><table border='1'>{table}</table></body></html>"
    )
    (run_dir / "summary.html").write_text(page)
    return png
