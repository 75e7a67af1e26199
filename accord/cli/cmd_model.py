"""``accord model``: flavour parameter counts, random-init checkpoints, ZONOS2 import/export."""

from __future__ import annotations

from pathlib import Path

import click


@click.group("model")
def model() -> None:
    """Model flavours: parameter counts, checkpoint import/export."""


@model.command("info")
@click.argument("flavour_or_checkpoint")
def info(flavour_or_checkpoint: str) -> None:
    """Print total= and active= parameters of a flavour (debug, small, zonos2-8b) or checkpoint dir."""
    from accord.model.config import FLAVOURS, count_params, get_flavour

    if flavour_or_checkpoint in FLAVOURS:
        cfg = get_flavour(flavour_or_checkpoint)
    elif Path(flavour_or_checkpoint, "params.json").is_file():
        from accord.model.checkpoint import config_from_checkpoint, load_state, read_params

        path = flavour_or_checkpoint
        cfg = config_from_checkpoint(read_params(path), load_state(path))
    else:
        raise click.BadParameter(f"not a flavour ({', '.join(FLAVOURS)}) nor a checkpoint dir")
    counts = count_params(cfg)
    click.echo(str(counts))
    click.echo(
        f"layers={cfg.n_layers} dim={cfg.dim} heads={cfg.n_heads}/{cfg.n_kv_heads}x{cfg.head_dim} "
        f"ffn={cfg.ffn_dim} experts={cfg.moe.n_experts} moe_layers={cfg.moe_layers} "
        f"topk={ {i: cfg.topk_for_layer(i) for i in cfg.moe_layers} } router_dim={cfg.moe.router.dim}"
    )
    click.echo(
        f"text_vocab={cfg.text_vocab} speaker={cfg.speaker_embedding_dim}->{cfg.speaker_lda_dim}->{cfg.dim}"
    )


@model.command("init")
@click.argument("flavour")
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--seed", default=0, show_default=True)
@click.option("--lda", type=click.Path(exists=True, dir_okay=False), help="SHARDS/lda.npz to load")
@click.option(
    "--codec", default=None, help="Codec ref recorded for synth (default: tokenize's default codec)."
)
@click.option(
    "--speaker",
    default=None,
    help="Speaker encoder ref recorded for synth (default: tokenize's encoder for the flavour's width).",
)
@click.option("--dtype", type=click.Choice(["float32", "bfloat16"]), default="float32", show_default=True)
@click.option(
    "--device",
    default="cpu",
    show_default=True,
    help="where the weights are initialised ('cuda' keeps zonos2-8b's ~31 GB of float32 off the host)",
)
def init(
    flavour: str,
    out: str,
    seed: int,
    lda: str | None,
    codec: str | None,
    speaker: str | None,
    dtype: str,
    device: str,
) -> None:
    """Write a randomly initialised FLAVOUR as a ZONOS2 checkpoint dir (smoke tests, demos)."""
    import numpy as np
    import torch

    from accord.core.vocab import DEFAULT_VOCAB
    from accord.model.checkpoint import init_speaker_lda, save_zonos2
    from accord.model.config import get_flavour
    from accord.model.zonos import ZonosModel
    from accord.tokenize.codec import DEFAULT_REF
    from accord.tokenize.speaker import speaker_ref_for

    cfg = get_flavour(flavour)
    if lda:
        with np.load(lda) as z:
            cfg = cfg.replace(
                speaker_lda_dim=int(z["weight"].shape[0]), speaker_embedding_dim=int(z["weight"].shape[1])
            )
    torch.manual_seed(seed)
    with torch.device(device):
        m = ZonosModel(cfg)
    if lda:
        init_speaker_lda(m, lda)
    extra = {
        "flavour": flavour,
        "codec": codec or DEFAULT_REF,
        "speaker_ref": speaker or speaker_ref_for(cfg.speaker_embedding_dim),
        "vocab": DEFAULT_VOCAB.config.to_dict(),
        "stage": "init",
    }
    click.echo(save_zonos2(m, out, extra=extra, dtype=getattr(torch, dtype)))


@model.command("convert")
@click.argument("src", type=click.Path(exists=True, file_okay=False))
@click.argument("out", type=click.Path(file_okay=False))
@click.option(
    "--trust-pickle", is_flag=True, help="allow non-tensor objects in model.pth (trusted files only)"
)
@click.option("--dtype", type=click.Choice(["float32", "bfloat16"]), default="float32", show_default=True)
def convert(src: str, out: str, trust_pickle: bool, dtype: str) -> None:
    """Import a ZONOS2 checkpoint (e.g. released weights) and re-export it in accord's clean layout."""
    import torch

    from accord.model.checkpoint import load_zonos2, read_extra, save_zonos2

    m = load_zonos2(src, trust_pickle=trust_pickle)
    click.echo(save_zonos2(m, out, extra=read_extra(src) or None, dtype=getattr(torch, dtype)))
