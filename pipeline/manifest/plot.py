"""PNG + HTML views of a manifest: hours per stage and language, agreement histograms."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import pyarrow as pa

from accord.core.stages import STAGES
from accord.pipeline.manifest.stats import (
    AGREEMENT_BINS,
    agreement_histogram,
    disagreeing,
    per_stage_language,
    signal_summary,
)


def _figure(table: pa.Table):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = per_stage_language(table)
    langs = sorted({r.language for r in rows if r.language != "*"})
    fig, axes = plt.subplots(2, 3, figsize=(16, 8))
    (ax1, ax2, ax3), signal_axes = axes[0], axes[1]
    stages = ("all", *STAGES)
    bottom = [0.0] * len(stages)
    for lang in langs:
        h = [next((r.hours for r in rows if r.stage == s and r.language == lang), 0.0) for s in stages]
        ax1.bar(stages, h, bottom=bottom, label=lang)
        bottom = [b + x for b, x in zip(bottom, h, strict=True)]
    ax1.set_ylabel("hours")
    ax1.set_title("hours per stage (eligibility re-applied)")
    if langs:
        ax1.legend(title="language")
    hist = agreement_histogram(table)
    langs_h = sorted(k for k in hist if k != "*")
    w = (AGREEMENT_BINS[1] - AGREEMENT_BINS[0]) / max(1, len(langs_h))
    for i, lang in enumerate(langs_h):
        ax2.bar([a + i * w for a in AGREEMENT_BINS[:-1]], hist[lang], width=w, align="edge", label=lang)
    ax2.set_xlabel("agreement (1 - mean pairwise WER)")
    ax2.set_ylabel("clips")
    ax2.set_title("agreement histogram")
    if len(hist) > 1:
        ax2.legend(title="language")
    signals = signal_summary(table)
    n_asr = signals.get("n_asr", {})
    ax3.bar(list(n_asr), list(n_asr.values()))
    ax3.set_xlabel("ASR systems that support the clip's language (n_asr)")
    ax3.set_ylabel("clips")
    ax3.set_title(f"systems per clip; hallucinated: {signals.get('hallucinated', {}).get('clips', 0)}")
    titles = {
        "dnsmos_ovrl": "DNSMOS P.835 overall",
        "speaker_consistency": "speaker consistency (lowest window-to-clip cosine)",
        "language_prob": "language ID probability (per clip)",
    }
    for ax, (col, title) in zip(signal_axes, titles.items(), strict=True):
        v = signals.get(col)
        if v:
            ax.bar(v["bins"][:-1], v["counts"], width=v["bins"][1] - v["bins"][0], align="edge")
        ax.set_title(f"{title}: {v['measured'] if v else 0} clips measured")
        ax.set_xlabel(col)
        ax.set_ylabel("clips")
    fig.tight_layout()
    return fig


def plot_manifest(table: pa.Table, out_dir: str | Path, title: str = "accord manifest") -> tuple[Path, Path]:
    """Write ``manifest.png`` and ``manifest.html`` (PNG embedded, tables, worst clips) to ``out_dir``."""
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fig = _figure(table)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    png = out / "manifest.png"
    png.write_bytes(buf.getvalue())
    rows = per_stage_language(table)
    trs = "".join(
        f"<tr><td>{html.escape(r.stage)}</td><td>{html.escape(r.language)}</td><td>{r.clips}</td>"
        f"<td>{r.hours:.3f}</td></tr>"
        for r in rows
    )
    worst = ""
    for r in disagreeing(table, below=0.8, limit=20):
        ts = "<br>".join(
            f"<b>{html.escape(t['system'] or '')}</b>: {html.escape(t['text'] or '')}"
            for t in r["transcripts"]
        )
        cid, agr = html.escape(r["clip_id"] or ""), r["agreement"] or 0.0
        worst += f"<tr><td>{cid}</td><td>{agr:.2f}</td><td>{ts}</td></tr>"
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:left}}</style></head><body>
<h1>{html.escape(title)}</h1>
<img src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}" alt="hours and agreement">
<h2>Clips and hours per stage and language</h2>
<table><tr><th>stage</th><th>language</th><th>clips</th><th>hours</th></tr>{trs}</table>
<h2>Disagreeing transcripts (agreement &lt; 0.8)</h2>
<table><tr><th>clip</th><th>agreement</th><th>transcripts</th></tr>{worst}</table>
</body></html>
"""
    page_path = out / "manifest.html"
    page_path.write_text(page, encoding="utf-8")
    return png, page_path
