"""``accord tokenize``: manifest → WebDataset shards; ``fit-lda``; ``decode``.

``accord tokenize MANIFEST_URI --out SHARDS_URI`` runs the job (the ``run`` subcommand is
implied when the first argument is not a subcommand name).
"""

from __future__ import annotations

import json
import logging

import click

from accord.stages import STAGES

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
@click.option("--codec", "codec_ref", default="dac:44khz", show_default=True, help="DAC weights ref or path.")
@click.option(
    "--no-random-codec",
    is_flag=True,
    help="Fail instead of using random DAC weights when none are installed.",
)
@click.option(
    "--speaker", "speaker_ref", default="ecapa:voxceleb", show_default=True, help="ECAPA checkpoint."
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
def run(
    manifest_uri: str,
    shards_uri: str,
    min_stage: str,
    address: str | None,
    local: bool,
    codec_ref: str,
    no_random_codec: bool,
    speaker_ref: str,
    eligibility: str | None,
    no_reapply: bool,
    max_shard_bytes: int,
    max_shard_samples: int,
    batch_size: int,
    dac_actors: int,
    dac_gpus: float,
    speaker_actors: int,
    speaker_gpus: float,
    verify_sha256: bool,
) -> None:
    from accord.tokenize.codec import CodecConfig
    from accord.tokenize.job import TokenizeConfig, run_tokenize
    from accord.tokenize.shards import ShardConfig
    from accord.tokenize.speaker import SpeakerConfig

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = TokenizeConfig(
        codec=CodecConfig(
            ref=codec_ref, allow_random=not no_random_codec, device="cuda" if dac_gpus else "cpu"
        ),
        speaker=SpeakerConfig(ref=speaker_ref, device="cuda" if speaker_gpus else "cpu"),
        shards=ShardConfig(max_bytes=max_shard_bytes, max_samples=max_shard_samples),
        batch_size=batch_size,
        executor="local" if local else "ray",
        dac_actors=dac_actors,
        dac_num_gpus=dac_gpus,
        speaker_actors=speaker_actors,
        speaker_num_gpus=speaker_gpus,
        verify_sha256=verify_sha256,
    )
    res = run_tokenize(
        manifest_uri,
        shards_uri,
        min_stage,
        cfg,
        address=address,
        thresholds=eligibility,
        reapply=not no_reapply,
    )
    click.echo(
        f"{res.n_clips} clips in {res.n_shards} shards: wrote {res.n_written} ({res.n_samples} samples, "
        f"{res.seconds / 3600:.3f} h, {res.n_errors} errors), skipped {res.n_skipped} done; "
        f"{res.wall_s:.1f} s -> {shards_uri}"
    )


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
