"""``accord tokenize``: manifest → WebDataset shards; ``fit-lda``; ``decode``.

``accord tokenize MANIFEST_URI --out SHARDS_URI`` runs the job (the ``run`` subcommand is
implied when the first argument is not a subcommand name).
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

import click

from accord.stages import STAGES

if TYPE_CHECKING:
    from accord.tokenize.job import TokenizeConfig

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
    accord tokenize MANIFEST_URI --out SHARDS_URI [--min-stage pretrain]  (= tokenize run ...)
    accord tokenize fit-lda SHARDS_URI [--labels labels.csv]
    accord tokenize decode SHARDS_URI --id CLIP_ID --out clip.wav
    """


@tokenize.command("run", help="Tokenize MANIFEST_URI (an ingest output dir or Parquet) into shards.")
@click.argument("manifest_uri")
@click.option("--out", "shards_uri", required=True, help="Shards output URI (local path or fsspec URI).")
@click.option(
    "--min-stage",
    type=click.Choice(STAGES),
    default="pretrain",
    show_default=True,
    help="Keep clips eligible for this stage.",
)
@click.option("--address", default=None, help="Ray cluster address (default: start a local Ray).")
@click.option("--local", "local", is_flag=True, help="Run in-process without Ray (small jobs, debugging).")
@click.option(
    "--codec",
    "codec_ref",
    default="dac:44khz",
    show_default=True,
    help="DAC weights: dac:44khz, a weights.pth path, or dac:random (seeded random weights, tests only).",
)
@click.option(
    "--speaker",
    "speaker_ref",
    default="ecapa:voxceleb",
    show_default=True,
    help="ECAPA checkpoint: ecapa:voxceleb, ecapa:auralis, ecapa:<dir>, or ecapa:random (tests only).",
)
@click.option(
    "--allow-random-weights",
    is_flag=True,
    help="Tests and demos only: a model whose trained weights are absent runs its architecture with "
    "seeded random weights (recorded as random_weights in tokenize.json and the index) instead of "
    "failing.",
)
@click.option("--eligibility", default=None, help="Eligibility thresholds YAML (default: built-in).")
@click.option("--no-reapply", is_flag=True, help="Use the stored eligible_* columns as they are.")
@click.option("--max-shard-bytes", type=int, default=1_000_000_000, show_default=True)
@click.option("--max-shard-samples", type=int, default=100_000, show_default=True)
@click.option("--batch-size", type=int, default=8, show_default=True, help="Clips per model batch.")
@click.option("--dac-actors", type=int, default=1, show_default=True)
@click.option("--dac-gpus", type=float, default=0.0, show_default=True, help="GPUs per DAC actor.")
@click.option("--speaker-actors", type=int, default=1, show_default=True)
@click.option("--speaker-gpus", type=float, default=0.0, show_default=True, help="GPUs per ECAPA actor.")
@click.option("--verify-sha256", is_flag=True, help="Check each source's sha256 against the manifest.")
def run(**params: Any) -> None:
    from accord.tokenize.job import run_tokenize

    from accord.weights import ModelNotFound

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        res = run_tokenize(
            params["manifest_uri"],
            params["shards_uri"],
            params["min_stage"],
            config_from_params(params),
            address=params["address"],
            thresholds=params["eligibility"],
            reapply=not params["no_reapply"],
        )
    except ModelNotFound as e:  # missing weights: the message is the how-to, not a traceback
        raise click.ClickException(str(e)) from None
    click.echo(
        f"{res.n_clips} clips in {res.n_shards} shards: wrote {res.n_written} ({res.n_samples} samples, "
        f"{res.seconds / 3600:.3f} h, {res.n_errors} errors), skipped {res.n_skipped} done; "
        f"{res.wall_s:.1f} s -> {params['shards_uri']}"
    )


def config_from_params(params: dict[str, Any]) -> TokenizeConfig:
    """The job config that ``accord tokenize run``'s parsed options describe."""
    from accord.tokenize.codec import CodecConfig
    from accord.tokenize.job import TokenizeConfig
    from accord.tokenize.shards import ShardConfig
    from accord.tokenize.speaker import SpeakerConfig

    allow_random = params["allow_random_weights"]
    return TokenizeConfig(
        codec=CodecConfig(
            ref=params["codec_ref"], allow_random=allow_random, device="cuda" if params["dac_gpus"] else "cpu"
        ),
        speaker=SpeakerConfig(
            ref=params["speaker_ref"],
            allow_random=allow_random,
            device="cuda" if params["speaker_gpus"] else "cpu",
        ),
        shards=ShardConfig(max_bytes=params["max_shard_bytes"], max_samples=params["max_shard_samples"]),
        batch_size=params["batch_size"],
        executor="local" if params["local"] else "ray",
        dac_actors=params["dac_actors"],
        dac_num_gpus=params["dac_gpus"],
        speaker_actors=params["speaker_actors"],
        speaker_num_gpus=params["speaker_gpus"],
        verify_sha256=params["verify_sha256"],
    )


def check_run_args(args: list[str]) -> list[str]:
    """Parse ``accord tokenize run`` ARGS and fail now (a usage error, or the how-to of a model
    that would be refused) rather than after the work a chained tokenize waits for; returns the
    refs that will load random weights."""
    from accord.tokenize.job import check_weights

    from accord.weights import ModelNotFound

    ctx = run.make_context("accord tokenize run", list(args))
    try:
        return check_weights(config_from_params(ctx.params))
    except ModelNotFound as e:
        raise click.ClickException(str(e)) from None


@tokenize.command("fit-lda", help="Fit the speaker LDA on SHARDS_URI and write SHARDS_URI/lda.npz.")
@click.argument("shards_uri")
@click.option("--labels", default=None, help="CSV with clip_id,speaker (default: source file as speaker).")
@click.option(
    "--dim", type=int, default=128, show_default=True, help="LDA dimension (capped at n_speakers-1)."
)
@click.option("--shrinkage", type=float, default=None, help="Eigen solver with this shrinkage (0..1].")
def fit_lda(shards_uri: str, labels: str | None, dim: int, shrinkage: float | None) -> None:
    from accord.tokenize.lda import LdaConfig, fit_lda_on_shards, read_labels_csv

    proj = fit_lda_on_shards(
        shards_uri, read_labels_csv(labels) if labels else None, LdaConfig(lda_dim=dim, shrinkage=shrinkage)
    )
    evr = float(proj.explained_variance_ratio.sum())
    click.echo(
        json.dumps(
            {
                "lda": f"{shards_uri.rstrip('/')}/lda.npz",
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
