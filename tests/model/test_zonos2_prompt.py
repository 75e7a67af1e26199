"""Golden prompt ids for fixed requests and training samples, written out by hand from the release's rules.

Zyphra/ZONOS2 @8fee419 (python/zonos2/...) lays a prompt out as:
- ``tts/prompt.py`` ``TTSPromptBuilder.build`` (l.457-471) = ``_text_rows`` (l.391-434): the
  speaking-rate row if a bucket is given (l.399), one row per quality feature in params.json
  order, a None bucket skipped (l.414-417), BOS + (byte + 192) + EOS (l.433, ``text_to_byte_ids``
  l.118-119); then 17 rows of the 0.2 s silence codes sheared (``silence_prompt_tokens``
  l.373-377: row t, codebook c holds silence[t - c][c] for t >= c, else audio pad 1025), text
  column ``text_vocab``.
- Only when the request has a speaker embedding: ``tokenizer/server.py`` l.122-128 puts the
  speaker slot (audio pad, text id ``text_vocab``: ``tts/prompt.py`` l.380-388) at row 0, and
  ``scheduler/scheduler.py`` ``_schedule_prefill`` l.448-450 -> ``_with_speaker_frames``
  l.406-420 inserts after it the background marker (clean 0 / noisy 1) and, with
  ``accurate_mode`` on, the accurate marker. zonos2.cpp ``src/zonos2-prompt.cpp`` does the same.
- Request defaults (``server/api_server.py``): quality ``{"trailing_silence_s": 3}`` (l.70),
  ``clean_speaker_background=False`` (l.1200), ``accurate_mode=True`` (l.1202); non-finite
  quality values get no bucket (l.435).
The release's params.json: text_vocab 519; conditioning tail base = 519 - 8 - 60 - 2 - 1 = 448;
rate 448..455; lufs 456..467; estimated_snr 468..479; max_pause 480..491;
estimated_bandlimit_hz 492..499; leading_silence_s 500..507; trailing_silence_s 508..515; clean
516, noisy 517; accurate 518.
Training stages: the paper's pre-training has no speaker or quality conditioning, so pretrain
and midtrain prompts are the release's no-speaker prompt without rate or quality rows; the
anneal stages have a speaker embedding, so their prompts are the release's speaker prompt.
The ids below are that arithmetic done by hand, not the output of accord's builder.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from accord.app.synth import SynthRequest, synth_prompt
from accord.core.shards import ShardSample
from accord.core.vocab import DEFAULT_VOCAB
from accord.model.sequence import PromptControls, build_sequence
from accord.train.examples import ExampleBuilder
from accord.train.recipe import load_recipe

P = 1025  # audio pad
TV = 519  # text_vocab: the speaker slot's and the silence rows' text id

# _SILENCE_TOKENS_0_2S of tts/prompt.py, sheared: row t, codebook c = silence[t - c][c].
SILENCE_ROWS = [
    [568, P, P, P, P, P, P, P, P],
    [568, 778, P, P, P, P, P, P, P],
    [568, 778, 338, P, P, P, P, P, P],
    [568, 804, 10, 524, P, P, P, P, P],
    [568, 804, 10, 674, 967, P, P, P, P],
    [568, 804, 10, 674, 364, 360, P, P, P],
    [568, 804, 10, 674, 364, 981, 728, P, P],
    [568, 804, 10, 674, 364, 981, 741, 550, P],
    [568, 804, 10, 674, 364, 981, 568, 378, 90],
    [568, 804, 10, 674, 364, 981, 568, 378, 731],
    [568, 804, 10, 674, 364, 981, 568, 378, 731],
    [568, 804, 10, 674, 364, 981, 568, 378, 731],
    [568, 804, 10, 674, 364, 981, 568, 378, 731],
    [568, 804, 10, 674, 364, 981, 568, 378, 731],
    [568, 804, 10, 674, 364, 981, 568, 378, 731],
    [568, 804, 10, 674, 364, 981, 568, 378, 731],
    [568, 804, 10, 674, 364, 981, 568, 378, 731],
]


SLOT = TV  # the speaker slot's text id


def _rows(text_ids: list[int]) -> list[list[int]]:
    """One row per text-column id (audio pad, or all pad and ``TV`` for the slot), then the silence rows."""
    return [*([P] * 9 + [t] for t in text_ids), *([*r, TV] for r in SILENCE_ROWS)]


HI = [2, 192 + ord("H"), 192 + ord("i"), 192 + ord("!"), 3]
# the fixed quality values and their buckets: feature -> (value, id)
QUALITY = {
    "lufs": (-20.0, 463),  # "-23--18.5" -> 7
    "estimated_snr": (33.0, 474),  # "30-36" -> 6
    "max_pause": (0.75, 481),  # "0.5-1" -> 1
    "estimated_bandlimit_hz": (20000.0, 498),  # "18124-21062" -> 6
    "leading_silence_s": (0.05, 501),  # lo-inclusive: "0.05-0.1" -> 1
    "trailing_silence_s": (0.3, 511),  # "0.25-0.5" -> 3
}
Q_IDS = [i for _, i in QUALITY.values()]
RATE_15 = 451  # 15 bytes/s: "14-17" -> bucket 3


def test_request_without_a_speaker() -> None:
    """No speaker embedding: no slot, no background, no accurate marker, whatever the request says."""
    req = SynthRequest("Hi!", speaking_rate=15.0, quality={k: v for k, (v, _) in QUALITY.items()})
    assert synth_prompt(req, DEFAULT_VOCAB, 9).tolist() == _rows([RATE_15, *Q_IDS, *HI])
    # the defaults: accurate on and noisy background are dropped with the speaker; trailing silence 3
    assert synth_prompt(SynthRequest("Hi!"), DEFAULT_VOCAB, 9).tolist() == _rows([511, *HI])
    # quality {} turns quality rows off; a rate at a bucket edge goes up ("8-11" starts at 8);
    # non-finite quality values are left out
    req = SynthRequest("Hi!", speaking_rate=8.0, quality={"lufs": float("inf"), "max_pause": float("nan")})
    assert synth_prompt(req, DEFAULT_VOCAB, 9).tolist() == _rows([449, *HI])


def test_request_with_a_speaker() -> None:
    """A speaker embedding: slot, background marker, accurate marker (on by default), then the rest."""
    req = SynthRequest(
        "Hi!", speaker_wav="ref.wav", speaking_rate=15.0, quality={k: v for k, (v, _) in QUALITY.items()}
    )  # background None: the release's default clean_speaker_background=False -> noisy 517
    assert synth_prompt(req, DEFAULT_VOCAB, 9).tolist() == _rows([SLOT, 517, 518, RATE_15, *Q_IDS, *HI])
    req = SynthRequest("Hi!", speaker_wav="ref.wav", background="clean", accurate=False)
    assert synth_prompt(req, DEFAULT_VOCAB, 9).tolist() == _rows([SLOT, 516, 511, *HI])


def test_nan_speaking_rate_is_refused() -> None:
    """The release's rule would put NaN in the top bucket (api_server.py l.209-225); accord refuses."""
    with pytest.raises(ValueError, match="speaking rate is NaN"):
        synth_prompt(SynthRequest("Hi!", speaking_rate=float("nan")), DEFAULT_VOCAB, 9)
    # a non-finite quality value has no bucket: the builder leaves it out, the vocabulary refuses it
    with pytest.raises(ValueError, match="not finite"):
        DEFAULT_VOCAB.quality_token("lufs", float("-inf"))


def _sample() -> ShardSample:
    """A fixed clip: one transcript, every quality feature, top quality (agreement 0.97, SNR 33 dB)."""
    v = DEFAULT_VOCAB.config
    meta = {
        "clip_id": "golden-0",
        "transcripts": [{"text": "Hi!"}],
        "speaking_rate": 15.0,
        "agreement": 0.97,
        "speaker_crop": [0, 2],
        **{v.column(k): value for k, (value, _) in QUALITY.items()},
    }
    codes = np.random.default_rng(0).integers(0, 1024, (9, 6)).astype(np.int16)
    spk = np.ones(8, np.float32)
    return ShardSample(codes=codes, spk=spk, spkcrop=spk * 2, spkaug=None, meta=meta)


def _training_head(stage: str, drop: float | None = None) -> list[list[int]]:
    cond = load_recipe(stage, debug=True).conditioning
    if drop is not None:
        cond = replace(cond, rate_drop_p=drop, quality_drop_p=drop)
    ex = ExampleBuilder(cond)(_sample(), 0)
    assert ex is not None
    return ex.ids_TC[: -6 - 9].tolist()  # the clip's 6 frames + 9 delay rows follow the prompt


def test_training_prompts_per_stage() -> None:
    """Each stage's prompt is the release's prompt for the request the stage stands for."""
    # pretrain, midtrain: the no-speaker prompt without rate or quality rows
    for stage in ("pretrain", "midtrain"):
        assert _training_head(stage) == _rows(HI), stage
    # anneal1: the speaker prompt (SNR 33 dB -> clean 516), no accurate marker; rate and quality
    # each kept or dropped by the recipe's draw (0.4 / 0.25)
    assert _training_head("anneal1", drop=0.0) == _rows([SLOT, 516, RATE_15, *Q_IDS, *HI])
    assert _training_head("anneal1", drop=1.0) == _rows([SLOT, 516, *HI])
    # anneal2: the accurate marker on the top-quality subset
    assert _training_head("anneal2", drop=0.0) == _rows([SLOT, 516, 518, RATE_15, *Q_IDS, *HI])
    assert _training_head("anneal2", drop=1.0) == _rows([SLOT, 516, 518, *HI])
    for stage in ("anneal1", "anneal2"):
        c = load_recipe(stage).conditioning
        assert (c.rate_drop_p, c.quality_drop_p) == (0.4, 0.25)


def test_training_sequences_start_with_the_same_prompt() -> None:
    """A clip's teacher-forcing rows begin with the release's prompt, then continue its audio."""
    controls = PromptControls(
        speaker=True,
        background="noisy",
        accurate=True,
        speaking_rate=15.0,
        quality={k: v for k, (v, _) in QUALITY.items()},
    )
    codes_KT = torch.randint(0, 1024, (9, 4), generator=torch.Generator().manual_seed(0))
    seq = build_sequence(codes_KT, "Hi!", controls)
    expected = _rows([SLOT, 517, 518, RATE_15, *Q_IDS, *HI])
    assert seq.audio_start == len(expected)
    assert seq.ids_TC[: seq.audio_start].tolist() == expected
    # codebook 0's first clip frame follows the silence; codebook 8 still has 8 silence frames to go
    assert seq.ids_TC[seq.audio_start, 0] == codes_KT[0, 0]
    assert seq.ids_TC[seq.audio_start, 8] == 731 and seq.ids_TC[seq.audio_start + 7, 8] == 308
    assert seq.ids_TC[seq.audio_start + 8, 8] == codes_KT[8, 0]
