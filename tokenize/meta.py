"""``tokenize.json``'s contents: the models (with ``random_weights``), vocabulary, crops, shard
limits, eligibility overrides and text normalizer of a run, and the rule that new shards must
match the ones already written."""

from __future__ import annotations

from dataclasses import asdict

from accord.core.clip import SCHEMA_VERSION, json_safe
from accord.core.eligibility import load_thresholds, threshold_overrides
from accord.core.shards import RANDOM_WEIGHTS_KEY, read_tokenize_json
from accord.core.vocab import DEFAULT_VOCAB, Vocab
from accord.jobs.step import Item
from accord.tokenize.codec import DacCodec
from accord.tokenize.config import TokenizeConfig
from accord.tokenize.speaker import SpeakerEncoder

# tokenize.json keys whose change makes new shards incompatible with the ones already written
COMPATIBLE_KEYS = ("codec", "speaker", RANDOM_WEIGHTS_KEY, "augmentations", "crop")
MODEL_ID_KEYS = ("ref", "format", "dim", "frame_rate")  # of "codec" / "speaker": a model's identity
TEXT_NORM_KEY = "text_normalization"  # accord.tokenize.textnorm.normalization_info
TEXT_NORM_ID_KEYS = ("enabled", "version")  # of TEXT_NORM_KEY: what made the samples' text_normalized


def tokenize_meta(cfg: TokenizeConfig, codec: DacCodec, speaker: SpeakerEncoder, extra: Item) -> Item:
    """``tokenize.json``: which models (with ``random_weights``), vocabulary, crops, shard limits,
    and ``eligibility``: the run's threshold overrides (``{stage: {threshold: value}}`` over the
    defaults), which the trainer's stage selection starts from (``accord.train.data``)."""
    vocab = Vocab(cfg.vocab)
    codec_info = {
        "ref": codec.ref,
        "weights_path": str(codec.weights_path),
        "sample_rate": codec.sample_rate,
        "hop_length": codec.hop_length,
        "frame_rate": codec.frame_rate,
        "n_codebooks": codec.n_codebooks,
        "codebook_size": codec.codebook_size,
    }
    speaker_info = {
        **speaker.info,
        "ref": speaker.ref,
        "dim": speaker.dim,
        "sample_rate": speaker.sample_rate,
    }
    return json_safe(
        {
            "schema_version": SCHEMA_VERSION,
            "codec": codec_info,
            "speaker": speaker_info,
            RANDOM_WEIGHTS_KEY: sorted({m.ref for m in (codec, speaker) if m.random_weights}),
            "augmentations": list(cfg.augment.names),
            "crop": {"fraction": cfg.crop_fraction, "seconds": list(cfg.crop_seconds)},
            "vocab": {
                **cfg.vocab.to_dict(),
                "text_vocab": vocab.size,
                "default_text_vocab": DEFAULT_VOCAB.size,
            },
            "shards": asdict(cfg.shards),
            "eligibility": threshold_overrides(load_thresholds(cfg.eligibility)),
            **extra,
        }
    )


def check_compatible(shards_uri: str, new: Item) -> None:
    """Refuse to mix shards written with a different codec, speaker model, random/trained
    weights, crop/augment setup, or text normalizer (what the model reads as text)."""
    old = read_tokenize_json(shards_uri)
    if old is None:
        return
    a, b = ({k: (d.get(TEXT_NORM_KEY) or {}).get(k) for k in TEXT_NORM_ID_KEYS} for d in (old, new))
    if a != b:
        raise ValueError(
            f"{shards_uri} holds shards whose text was normalized differently ({a} vs now {b}); "
            "write to a new --out or remove the old shards"
        )
    for key in COMPATIBLE_KEYS:
        a, b = old.get(key), new.get(key)
        if key in ("codec", "speaker") and a and b:
            a, b = ({k: d.get(k) for k in MODEL_ID_KEYS} for d in (a, b))
        if a != b:
            raise ValueError(
                f"{shards_uri} holds shards written with a different {key} ({a} vs now {b}); "
                "write to a new --out or remove the old shards"
            )
