"""The report's figures as PNG bytes (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import io
import math
from collections import defaultdict

import pyarrow as pa

from accord.report.collect import IngestData, TrainData

STAGE_COLORS = {"pretrain": "#4C72B0", "midtrain": "#55A868", "anneal1": "#C44E52", "anneal2": "#8172B2"}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=96, bbox_inches="tight")
    _plt().close(fig)
    return buf.getvalue()


def hours_plot(ingest: IngestData) -> bytes | None:
    bars: list[tuple[str, float, str]] = []
    if ingest.hours_in is not None:
        bars.append(("in", ingest.hours_in, "#999999"))
    if ingest.clips is not None:
        clipped = sum(d for d in ingest.clips.column("duration_s").to_pylist() if d) / 3600.0
        bars.append(("clipped", clipped, "#bbbbbb"))
    for s, h in ingest.hours_kept().items():
        bars.append((f"kept: {s}", h, STAGE_COLORS.get(s, "#4C72B0")))
    if not bars:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 3.2))
    labels = [b[0] for b in bars]
    # Demo runs hold minutes, clusters thousands of hours: plot in the unit that reads.
    scale, unit = (60.0, "min") if max(b[1] for b in bars) < 1 else (1.0, "h")
    values = [b[1] * scale for b in bars]
    ax.bar(labels, values, color=[b[2] for b in bars])
    for i, v in enumerate(values):
        ax.text(i, v, f"{v:,.1f} {unit}", ha="center", va="bottom", fontsize=8)
    ax.set_ylabel("minutes" if unit == "min" else "hours")
    ax.set_title("Audio in, clipped and kept per stage")
    ax.tick_params(axis="x", labelsize=8)
    return _png(fig)


def agreement_plot(ingest: IngestData) -> bytes | None:
    if ingest.clips is None or not len(ingest.clips):
        return None
    vals = [v for v in ingest.clips.column("agreement").to_pylist() if v is not None and not math.isnan(v)]
    if not vals:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 3.2))
    ax.hist(vals, bins=20, range=(min(0.0, min(vals)), 1.0), color="#4C72B0", edgecolor="white")
    for s, thr in ingest.thresholds.items():
        if thr > 0:
            ax.axvline(
                thr, color=STAGE_COLORS.get(s, "k"), linestyle="--", linewidth=1, label=f"{s} ≥ {thr:g}"
            )
    ax.set_xlabel("agreement (1 − mean pairwise error)")
    ax.set_ylabel("clips")
    ax.set_title(f"ASR agreement over {len(vals)} clips")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    return _png(fig)


def pair_wer_plot(clips: pa.Table | None) -> bytes | None:
    if clips is None or "pairs" not in clips.column_names or not len(clips):
        return None
    by_pair: dict[str, list[float]] = defaultdict(list)
    for pairs in clips.column("pairs").to_pylist():
        for p in pairs or []:
            w = p.get("wer")
            if w is not None and not math.isnan(w):
                by_pair[f"{p['a']} vs {p['b']}"].append(min(w, 1.5))
    if not by_pair:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 3.2))
    for name, ws in sorted(by_pair.items()):
        ax.hist(ws, bins=20, range=(0, 1.5), alpha=0.6, label=f"{name} (n={len(ws)})")
    ax.set_xlabel("pairwise WER (capped at 1.5)")
    ax.set_ylabel("clips")
    ax.set_title("Disagreement between ASR systems")
    ax.legend(fontsize=7)
    return _png(fig)


def loss_plot(train: TrainData) -> bytes | None:
    stages = [s for s in train.stages if s.loss_key]
    if not stages:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, len(stages), figsize=(3.4 * len(stages) + 0.6, 3.2), squeeze=False)
    for ax, sr in zip(axes[0], stages, strict=True):
        key = sr.loss_key
        pts = [(r["step"], r[key]) for r in sr.metrics if key in r]
        ax.plot(
            [p[0] for p in pts], [p[1] for p in pts], color=STAGE_COLORS.get(sr.stage, "#4C72B0"), label=key
        )
        cb = sorted({k for r in sr.metrics for k in r if k.startswith("nll/cb")})
        for k in cb:
            cpts = [(r["step"], r[k]) for r in sr.metrics if k in r]
            ax.plot([p[0] for p in cpts], [p[1] for p in cpts], linewidth=0.6, alpha=0.35, color="gray")
        ax.set_title(sr.stage)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("loss (grey: per-codebook NLL)")
    fig.tight_layout()
    return _png(fig)
