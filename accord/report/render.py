"""Build the self-contained HTML report: plots and audio embedded as data URIs, one file to share.

Audio larger than ``ReportConfig.embed_audio_max_mb`` is copied beside the HTML file and linked
instead, so a long synthesis does not make a page the browser chokes on.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from accord.core.shards import INDEX_PARQUET, TOKENIZE_JSON
from accord.core.stages import STAGES
from accord.core.storage import atomic_write_bytes
from accord.report import plots
from accord.report.collect import (
    IngestData,
    ShardsData,
    TrainData,
    read_ingest,
    read_shards,
    read_train,
    results,
)
from accord.report.inputs import ReportInputs

CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d232a;
  background:#f6f7f9}
main{max-width:1080px;margin:0 auto;padding:24px}
h1{font-size:24px;margin:0 0 4px}
h2{font-size:18px;margin:28px 0 10px;border-bottom:1px solid #dde1e6;padding-bottom:4px}
.sub{color:#5b6571;font-size:12px}
.cards{display:flex;flex-wrap:wrap;gap:10px;margin:16px 0}
.card{background:#fff;border:1px solid #dde1e6;border-radius:8px;padding:10px 14px;min-width:120px}
.card b{display:block;font-size:20px} .card span{color:#5b6571;font-size:12px}
table{border-collapse:collapse;background:#fff;margin:8px 0;font-size:13px}
td,th{border:1px solid #dde1e6;padding:4px 8px;text-align:left;vertical-align:top} th{background:#eef1f4}
td.num{text-align:right;font-variant-numeric:tabular-nums}
img.plot{display:block;max-width:100%;background:#fff;border:1px solid #dde1e6;border-radius:6px;margin:8px 0}
.notes{color:#8a5a00;font-size:12px} .empty{color:#5b6571;font-style:italic}
audio{width:100%;max-width:560px}
"""

# Marks decoded images and loaded audio on the page (data-decoded / data-duration), which makes a
# broken embed visible to a headless browser check and to anyone inspecting the page.
SCRIPT = """
function mark(){
  for (const img of document.images){
    const ok = img.complete && img.naturalWidth > 0;
    img.dataset.decoded = ok ? img.naturalWidth + 'x' + img.naturalHeight : '0';
  }
  document.body.dataset.ready = '1';
}
window.addEventListener('load', mark);
for (const a of document.querySelectorAll('audio')){
  a.addEventListener('loadedmetadata', () => { a.dataset.duration = a.duration.toFixed(2); });
  a.addEventListener('error', () => { a.dataset.duration = 'error'; });
}
"""


@dataclass
class ReportConfig:
    title: str = "accord run report"
    embed_audio_max_mb: float = 20.0
    max_disagreements: int = 8


def _e(x: Any) -> str:
    return html.escape(str(x))


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return "–"
        return f"{v:,.4g}" if abs(v) < 1000 else f"{v:,.1f}"
    return _e(v)


def _hours(h: float | None) -> str:
    if h is None:
        return "–"
    return f"{h * 60:.1f} min" if h < 1 else f"{h:,.2f} h"


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="num">{_fmt(c)}</td>' if isinstance(c, int | float) else f"<td>{_e(c)}</td>"
            for c in r
        )
        + "</tr>"
        for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _img(png: bytes | None, alt: str) -> str:
    if not png:
        return f'<p class="empty">{_e(alt)}: no data</p>'
    b64 = base64.b64encode(png).decode()
    return f'<img class="plot" alt="{_e(alt)}" src="data:image/png;base64,{b64}">'


def _card(value: str, label: str) -> str:
    return f'<div class="card"><b>{_e(value)}</b><span>{_e(label)}</span></div>'


def _notes(notes: list[str]) -> str:
    return "".join(f'<p class="notes">⚠ {_e(n)}</p>' for n in notes)


def _wav_bytes(path: Path) -> tuple[bytes, float, int]:
    """16-bit PCM WAV (what every browser plays), its duration and sample rate."""
    import soundfile as sf

    data, sr = sf.read(str(path), always_2d=True)
    buf = io.BytesIO()
    sf.write(buf, data, sr, format="WAV", subtype="PCM_16")
    return buf.getvalue(), len(data) / sr, sr


def _audio(path: Path, out_dir: Path, cfg: ReportConfig, label: str) -> str:
    try:
        wav, dur, sr = _wav_bytes(path)
    except Exception as e:
        return f'<p class="notes">⚠ {_e(path.name)}: not playable ({_e(type(e).__name__)}: {_e(e)})</p>'
    if len(wav) <= cfg.embed_audio_max_mb * 1e6:
        src = "data:audio/wav;base64," + base64.b64encode(wav).decode()
    else:
        media = out_dir / "media"
        media.mkdir(parents=True, exist_ok=True)
        target = media / path.name
        atomic_write_bytes(target, wav)
        src = os.path.relpath(target, out_dir)
    return (
        f"<figure><figcaption>{_e(label)} — {_e(path.name)}, {dur:.2f} s, {sr} Hz</figcaption>"
        f'<audio controls preload="metadata" src="{_e(src)}"></audio></figure>'
    )


# --- sections -----------------------------------------------------------------------------------


def _summary_cards(ingest: IngestData, shards: ShardsData, train: TrainData) -> str:
    cards = [_card(_hours(ingest.hours_in), "audio in")]
    kept = ingest.hours_kept()
    for s in STAGES:
        if s in kept:
            cards.append(_card(_hours(kept[s]), f"kept for {s}"))
    if ingest.clips is not None:
        cards.append(_card(f"{len(ingest.clips):,}", "clips"))
    if ingest.errors is not None:
        cards.append(_card(f"{len(ingest.errors):,}", "error rows"))
    if shards.samples is not None:
        cards.append(_card(f"{len(shards.samples):,}", "samples in shards"))
    trained = [s.stage for s in train.stages if s.metrics]
    if trained:
        cards.append(_card(f"{len(trained)}/{len(STAGES)}", "stages trained"))
    return '<div class="cards">' + "".join(cards) + "</div>"


def _ingest_section(ingest: IngestData, cfg: ReportConfig) -> str:
    parts = ["<h2>Ingest</h2>", _img(plots.hours_plot(ingest), "hours in and kept per stage")]
    rows = []
    reasons: Counter = Counter()
    for r in ingest.records:
        res = results(r)
        counts = {
            **(r.get("counts") or {}),
            **{k: res[k] for k in ("clips", "sources_committed") if k in res},
        }
        timings = r.get("timings_s") or {}
        rows.append(
            [
                r.get("run_id", "?"),
                r.get("status", "?"),
                _hours(res.get("hours_in")),
                _hours(res.get("hours_clipped")),
                ", ".join(f"{k}={v}" for k, v in counts.items() if isinstance(v, int | float)) or "–",
                timings.get("total", "–"),
            ]
        )
        reasons.update({k: v for k, v in (res.get("errors_by_reason") or {}).items() if isinstance(v, int)})
    if rows:
        parts.append(_table(["run", "status", "hours in", "hours clipped", "counts", "total s"], rows))
    if ingest.clips is not None and len(ingest.clips):
        langs = Counter()
        for lang, d in zip(
            ingest.clips.column("language").to_pylist(),
            ingest.clips.column("duration_s").to_pylist(),
            strict=True,
        ):
            langs[lang or "?"] += d or 0.0
        parts.append(
            _table(["language", "hours of clips"], [[k, _hours(v / 3600)] for k, v in sorted(langs.items())])
        )
    if ingest.errors is not None and len(ingest.errors):
        by = Counter(
            zip(
                ingest.errors.column("step").to_pylist(),
                ingest.errors.column("error_type").to_pylist(),
                strict=True,
            )
        )
        parts.append("<h3>Errors by step and reason</h3>")
        parts.append(_table(["step", "error", "rows"], [[s, t, n] for (s, t), n in by.most_common()]))
    elif reasons:
        parts.append("<h3>Errors by reason (run records)</h3>")
        parts.append(_table(["reason", "count"], [[k, v] for k, v in reasons.most_common()]))
    parts.append(_notes(ingest.notes))
    return "".join(parts)


def _agreement_section(ingest: IngestData, cfg: ReportConfig) -> str:
    parts = ["<h2>ASR agreement</h2>", _img(plots.agreement_plot(ingest), "agreement histogram")]
    parts.append(_img(plots.pair_wer_plot(ingest.clips), "pairwise WER per system pair"))
    if ingest.clips is not None and len(ingest.clips):
        rows = sorted(ingest.clips.select(["clip_id", "agreement", "transcripts"]).to_pylist(),
                      key=lambda r: (r["agreement"] if r["agreement"] is not None else -1))  # fmt: skip
        worst = [r for r in rows if r["transcripts"]][: cfg.max_disagreements]
        if worst:
            parts.append("<h3>Least agreeing clips</h3>")
            parts.append(
                _table(
                    ["clip", "agreement", "transcripts"],
                    [
                        [
                            r["clip_id"][:16],
                            r["agreement"] if r["agreement"] is not None else float("nan"),
                            " | ".join(f"{t['system']}: {t['text']}" for t in r["transcripts"]),
                        ]
                        for r in worst
                    ],
                )
            )
    return "".join(parts)


def _shards_section(shards: ShardsData) -> str:
    parts = ["<h2>Shards</h2>"]
    if shards.index is not None and len(shards.index):
        idx = shards.index
        rows = [["shards", len(idx)]]
        for col in ("n_samples", "n_errors", "seconds", "bytes"):
            if col in idx.column_names:
                rows.append([col, sum(v or 0 for v in idx.column(col).to_pylist())])
        for s in STAGES:
            if f"n_{s}" in idx.column_names:
                n = sum(v or 0 for v in idx.column(f"n_{s}").to_pylist())
                h = (
                    sum(v or 0 for v in idx.column(f"hours_{s}").to_pylist())
                    if f"hours_{s}" in idx.column_names
                    else None
                )
                rows.append([f"{s}: samples / hours", f"{n} / {_hours(h)}"])
        parts.append(_table([INDEX_PARQUET, "value"], rows))
    if shards.config:
        flat = [[k, v] for k, v in _flatten(shards.config) if len(str(v)) < 200][:40]
        if flat:
            parts.append(_table([TOKENIZE_JSON, "value"], flat))
    parts.append(_notes(shards.notes))
    return "".join(parts)


def _train_section(train: TrainData) -> str:
    parts = ["<h2>Training</h2>", _img(plots.loss_plot(train), "loss curves per stage")]
    rows = []
    for sr in train.stages:
        key = sr.loss_key
        vals = [r[key] for r in sr.metrics if key and key in r]
        steps = [r["step"] for r in sr.metrics]
        rows.append(
            [
                sr.stage,
                int(max(steps)) if steps else "–",
                vals[0] if vals else "–",
                vals[-1] if vals else "–",
                "yes" if sr.exported else "no",
            ]
        )
    if rows:
        parts.append(_table(["stage", "last step", "first loss", "last loss", "exported"], rows))
    parts.append(_notes(train.notes))
    return "".join(parts)


def _flatten(d: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out = []
    for k, v in d.items():
        if isinstance(v, dict):
            out.extend(_flatten(v, f"{prefix}{k}."))
        elif isinstance(v, str | int | float | bool) and not isinstance(v, bool):
            out.append((f"{prefix}{k}", v))
        elif isinstance(v, list) and all(isinstance(x, str) for x in v):
            out.append((f"{prefix}{k}", ", ".join(v) or "none"))  # e.g. random_weights
    return out


def _eval_section(train: TrainData, out_dir: Path, cfg: ReportConfig) -> str:
    parts = ["<h2>Mini-eval</h2>"]
    by_run: dict[tuple[str, str], dict[str, Any]] = {}
    details: list[list[Any]] = []
    samples = []
    for sr in train.stages:
        for name, content in sr.evals:
            flat = _flatten(content)
            by_run[(sr.stage, name)] = {k: v for k, v in flat if isinstance(v, int | float)}
            info = [f"{k}: {v}" for k, v in flat if isinstance(v, str)]
            if info:
                details.append([sr.stage, "; ".join(info)])
            for s in content.get("items") or content.get("samples") or content.get("sentences") or []:
                if isinstance(s, dict):
                    hyp = s.get("hypothesis", s.get("transcript", ""))
                    samples.append([sr.stage, s.get("text", ""), hyp, s.get("wer", "–")])
    if by_run:
        metrics = list(dict.fromkeys(k for m in by_run.values() for k in m))
        rows = [[stage, name, *(m.get(k, "–") for k in metrics)] for (stage, name), m in by_run.items()]
        parts.append(_table(["stage", "file", *metrics], rows))
        if details:
            parts.append(_table(["stage", "details"], details))
    else:
        parts.append('<p class="empty">no mini-eval results found</p>')
    if samples:
        parts.append(_table(["stage", "text", "ASR of the synthesis", "WER"], samples))
    for sr in train.stages:
        for wav in sr.eval_audio:
            parts.append(_audio(wav, out_dir, cfg, f"mini-eval {sr.stage}"))
    return "".join(parts)


def _audio_section(inputs: ReportInputs, out_dir: Path, cfg: ReportConfig) -> str:
    parts = ["<h2>Synthesized audio</h2>"]
    if not inputs.synth:
        parts.append('<p class="empty">no synthesized audio given or found</p>')
    for wav in inputs.synth:
        parts.append(_audio(wav, out_dir, cfg, "accord synth"))
    return "".join(parts)


def render(inputs: ReportInputs, out_path: Path, cfg: ReportConfig | None = None) -> str:
    cfg = cfg or ReportConfig()
    ingest = read_ingest(inputs.ingest)
    shards = read_shards(inputs.shards)
    train = read_train(inputs.train)
    out_dir = out_path.parent
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    sources = _table(["input", "path"], [[k, v] for k, v in inputs.describe().items()])
    body = "".join(
        [
            f"<h1>{_e(cfg.title)}</h1><div class='sub'>generated {when}</div>",
            _summary_cards(ingest, shards, train),
            _audio_section(inputs, out_dir, cfg),
            _ingest_section(ingest, cfg),
            _agreement_section(ingest, cfg),
            _shards_section(shards),
            _train_section(train),
            _eval_section(train, out_dir, cfg),
            "<h2>Inputs</h2>",
            sources,
        ]
    )
    # JSON inside <script> is not entity-decoded: escape only what could close the element.
    meta = json.dumps({"generator": "accord report", "inputs": inputs.describe()}).replace("</", "<\\/")
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width,initial-scale=1'>"
        f"<title>{_e(cfg.title)}</title><style>{CSS}</style>"
        f"<script type='application/json' id='accord-report-meta'>{meta}</script></head>"
        f"<body><main>{body}</main><script>{SCRIPT}</script></body></html>"
    )


def build_report(inputs: ReportInputs, out_path: Path, cfg: ReportConfig | None = None) -> Path:
    """Write the report to ``out_path`` atomically (a reader never sees half a page)."""
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    page = render(inputs, out_path, cfg)
    atomic_write_bytes(out_path, page.encode("utf-8"))
    return out_path
