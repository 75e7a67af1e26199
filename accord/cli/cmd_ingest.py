"""``accord ingest``: parse the run's configs, call one library function, print.

Without ``--address``: :func:`accord.app.flows.ingest_then_tokenize` (the ingest, then with
``--tokenize SHARDS`` the tokenize of its manifest); with ``--dry-run``:
:func:`accord.pipeline.job.dry_run.dry_run`; with ``--address``: the same command submitted as
a Ray job (:func:`accord.pipeline.cluster.submit`) with its configs resolved here.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path
from typing import Any

import click

from accord.cli.options import build_config, config_options, given
from accord.core.config import deep_merge
from accord.core.errors import ConfigError
from accord.pipeline.job.config import IngestConfig


def _abs(uri: str | None) -> str | None:
    """Local paths made absolute (a Ray job runs in another working directory)."""
    if uri is None or "://" in uri:
        return uri
    return str(Path(uri).expanduser().resolve())


def _tokenize_config(
    config: str | None,
    sets: tuple[str, ...],
    resolved: dict[str, Any] | None,
    tokenize_opts: str,
    allow_random_weights: bool,
) -> Any:
    """The chained tokenize's :class:`TokenizeConfig`: ``tokenize:`` of the run file, the
    ``--tokenize-opts`` flags (compatibility), ``--allow-random-weights``, ``--set tokenize.*``."""
    from accord.cli.cmd_tokenize import parse_run_flags
    from accord.tokenize.config import TokenizeConfig

    try:
        flags = parse_run_flags(shlex.split(tokenize_opts))
    except click.ClickException as e:
        raise click.UsageError(f"--tokenize-opts: {e.format_message()}") from None
    if allow_random_weights:
        flags = deep_merge(flags, given({"codec.allow_random": True, "speaker.allow_random": True}))
    if resolved is not None:
        flags = deep_merge(resolved, flags)
    return build_config(TokenizeConfig, config, sets, "tokenize", flags, owner="ingest")


def check_paths(raw_uri: str, out_uri: str, list_file: str | None) -> None:
    """The input exists and the output root is a folder (or not there yet), before anything is
    written: a :class:`~accord.core.errors.UserError` otherwise."""
    from accord.core.storage import open_fs, redact_uri
    from accord.pipeline.sources.listing import check_input

    check_input(raw_uri, list_file)
    fs, root = open_fs(out_uri)
    if fs.isfile(root):
        raise ConfigError(
            f"--out {redact_uri(out_uri)} is a file: pass a folder (new or an earlier ingest's output)"
        )


def submit_args(raw_uri, out_uri, list_file, shards_uri, cfg, tok_cfg, as_json) -> list[str]:
    """This command for the Ray job: the same inputs, its configs resolved into --config-json."""
    from accord.core.config import to_dict

    resolved = {"ingest": to_dict(cfg), "tokenize": to_dict(tok_cfg) if tok_cfg else None}
    args = ["ingest", raw_uri, "--out", out_uri, "--config-json", json.dumps(resolved)]
    if list_file:
        args += ["--list", list_file]
    if shards_uri:
        args += ["--tokenize", shards_uri]
    if as_json:
        args.append("--json")
    args.append("--progress" if cfg.progress else "--no-progress")
    return args


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("raw_uri")
@click.option("--out", "out_uri", required=True, help="Output root (local dir, file://, s3://, gs://).")
@click.option(
    "--address",
    default=None,
    help="Submit to a Ray cluster via Ray Jobs: http://HOST:8265 or ray://HOST:PORT.",
)
@click.option("--ext", default=None, help="Comma-separated extensions to include (extensions).")
@click.option(
    "--list",
    "list_file",
    default=None,
    help="File with one input per line (relative to RAW_URI, or absolute).",
)
@click.option("--asr", default=None, help="Comma-separated ASR systems, e.g. faster-whisper,moonshine (asr).")
@config_options("ingest")
@click.option("--config-json", default=None, hidden=True)  # resolved configs of a submitted job
@click.option(
    "--num-cpus", type=int, default=None, help="CPUs of the embedded local Ray (num_cpus; default: all)."
)
@click.option(
    "--dry-run", is_flag=True, help="List what would be processed and estimate hours, clips and compute."
)
@click.option(
    "--tokenize",
    "shards_uri",
    default=None,
    help="After ingest, tokenize the manifest into SHARDS_URI (its config: the run file's tokenize: "
    "section and --set tokenize.KEY=VALUE).",
)
@click.option(
    "--tokenize-opts",
    default="",
    help='With --tokenize: `accord tokenize run` flags, e.g. "--min-stage anneal1" (kept for '
    "compatibility; prefer --set tokenize.min_stage=anneal1).",
)
@click.option(
    "--allow-random-weights",
    is_flag=True,
    help="With --tokenize: tests and demos only, run models whose trained weights are absent with "
    "seeded random weights (recorded) instead of refusing (see `accord tokenize run --help`).",
)
@click.option("--progress/--no-progress", default=None, help="Ray Data progress bars (progress).")
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
    sets,
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
    if not shards_uri:
        if allow_random_weights or tokenize_opts:
            raise click.UsageError(
                "--allow-random-weights and --tokenize-opts apply to the tokenize stage: "
                "add --tokenize SHARDS_URI"
            )
        if any(s.strip().startswith("tokenize.") for s in sets):
            raise click.UsageError(
                "--set tokenize.* applies to the tokenize stage: add --tokenize SHARDS_URI"
            )
    resolved = json.loads(config_json) if config_json else {}
    flags = given({"extensions": ext, "asr": asr, "num_cpus": num_cpus, "progress": progress})
    cfg = build_config(IngestConfig, config, sets, "ingest", deep_merge(resolved.get("ingest") or {}, flags))
    from accord.pipeline.job.plan import build_plan

    build_plan(cfg)  # every key, step option and threshold, on the driver before any work
    tok_cfg = None
    if shards_uri:
        tok_cfg = _tokenize_config(
            config, sets, resolved.get("tokenize"), tokenize_opts, allow_random_weights
        )
    raw_uri, out_uri, list_file, shards_uri = _abs(raw_uri), _abs(out_uri), _abs(list_file), _abs(shards_uri)
    if not address or dry_run:  # a submitted job's paths are the cluster's: checked there
        check_paths(raw_uri, out_uri, list_file)

    if address and not dry_run:
        from accord.pipeline.cluster import SubmitConfig, submit

        args = submit_args(raw_uri, out_uri, list_file, shards_uri, cfg, tok_cfg, as_json)
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

    from accord.app.flows import ingest_then_tokenize
    from accord.core.storage import redact_uri
    from accord.core.weights import ModelNotFound
    from accord.pipeline.job.summary import print_run

    def on_commit(source, n_clips: int, n_errors: int) -> None:
        click.echo(f"committed {redact_uri(source.uri)}: {n_clips} clips, {n_errors} errors", err=True)

    def on_ingest(result) -> None:
        print_run(result.record)
        click.echo(f"run record: {result.record_uri}", err=True)
        if as_json:
            click.echo(json.dumps(result.record, indent=2, default=str))
        if shards_uri and result.ok:
            click.echo(f"tokenize: {redact_uri(out_uri)} -> {redact_uri(shards_uri)}", err=True)

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        result = ingest_then_tokenize(
            raw_uri, out_uri, shards_uri, cfg, tok_cfg,
            list_file=list_file, argv=sys.argv, on_commit=on_commit, on_ingest=on_ingest,
        )  # fmt: skip
    except ModelNotFound as e:  # the tokenize would refuse its models: the how-to, before any ingest
        raise click.ClickException(str(e)) from None
    if result.tokenize is not None:
        from accord.cli.cmd_tokenize import summary

        click.echo(f"tokenize: {summary(result.tokenize)}", err=True)
    if not result.ok:
        click.echo(f"run {result.ingest.record['status']}: re-run the same command to retry", err=True)
        sys.exit(2)
