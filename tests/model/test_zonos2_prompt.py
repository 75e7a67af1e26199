"""Golden prompt ids for fixed requests, written out by hand from the release's rules.

Zyphra/ZONOS2 (``tts/prompt.py``, ``scheduler._with_speaker_frames``, ``server/api_server.py``)
and zonos2.cpp (``src/zonos2-prompt.cpp``, ``zonos2.h`` defaults) lay a prompt out as: the
speaker slot, the speaker-background marker (clean 0 / noisy 1), the accurate marker, the
speaking-rate row, one row per quality feature in params.json order, BOS + (byte + 192) + EOS,
then 17 rows of the 0.2 s silence codes sheared (row t, codebook c holds silence[t - c][c] for
t >= c, else audio pad 1025), text column ``text_vocab``. The release's params.json: text_vocab
519; conditioning tail base = 519 - 8 - 60 - 2 - 1 = 448; rate 448..455; lufs 456..467;
estimated_snr 468..479; max_pause 480..491; estimated_bandlimit_hz 492..499; leading_silence_s
500..507; trailing_silence_s 508..515; clean 516, noisy 517; accurate 518.
The ids below are that arithmetic done by hand, not the output of accord's builder.
"""

from __future__ import annotations

import torch

from accord.app.synth import SynthRequest, synth_prompt
from accord.core.vocab import DEFAULT_VOCAB
from accord.model.sequence import build_sequence

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


def _rows(text_ids: list[int]) -> list[list[int]]:
    """Speaker slot, one row per text-column id, then the silence rows."""
    return [[P] * 9 + [TV], *([P] * 9 + [t] for t in text_ids), *([*r, TV] for r in SILENCE_ROWS)]


HI = [2, 192 + ord("H"), 192 + ord("i"), 192 + ord("!"), 3]


def test_request_with_rate_and_quality_values() -> None:
    req = SynthRequest(
        "Hi!",
        speaking_rate=15.0,  # "14-17" -> bucket 3 -> 451
        quality_mode=True,  # accurate -> 518
        quality={
            "lufs": -20.0,  # "-23--18.5" -> 7 -> 463
            "estimated_snr": 33.0,  # "30-36" -> 6 -> 474
            "max_pause": 0.75,  # "0.5-1" -> 1 -> 481
            "estimated_bandlimit_hz": 20000.0,  # "18124-21062" -> 6 -> 498
            "leading_silence_s": 0.05,  # lo-inclusive: "0.05-0.1" -> 1 -> 501
            "trailing_silence_s": 0.3,  # "0.25-0.5" -> 3 -> 511
        },
    )  # background None: the release's default clean_speaker_background=False -> noisy 517
    expected = _rows([517, 518, 451, 463, 474, 481, 498, 501, 511, *HI])
    assert synth_prompt(req, DEFAULT_VOCAB, 9).tolist() == expected


def test_request_defaults_and_clean_background() -> None:
    # no quality given: the release's default {"trailing_silence_s": 3} -> 511; no accurate
    req = SynthRequest("Hi!", background="clean")
    assert synth_prompt(req, DEFAULT_VOCAB, 9).tolist() == _rows([516, 511, *HI])
    # quality {} turns quality rows off; a rate at a bucket edge goes up ("8-11" starts at 8)
    req = SynthRequest("Hi!", speaking_rate=8.0, quality={})
    assert synth_prompt(req, DEFAULT_VOCAB, 9).tolist() == _rows([517, 449, *HI])


def test_training_sequences_start_with_the_same_prompt() -> None:
    """A clip's teacher-forcing rows begin with the release's prompt, then continue its audio."""
    controls = [517, 518, 451, 463, 474, 481, 498, 501, 511]
    codes_KT = torch.randint(0, 1024, (9, 4), generator=torch.Generator().manual_seed(0))
    seq = build_sequence(codes_KT, "Hi!", controls)
    expected = _rows([*controls, *HI])
    assert seq.audio_start == len(expected)
    assert seq.ids_TC[: seq.audio_start].tolist() == expected
    # codebook 0's first clip frame follows the silence; codebook 8 still has 8 silence frames to go
    assert seq.ids_TC[seq.audio_start, 0] == codes_KT[0, 0]
    assert seq.ids_TC[seq.audio_start, 8] == 731 and seq.ids_TC[seq.audio_start + 7, 8] == 308
    assert seq.ids_TC[seq.audio_start + 8, 8] == codes_KT[8, 0]
