"""``accord ingest``: a thin wrapper over :func:`accord.pipeline.job.runner.run_ingest`."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click


def _abs(uri: str | None) -> str | None:
    """Local paths made absolute (a Ray job runs in another working directory)."""
    if uri is None or "://" in uri:
        return uri
    return str(Path(uri).expanduser().resolve())


def _load_config(
    config: str | None,
    config_json: str | None,
    ext: str | None,
    asr: str | None,
    num_cpus: int | None,
    progress: bool,
):
    from accord.pipeline.job.config import IngestConfig

    if config_json:
        cfg = IngestConfig.from_dict(json.loads(config_json))
    elif config:
        cfg = IngestConfig.from_yaml(config)
    else:
        cfg = IngestConfig()
    if ext:
        cfg.extensions = tuple(e.strip().lstrip(".").lower() for e in ext.split(",") if e.strip())
    if asr:
        cfg.asr = tuple(a.strip() for a in asr.split(",") if a.strip())
    if num_cpus:
        cfg.num_cpus = num_cpus
    if not progress:
        cfg.progress = False
    cfg.validate()
    return cfg


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("raw_uri")
@click.option("--out", "out_uri", required=True, help="Output root (local dir, file://, s3://, gs://).")
@click.option(
    "--address",
    default=None,
    help="Submit to a Ray cluster via Ray Jobs: http://HOST:8265 or ray://HOST:PORT.",
)
@click.option("--ext", default=None, help="Comma-separated extensions to include (default: common audio).")
@click.option(
    "--list",
    "list_file",
    default=None,
    help="File with one input per line (relative to RAW_URI, or absolute).",
)
@click.option("--asr", default=None, help="Comma-separated ASR systems, e.g. faster-whisper,moonshine.")
@click.option("--config", default=None, help="Run config YAML (IngestConfig fields; flags override it).")
@click.option("--config-json", default=None, hidden=True)
@click.option("--num-cpus", type=int, default=None, help="CPUs of the embedded local Ray (default: all).")
@click.option(
    "--dry-run", is_flag=True, help="List what would be processed and estimate hours, clips and compute."
)
@click.option(
    "--tokenize", "shards_uri", default=None, help="After ingest, tokenize the manifest into SHARDS_URI."
)
@click.option(
    "--tokenize-opts",
    default="",
    help='With --tokenize: options for `accord tokenize run`, e.g. "--min-stage anneal1".',
)
@click.option(
    "--allow-random-weights",
    is_flag=True,
    help="With --tokenize: tests and demos only, run models whose trained weights are absent with "
    "seeded random weights (recorded) instead of refusing (see `accord tokenize run --help`).",
)
@click.option("--progress/--no-progress", default=True, help="Ray Data progress bars.")
@click.option(
    "--json", "as_json", is_flag=True, help="Print the run record (or dry-run plan) as JSON on stdout."
)
@click.option("--python", "cluster_python", default="python", show_default=True,
              help="With --address: the cluster's Python interpreter that has accord installed.")  # fmt: skip
def ingest(
    raw_uri,
    out_uri,
    address,
    ext,
    list_file,
    asr,
    config,
    config_json,
    num_cpus,
    dry_run,
    shards_uri,
    tokenize_opts,
    allow_random_weights,
    progress,
    as_json,
    cluster_python,
) -> None:
    """Raw audio bucket -> VAD clips -> multi-ASR transcripts -> agreement manifest (Ray job).

    Re-running the same command skips finished sources; a killed run continues where it stopped.
    """
    cfg = _load_config(config, config_json, ext, asr, num_cpus, progress)
    raw_uri, out_uri, list_file = _abs(raw_uri), _abs(out_uri), _abs(list_file)
    if allow_random_weights and not shards_uri:
        raise click.UsageError(
            "--allow-random-weights applies to the tokenize stage: add --tokenize SHARDS_URI"
        )

    if address and not dry_run:
        from accord.pipeline.cluster import SubmitConfig, submit

        args = ["ingest", raw_uri, "--out", out_uri, "--config-json", json.dumps(cfg.to_dict())]
        if list_file:
            args += ["--list", list_file]
        if shards_uri:
            args += ["--tokenize", _abs(shards_uri), "--tokenize-opts", tokenize_opts]
            if allow_random_weights:
                args.append("--allow-random-weights")
        if as_json:
            args.append("--json")
        args.append("--progress" if progress else "--no-progress")
        sys.exit(submit(args, SubmitConfig(address=address, python=cluster_python)))

    if dry_run:
        from accord.pipeline.job.dry_run import dry_run as do_dry_run
        from accord.pipeline.job.summary import print_dry_run

        plan = do_dry_run(raw_uri, out_uri, cfg, list_file)
        if as_json:
            click.echo(json.dumps(plan.to_dict(), indent=2, default=str))
        else:
            print_dry_run(plan)
        return

    tok_args: list[str] = []
    if shards_uri:
        import shlex

        from accord.cli.cmd_tokenize import check_run_args

        tok_args = ["run", out_uri, "--out", _abs(shards_uri), *shlex.split(tokenize_opts)]
        if allow_random_weights:
            tok_args.append("--allow-random-weights")
        check_run_args(tok_args[1:])  # a tokenize that would refuse its models fails before ingest

    from accord.pipeline.job.runner import run_ingest
    from accord.pipeline.job.summary import print_run

    def on_commit(source, n_clips: int, n_errors: int) -> None:
        from accord.pipeline.io.fs import redact_uri

        click.echo(f"committed {redact_uri(source.uri)}: {n_clips} clips, {n_errors} errors", err=True)

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    result = run_ingest(raw_uri, out_uri, cfg, list_file=list_file, argv=sys.argv, on_commit=on_commit)
    print_run(result.record)
    click.echo(f"run record: {result.record_uri}", err=True)
    if as_json:
        click.echo(json.dumps(result.record, indent=2, default=str))
    if shards_uri and result.ok:
        import shlex

        from accord.cli.cmd_tokenize import tokenize as tokenize_group

        click.echo(f"tokenize: accord tokenize {shlex.join(tok_args)}", err=True)
        tokenize_group.main(args=tok_args, prog_name="accord tokenize", standalone_mode=False)
    if not result.ok:
        click.echo(f"run {result.record['status']}: re-run the same command to retry", err=True)
        sys.exit(2)
