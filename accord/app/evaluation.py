"""Mini-eval after a stage: synthesize held-out sentences, transcribe them, score WER and voice.

:func:`mini_eval` is the :class:`accord.train.evaluator.Evaluator` that ``accord train`` gives
the trainer (``--no-eval`` skips it); it stands here, above train/, because it reaches for an
ASR backend of the ingest and the synth's weight rules.

For each held-out sentence: the prompt rows from ``accord.model.sequence`` in ZONOS2's layout
(with the stage's conditioning: a speaker embedding taken from a shard clip, with the speaker
slot and its markers, when the stage trains with one; ZONOS2's request defaults for the
background and quality rows; the accurate marker in anneal2), KV-cache sampling with
``accord.model.generate``, audio from ``accord.tokenize.codec.DacCodec``, a transcript from
an ``accord.pipeline.asr`` backend (WER with jiwer against the sentence), and the cosine
similarity between the speaker embedding of the generated audio and the prompt embedding.
On a debug model after a few steps the numbers are meaningless; the machinery and the report
are real.
"""

from __future__ import annotations

import functools
import logging
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from accord.core.shards import read_record, read_shard, shard_tar_uri, tokenize_refs
from accord.train.recipe import Recipe

log = logging.getLogger(__name__)

HELD_OUT = (
    "The quick brown fox jumps over the lazy dog.",
    "Please call Stella and ask her to bring these things.",
    "A rainbow is a division of white light into many beautiful colors.",
    "She sells sea shells by the sea shore.",
    "Open the window and let the fresh air in.",
    "We will meet at the station at nine tomorrow.",
)


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"[^\w\s']", " ", text.lower())).strip()


@functools.cache
def _codec(ref: str):
    from accord.tokenize.codec import DacCodec

    return DacCodec.load(ref)


@functools.cache
def _asr(ref: str):
    from accord.pipeline.asr import create_backend

    backend = create_backend("faster-whisper", ref)
    backend.load()
    return backend


@functools.cache
def _speaker(ref: str):
    from accord.tokenize.speaker import SpeakerEncoder

    return SpeakerEncoder.load(ref)


def prompt_speakers(shards: str, n: int) -> list[tuple[str, np.ndarray]]:
    """(clip_id, raw speaker embedding) of the first ``n`` readable shard samples."""
    from accord.train.data import select_samples

    sel = select_samples(shards, "pretrain")
    out: list[tuple[str, np.ndarray]] = []
    for name in sel.shards:
        try:
            samples, _ = read_shard(shard_tar_uri(shards, name), read_record(shards, name))
        except Exception:  # the loader counts bad shards; the eval only needs a few good samples
            continue
        for s in samples:
            if s.spk is not None:
                out.append((s.clip_id, np.asarray(s.spk, np.float32)))
            if len(out) >= n:
                return out
    return out


def mini_eval(
    final_dir: Path, shards: str, recipe: Recipe, device: torch.device | str = "cpu"
) -> dict[str, Any]:
    """The report on ``final_dir`` (per-sentence ``items`` included; the trainer writes it to
    ``eval.json``). Generate on ``device`` (the trainer's); decode, transcribe and embed on the CPU."""
    import jiwer
    import torchaudio.functional as AF

    from accord.app.synth import default_refs, recorded_ref
    from accord.core.shards import RANDOM_WEIGHTS_KEY
    from accord.core.vocab import DEFAULT_VOCAB, INFERENCE_BACKGROUND
    from accord.model.checkpoint import load_zonos2
    from accord.model.generate import SamplingConfig, generate
    from accord.model.sampling import audio_codes
    from accord.model.sequence import PromptControls, build_prompt

    t0 = time.perf_counter()
    ev = recipe.eval
    model = load_zonos2(final_dir, device=device).eval()
    refs = {**default_refs(model.cfg.speaker_embedding_dim), **tokenize_refs(shards)}
    # seeded random weights only where the shards record them; else trained ones or a how-to error
    recorded = refs.get(RANDOM_WEIGHTS_KEY)
    refs["codec"] = recorded_ref(refs["codec"], recorded)
    refs["speaker"] = recorded_ref(refs["speaker"], recorded)
    cond = recipe.conditioning
    n = ev.n_sentences
    speakers = prompt_speakers(shards, n)
    codec = _codec(refs["codec"])
    encoder = _speaker(refs["speaker"])
    asr = _asr(ev.asr)
    items = []
    wavs16 = []
    for i in range(n):
        text = HELD_OUT[i % len(HELD_OUT)]
        spk_id, spk = speakers[i % len(speakers)] if speakers else (None, None)
        use_spk = cond.speaker != "none" and spk is not None
        # the stage's conditioning with ZONOS2's request defaults: the speaker rows with a speaker
        # only, noisy background, default quality buckets (if trained)
        controls = PromptControls(
            speaker=use_spk,
            background=INFERENCE_BACKGROUND,
            accurate=cond.quality_mode,
            quality_buckets=DEFAULT_VOCAB.config.default_quality_buckets if cond.quality else None,
        )
        prompt = build_prompt(text, controls, DEFAULT_VOCAB, model.cfg.n_codebooks)
        with torch.no_grad():
            res = generate(
                model,
                prompt,
                torch.from_numpy(spk) if use_spk else None,
                SamplingConfig(max_frames=ev.max_new_frames, seed=i),
            )
        codes = res.codes_KT
        if codes.shape[1]:
            with torch.no_grad():
                wav = codec.decode(audio_codes(codes, codec.codebook_size)[None].long())[0].float()
            wav16 = AF.resample(wav, codec.sample_rate, 16000).numpy().astype(np.float32)
        else:
            wav16 = np.zeros(1600, np.float32)
        wavs16.append(wav16)
        items.append(
            {
                "text": text,
                "prompt_clip": spk_id if use_spk else None,
                "frames": int(codes.shape[1]),
                "ended_with_eoa": bool(res.ended),
                "seconds": float(len(wav16) / 16000),
            }
        )
    hyps = asr.transcribe_batch(wavs16)
    emb = None
    if speakers:  # the generated audio at the encoder's own rate (24 kHz for the release's)
        rate, wavs_spk = encoder.sample_rate, wavs16
        if rate != 16000:
            wavs_spk = [AF.resample(torch.from_numpy(w), 16000, rate).numpy() for w in wavs16]
        emb = encoder.embed_batch(wavs_spk)
    for i, (item, hyp) in enumerate(zip(items, hyps, strict=True)):
        item["hypothesis"] = hyp.text
        ref_n, hyp_n = _norm(item["text"]), _norm(hyp.text)
        item["wer"] = float(jiwer.wer(ref_n, hyp_n)) if hyp_n else 1.0
        if emb is not None and speakers:
            a = emb[i] / (np.linalg.norm(emb[i]) + 1e-9)
            b = speakers[i % len(speakers)][1]
            b = b / (np.linalg.norm(b) + 1e-9)
            item["speaker_similarity"] = float(a @ b)
    report = {
        "checkpoint": str(final_dir),
        "stage": recipe.stage,
        "asr": ev.asr,
        "codec": refs["codec"],
        "speaker_encoder": refs["speaker"],
        "codec_random_weights": bool(codec.random_weights),
        "random_weights": recorded,
        "n": len(items),
        "wer": float(np.mean([it["wer"] for it in items])),
        "speaker_similarity": (
            float(np.mean([it["speaker_similarity"] for it in items]))
            if items and "speaker_similarity" in items[0]
            else None
        ),
        "items": items,
        "seconds": time.perf_counter() - t0,
        "note": "debug-scale model: numbers are not meaningful, the pipeline is",
    }
    return report
