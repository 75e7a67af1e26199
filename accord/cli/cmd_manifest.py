"""``accord manifest stats|show|filter|plot|explore``: views over an ingest output (eligibility
re-applied)."""

from __future__ import annotations

import json
from typing import Any

import click

from accord.core.stages import STAGES

_common = [
    click.argument("out_uri"),
    click.option(
        "--stage",
        type=click.Choice(STAGES),
        default=None,
        help="Only clips eligible for this stage (re-applied at read time).",
    ),
    click.option("--lang", default=None, help="Only this language (ISO 639-1)."),
    click.option(
        "--thresholds",
        default=None,
        help="YAML with eligibility thresholds (an 'eligibility:' section or the mapping itself) "
        "overriding the defaults.",
    ),
]


def common(f):
    for deco in reversed(_common):
        f = deco(f)
    return f


def _read(out_uri: str, stage: str | None, lang: str | None, thresholds: Any):
    from accord.core.errors import InputNotFound
    from accord.core.manifest import read_manifest
    from accord.core.storage import Store, redact_uri

    store = Store(out_uri)
    if not (store.exists("manifest") or store.exists("errors")):
        raise InputNotFound(
            f"no ingest output at {redact_uri(out_uri)} (no manifest/ or errors/): pass the --out "
            "folder of an `accord ingest`"
        )

    return read_manifest(out_uri, stage=stage, lang=lang, thresholds=thresholds)


def _num(x) -> str:
    return "-" if x is None or x != x else f"{x:.2f}"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def manifest() -> None:
    """Inspect agreement-filtered manifests: stats, show, filter, plot, explore."""


@manifest.command()
@common
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def stats(out_uri, stage, lang, thresholds, as_json) -> None:
    """Hours and clips per stage and language, agreement histogram, what each gate of a stage
    removes (every stage, or --stage's), the quality signals, errors by reason."""
    import pyarrow.compute as pc
    from rich.console import Console
    from rich.table import Table

    from accord.core.eligibility import load_thresholds
    from accord.core.manifest import read_errors
    from accord.pipeline.manifest.stats import AGREEMENT_BINS, gate_counts, summary_dict

    th = load_thresholds(thresholds)  # read once: the manifest and the gates use the same
    everything = _read(out_uri, None, lang, th)
    table = everything.filter(pc.field(f"eligible_{stage}")) if stage else everything
    gates = gate_counts(everything, th, (stage,) if stage else STAGES)
    summary = summary_dict(table, read_errors(out_uri), gates)
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    console = Console()
    t = Table(title=f"{summary['clips']} clips, {summary['hours']:.3f} h")
    for col in ("stage", "language", "clips", "hours"):
        t.add_column(col, justify="right" if col in ("clips", "hours") else "left")
    for s, per_lang in summary["by_stage_language"].items():
        for language, v in per_lang.items():
            t.add_row(s, language, str(v["clips"]), f"{v['hours']:.3f}")
    console.print(t)
    counts = summary["agreement_histogram"]["counts"].get("*", [])
    if counts:
        h = Table(title="agreement histogram (all languages)")
        h.add_column("agreement")
        h.add_column("clips", justify="right")
        h.add_column("")
        top = max(counts) or 1
        for i, (a, b, n) in enumerate(zip(AGREEMENT_BINS[:-1], AGREEMENT_BINS[1:], counts, strict=True)):
            close = "]" if i == len(counts) - 1 else ")"  # numpy's last bin includes 1.0
            h.add_row(f"[{a:.1f}, {b:.1f}{close}", str(n), "█" * round(30 * n / top))
        console.print(h)
    for st, per_gate in summary["gates"].items():
        if not per_gate:
            continue
        g = Table(title=f"{st}: clips each gate removes (of {len(everything)})")
        for col in ("threshold", "failed", "only this gate"):
            g.add_column(col, justify="left" if col == "threshold" else "right")
        for name, c in per_gate.items():
            g.add_row(name, str(c["failed"]), str(c["only"]))
        console.print(g)
    sig = Table(title="quality signals (clips shown above)")
    for col in ("signal", "measured", "25% / 50% / 75%"):
        sig.add_column(col, justify="left" if col == "signal" else "right")
    for name, v in summary["signals"].items():
        if "quartiles" in v:
            sig.add_row(name, str(v["measured"]), " / ".join(f"{q:.2f}" for q in v["quartiles"]))
        else:
            sig.add_row(name, "", ", ".join(f"{k}: {n}" for k, n in v.items()))
    console.print(sig)
    if summary["errors_by_reason"]:
        e = Table(title="errors by reason")
        e.add_column("step:error_type")
        e.add_column("count", justify="right")
        for k, n in summary["errors_by_reason"].items():
            e.add_row(k, str(n))
        console.print(e)


@manifest.command()
@common
@click.option(
    "--disagree", is_flag=True, help="Only clips whose systems disagree, worst first, side by side."
)
@click.option(
    "--below", default=0.8, show_default=True, help="Agreement under which a clip counts as disagreeing."
)
@click.option("--limit", default=20, show_default=True)
def show(out_uri, stage, lang, thresholds, disagree, below, limit) -> None:
    """Clips with all their transcripts (side by side with --disagree)."""
    from rich.console import Console
    from rich.table import Table

    from accord.pipeline.manifest.stats import disagreeing

    table = _read(out_uri, stage, lang, thresholds)
    rows = disagreeing(table, below=below, limit=limit) if disagree else table.slice(0, limit).to_pylist()
    systems = sorted(
        {t["system"] for r in rows for t in r["transcripts"]}
        | {f["system"] for r in rows for f in r.get("asr_failures") or []}
    )
    t = Table(
        title=f"{len(rows)} clips" + (f" with agreement < {below}" if disagree else ""), show_lines=True
    )
    t.add_column("clip", no_wrap=True, min_width=max([len(r["clip_id"] or "") for r in rows] or [4]))
    for col in ("s", "lang", "agreement", "quality", *systems):
        t.add_column(col)
    for r in rows:
        # a transcript's failed sanity checks follow its text, e.g. "[repeat_ratio]", then the
        # language its text is in; a system that failed on the clip says so in its column
        by = {
            tr["system"]: tr["text"]
            + "".join(f" [{f}]" for f in tr.get("flags") or [])
            + f"\n(text language {tr.get('text_language') or '?'} {_num(tr.get('text_language_prob'))})"
            for tr in r["transcripts"]
        }
        for f in r.get("asr_failures") or []:
            by[f["system"]] = f"FAILED: {f['error_type']}: {f['reason'][:80]}"
        t.add_row(
            r["clip_id"],
            f"{r['start_s']:.2f}-{r['end_s']:.2f}",
            f"{r['language'] or '?'} {_num(r.get('language_prob'))}\ntext: {r.get('language_check') or '-'}",
            f"{_num(r['agreement'])} n={r.get('n_asr') if r.get('n_asr') is not None else '?'}",
            f"ovrl {_num(r.get('dnsmos_ovrl'))}\nspk {_num(r.get('speaker_consistency'))}"
            + ("\nHALLUCINATED" if r.get("hallucinated") else ""),
            *[by.get(s, "") for s in systems],
        )
    Console(width=200).print(t)


@manifest.command(name="filter")
@common
@click.option(
    "--output", "-o", required=True, help="Destination .parquet file or dataset directory (any URI)."
)
def filter_(out_uri, stage, lang, thresholds, output) -> None:
    """Write the clips that pass --stage/--lang (eligibility re-applied) as Parquet."""
    from accord.core.manifest import write_filtered

    table = _read(out_uri, stage, lang, thresholds)
    path = write_filtered(table, output)
    click.echo(f"{len(table)} clips -> {path}")


@manifest.command()
@common
@click.option("--output", "-o", required=True, help="Directory for manifest.png and manifest.html.")
def plot(out_uri, stage, lang, thresholds, output) -> None:
    """Hours per stage and language and agreement histograms as PNG + HTML."""
    from accord.pipeline.manifest.plot import plot_manifest

    table = _read(out_uri, stage, lang, thresholds)
    png, page = plot_manifest(table, output, title=f"accord manifest: {out_uri}")
    click.echo(f"{png}\n{page}")


@manifest.command()
@click.argument("out_uri")
@click.option("--port", default=8765, show_default=True, help="Port to listen on (0: any free port).")
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to bind; the default serves this machine only.",
)
@click.option(
    "--thresholds", default=None, help="Thresholds YAML the page starts from (as `stats --thresholds`)."
)
@click.option("--memory-limit", default="1GB", show_default=True, help="DuckDB's memory limit.")
def explore(out_uri, port, host, thresholds, memory_limit) -> None:
    """A local web app over an ingest output: filter, sort and listen to clips, try thresholds
    and export them (read-only; never writes into OUT_URI)."""
    from accord.explore.serve import serve

    def ready(url: str) -> None:
        click.echo(f"explore: {url}  (Ctrl-C stops)", nl=True)

    serve(out_uri, host=host, port=port, thresholds=thresholds, memory_limit=memory_limit, on_ready=ready)
