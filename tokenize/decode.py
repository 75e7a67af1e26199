"""Codes in a shard back to audio: ``accord tokenize decode SHARDS --id CLIP --out clip.wav``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from accord.core.shards import read_sample, tokenize_refs
from accord.tokenize.codec import DEFAULT_REF, DacCodec


def codec_ref_of(shards_uri: str) -> str:
    """The codec reference the shards were written with (``tokenize.json``), else ``dac:44khz``.

    Shards encoded with random weights record ``dac:random``, so decoding them loads the same
    seeded weights, and no opt-in is needed to listen to them.
    """
    return tokenize_refs(shards_uri).get("codec") or DEFAULT_REF


def decode_clip(shards_uri: str, clip_id: str, out_wav: str | Path, codec: DacCodec | None = None) -> Path:
    """Decode one sample's codes with the shards' codec and write a 44.1 kHz 16-bit WAV."""
    import soundfile as sf

    sample = read_sample(shards_uri, clip_id)
    codec = codec or DacCodec.load(codec_ref_of(shards_uri))
    codes_KT = torch.from_numpy(sample.codes.astype(np.int64))
    wav_T = codec.decode(codes_KT[None])[0].numpy()
    out = Path(out_wav)
    out.parent.mkdir(parents=True, exist_ok=True)
    sf.write(out, np.clip(wav_T, -1.0, 1.0), codec.sample_rate, subtype="PCM_16")
    return out
