"""``accord synth``: text (+ reference voice) -> wav with a ZONOS2-layout checkpoint."""

from __future__ import annotations

import json

import click

from accord.core.config import field_default
from accord.core.vocab import BACKGROUND_LABELS, CODEC_FRAME_RATE
from accord.model.sampling import SamplingConfig


@click.command("synth")
@click.argument("checkpoint", type=click.Path(exists=True, file_okay=False))
@click.argument("text")
@click.option("--speaker", type=click.Path(exists=True, dir_okay=False), help="reference recording to clone")
@click.option("--rate", type=float, help="speaking rate in UTF-8 bytes per second (control token)")
@click.option(
    "--background",
    type=click.Choice(list(BACKGROUND_LABELS)),
    help="speaker-background marker token (sent with --speaker only)",
)
@click.option(
    "--accurate/--expressive",
    default=True,
    show_default=True,
    help="accurate-mode marker (on by default, as the release's requests; sent with --speaker only)",
)
@click.option(
    "--temperature", type=float, default=field_default(SamplingConfig, "temperature"), show_default=True
)
@click.option("--top-k", type=int, default=field_default(SamplingConfig, "top_k"), show_default=True)
@click.option(
    "--top-p",
    type=float,
    default=field_default(SamplingConfig, "top_p"),
    show_default=True,
    help="off outside (0, 1)",
)
@click.option("--min-p", type=float, default=field_default(SamplingConfig, "min_p"), show_default=True)
@click.option(
    "--repetition-penalty",
    type=float,
    default=field_default(SamplingConfig, "repetition_penalty"),
    show_default=True,
    help="over the last --repetition-window rows of the first 8 codebooks, as the release; 1 = off",
)
@click.option(
    "--repetition-window",
    type=int,
    default=field_default(SamplingConfig, "repetition_window"),
    show_default=True,
)
@click.option(
    "--rules",
    type=click.Choice(["release", "delay"]),
    default=field_default(SamplingConfig, "rules"),
    show_default=True,
    help="release: every id in every cell, as ZONOS2 samples; delay: accord's delay-pattern rules "
    "(docs/model.md)",
)
@click.option(
    "--seed", type=int, default=0, show_default=True, help="0 by default: the same text, the same audio"
)
@click.option(
    "--normalize/--no-normalize",
    default=True,
    show_default=True,
    help="written -> spoken text first, as the release serves and tokenize trains (accord.tokenize.textnorm)",
)
@click.option("--language", default="en", show_default=True, help="the text's language, for --normalize")
@click.option("--max-seconds", default=20.0, show_default=True)
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="output .wav")
def synth(
    checkpoint, text, speaker, rate, background, accurate, temperature, top_k, top_p, min_p,
    repetition_penalty, repetition_window, rules, seed, normalize, language, max_seconds, out,
):  # fmt: skip
    """Synthesize TEXT with the model in CHECKPOINT (params.json + model.pth) into --out."""
    import soundfile as sf

    from accord.app.synth import SynthRequest, synthesize

    sampling = SamplingConfig(
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        min_p=min_p,
        repetition_penalty=repetition_penalty,
        repetition_window=repetition_window,
        rules=rules,
        seed=seed,
        max_frames=max(1, int(max_seconds * CODEC_FRAME_RATE)),
    )
    req = SynthRequest(
        text, speaker, rate, background, accurate=accurate, sampling=sampling,
        text_normalization=normalize, language=language,
    )  # fmt: skip
    res = synthesize(checkpoint, req)
    sf.write(out, res.wav, res.sample_rate, subtype="PCM_16")
    click.echo(json.dumps({**res.info, "out": out, "seconds": round(len(res.wav) / res.sample_rate, 3)}))
