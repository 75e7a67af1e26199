"""``accord tokenize``: manifest → WebDataset shards; ``fit-lda``; ``decode``.

``accord tokenize MANIFEST_URI --out SHARDS_URI`` runs the job (the ``run`` subcommand is
implied when the first argument is not a subcommand name).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import click

from accord.cli.options import build_config, config_options, given
from accord.core.config import field_default
from accord.core.stages import STAGES
from accord.core.storage import redact_uri
from accord.tokenize.config import TokenizeConfig
from accord.tokenize.lda import LdaConfig

SUBCOMMANDS = ("run", "fit-lda", "decode")


class _DefaultRunGroup(click.Group):
    """A group whose first positional argument, if not a subcommand, means ``run ARG``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


@click.group(cls=_DefaultRunGroup)
def tokenize() -> None:
    """Manifest -> DAC codes, ECAPA embeddings, byte text -> WebDataset shards.

    \b
    accord tokenize MANIFEST_URI --out SHARDS_URI [--config run.yaml] [--set KEY=VALUE]
                                                  [--min-stage pretrain]  (= tokenize run ...)
    accord tokenize fit-lda SHARDS_URI [--labels labels.csv]
    accord tokenize decode SHARDS_URI --id CLIP_ID --out clip.wav
    """


def _default(dotted: str) -> str:
    return str(field_default(TokenizeConfig, dotted))


def run_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """The named flags of ``accord tokenize run``: shorthands for :class:`TokenizeConfig` keys."""
    opts = [
        click.option(
            "--min-stage",
            type=click.Choice(STAGES),
            default=None,
            show_default=_default("min_stage"),
            help="Keep clips eligible for this stage (min_stage).",
        ),
        click.option("--local", "local", is_flag=True, help="Run in-process without Ray (executor: local)."),
        click.option(
            "--codec",
            "codec_ref",
            default=None,
            show_default=_default("codec.ref"),
            help="DAC weights: dac:44khz, a weights.pth path, or dac:random (seeded random weights, "
            "tests only) (codec.ref).",
        ),
        click.option(
            "--speaker",
            "speaker_ref",
            default=None,
            show_default=_default("speaker.ref"),
            help="ECAPA checkpoint: ecapa:voxceleb, ecapa:auralis, ecapa:<dir>, or ecapa:random "
            "(tests only) (speaker.ref).",
        ),
        click.option(
            "--for-model",
            "for_model",
            default=None,
            help="The model flavour the shards are for (debug, small, zonos2-8b): without --speaker, "
            "the speaker encoder its speaker path takes (zonos2-8b: zonos2-spk:release, 2048-d).",
        ),
        click.option(
            "--allow-random-weights",
            is_flag=True,
            help="Tests and demos only: a model whose trained weights are absent runs its architecture "
            "with seeded random weights (recorded as random_weights in tokenize.json and the index) "
            "instead of failing (codec.allow_random, speaker.allow_random).",
        ),
        click.option(
            "--eligibility",
            default=None,
            help="Eligibility thresholds YAML (eligibility; default: built-in).",
        ),
        click.option(
            "--no-reapply",
            is_flag=True,
            help="Use the stored eligible_* columns as they are (reapply: false).",
        ),
        click.option("--max-shard-bytes", type=int, default=None, show_default=_default("shards.max_bytes")),
        click.option(
            "--max-shard-samples", type=int, default=None, show_default=_default("shards.max_samples")
        ),
        click.option(
            "--batch-size",
            type=int,
            default=None,
            show_default=_default("batch_size"),
            help="Clips per model batch.",
        ),
        click.option("--dac-actors", type=int, default=None, show_default=_default("dac_actors")),
        click.option(
            "--dac-gpus",
            type=float,
            default=None,
            show_default=_default("dac_num_gpus"),
            help="GPUs per DAC actor (dac_num_gpus; > 0 also sets codec.device: cuda).",
        ),
        click.option("--speaker-actors", type=int, default=None, show_default=_default("speaker_actors")),
        click.option(
            "--speaker-gpus",
            type=float,
            default=None,
            show_default=_default("speaker_num_gpus"),
            help="GPUs per ECAPA actor (speaker_num_gpus; > 0 also sets speaker.device: cuda).",
        ),
        click.option(
            "--verify-sha256", is_flag=True, help="Check each source's sha256 against the manifest."
        ),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def _device(gpus: float | None) -> str | None:
    return None if gpus is None else ("cuda" if gpus else "cpu")


def run_flags(params: dict[str, Any]) -> dict[str, Any]:
    """The :class:`TokenizeConfig` overrides that ``accord tokenize run``'s given flags describe."""
    random = True if params["allow_random_weights"] else None
    speaker_ref = params["speaker_ref"]
    if speaker_ref is None and params.get("for_model"):
        from accord.model.config import FLAVOURS, get_flavour
        from accord.tokenize.speaker import speaker_ref_for

        if params["for_model"] not in FLAVOURS:
            raise click.BadParameter(
                f"unknown flavour; known: {', '.join(FLAVOURS)}", param_hint="--for-model"
            )
        speaker_ref = speaker_ref_for(get_flavour(params["for_model"]).speaker_embedding_dim)
    return given(
        {
            "min_stage": params["min_stage"],
            "executor": "local" if params["local"] else None,
            "codec.ref": params["codec_ref"],
            "codec.allow_random": random,
            "codec.device": _device(params["dac_gpus"]),
            "speaker.ref": speaker_ref,
            "speaker.allow_random": random,
            "speaker.device": _device(params["speaker_gpus"]),
            "eligibility": params["eligibility"],
            "reapply": False if params["no_reapply"] else None,
            "shards.max_bytes": params["max_shard_bytes"],
            "shards.max_samples": params["max_shard_samples"],
            "batch_size": params["batch_size"],
            "dac_actors": params["dac_actors"],
            "dac_num_gpus": params["dac_gpus"],
            "speaker_actors": params["speaker_actors"],
            "speaker_num_gpus": params["speaker_gpus"],
            "verify_sha256": True if params["verify_sha256"] else None,
        }
    )


def parse_run_flags(args: list[str]) -> dict[str, Any]:
    """:func:`run_flags` of a string of ``accord tokenize run`` flags (``accord ingest
    --tokenize-opts``, kept for compatibility: prefer ``--set tokenize.KEY=VALUE``)."""
    ctx = run_flags_command.make_context("--tokenize-opts", list(args))
    return run_flags(ctx.params)


@click.command("tokenize-opts", add_help_option=False)
@run_options
def run_flags_command(**params: Any) -> None:
    """The parser of :func:`parse_run_flags` (never invoked)."""


@tokenize.command("run", help="Tokenize MANIFEST_URI (an ingest output dir or Parquet) into shards.")
@click.argument("manifest_uri")
@click.option("--out", "shards_uri", required=True, help="Shards output URI (local path or fsspec URI).")
@config_options("tokenize")
@click.option("--address", default=None, help="Ray cluster address (default: start a local Ray).")
@run_options
def run(manifest_uri: str, shards_uri: str, config: str | None, sets: tuple[str, ...], address: str | None,
        **params: Any) -> None:  # fmt: skip
    from accord.app.flows import tokenize_manifest
    from accord.core.weights import ModelNotFound

    cfg = build_config(TokenizeConfig, config, sets, "tokenize", run_flags(params))
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        res = tokenize_manifest(manifest_uri, shards_uri, cfg, address=address)
    except ModelNotFound as e:  # missing weights: the message is the how-to, not a traceback
        raise click.ClickException(str(e)) from None
    click.echo(summary(res))


def summary(res: Any) -> str:
    """One line about a :class:`accord.tokenize.job.TokenizeResult`."""
    return (
        f"{res.n_clips} clips in {res.n_shards} shards: wrote {res.n_written} ({res.n_samples} samples, "
        f"{res.seconds / 3600:.3f} h, {res.n_errors} errors), skipped {res.n_skipped} done; "
        f"{res.wall_s:.1f} s -> {redact_uri(res.shards_uri)}"
    )


@tokenize.command("fit-lda", help="Fit the speaker LDA on SHARDS_URI and write SHARDS_URI/lda.npz.")
@click.argument("shards_uri")
@click.option("--labels", default=None, help="CSV with clip_id,speaker (default: source file as speaker).")
@click.option(
    "--dim",
    type=int,
    default=None,
    show_default=str(field_default(LdaConfig, "lda_dim")),
    help="LDA dimension (capped at n_speakers-1).",
)
@click.option("--shrinkage", type=float, default=None, help="Eigen solver with this shrinkage (0..1].")
def fit_lda(shards_uri: str, labels: str | None, dim: int | None, shrinkage: float | None) -> None:
    from accord.core.shards import LDA_NPZ, shards_file
    from accord.tokenize.lda import fit_lda_on_shards, read_labels_csv

    cfg = LdaConfig(shrinkage=shrinkage) if dim is None else LdaConfig(lda_dim=dim, shrinkage=shrinkage)
    proj = fit_lda_on_shards(shards_uri, read_labels_csv(labels) if labels else None, cfg)
    evr = float(proj.explained_variance_ratio.sum())
    click.echo(
        json.dumps(
            {
                "lda": shards_file(shards_uri, LDA_NPZ),
                "dim": proj.dim,
                "input_dim": int(proj.weight.shape[1]),
                "explained_variance": round(evr, 4),
                **proj.meta,
            }
        )
    )


@tokenize.command("decode", help="Decode one clip's codes from SHARDS_URI back to a WAV file.")
@click.argument("shards_uri")
@click.option("--id", "clip_id", required=True, help="Clip id (the sample key).")
@click.option("--out", "out_wav", required=True, help="Output .wav path.")
def decode(shards_uri: str, clip_id: str, out_wav: str) -> None:
    from accord.tokenize.decode import decode_clip

    path = decode_clip(shards_uri, clip_id, out_wav)
    click.echo(str(path))
