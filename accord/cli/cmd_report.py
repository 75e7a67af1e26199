"""``accord report``: a thin wrapper over :func:`accord.report.build_report`."""

from __future__ import annotations

from pathlib import Path

import click

_path = click.Path(exists=True, path_type=Path)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("run_dir", required=False, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The HTML file to write (self-contained: plots and audio embedded).")  # fmt: skip
@click.option("--ingest", type=_path, default=None, help="Ingest OUT dir (default: found in RUN_DIR).")
@click.option("--shards", type=_path, default=None, help="SHARDS dir (default: found in RUN_DIR).")
@click.option(
    "--train", "train_dir", type=_path, default=None, help="Train RUN dir (default: found in RUN_DIR)."
)
@click.option(
    "--synth", type=_path, multiple=True, help="Synthesized wav(s) to embed (default: RUN_DIR/*.wav)."
)
@click.option("--title", default="accord run report", show_default=True)
@click.option("--embed-audio-max-mb", type=float, default=20.0, show_default=True,
              help="Larger audio is copied beside the report and linked.")  # fmt: skip
def report(run_dir, out_path, ingest, shards, train_dir, synth, title, embed_audio_max_mb) -> None:
    """Build the HTML report of a run: hours in and kept, agreement, loss curves, mini-eval, audio.

    RUN_DIR is searched for ingest/, shards/, train/ and *.wav (see accord.report.inputs);
    each option overrides one part. Missing parts become notes in the report.
    """
    from accord.report import ReportConfig, build_report, discover

    if run_dir is None and not any((ingest, shards, train_dir, synth)):
        raise click.UsageError("give RUN_DIR or at least one of --ingest/--shards/--train/--synth")
    inputs = discover(run_dir, ingest=ingest, shards=shards, train=train_dir, synth=synth)
    path = build_report(inputs, out_path, ReportConfig(title=title, embed_audio_max_mb=embed_audio_max_mb))
    for name, where in inputs.describe().items():
        click.echo(f"  {name:12s} {where}", err=True)
    click.echo(f"report: {path}")
