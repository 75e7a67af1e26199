"""Model outputs judged the same way whichever kernels the CPU picks (issue #29).

The bilingual German clip, cut and decoded as the ingest does (silero-vad, per-clip language
ID, Whisper base told the language), in two fresh processes: one with MKL and CTranslate2 held
to AVX2 (the tests' pin, ``tests/determinism.py``) and one on the CPU's native path (AVX-512,
VNNI or AMX where present). Both must identify German and read the sentence within the bounds
of ``tests/transcripts.py``; their words may differ, and on this project's CI machines do.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from ..determinism import native_isa_env, pinned_isa_env
from ..transcripts import assert_reads

pytestmark = pytest.mark.integration

SCRIPT = r"""
import json, sys
from accord.pipeline.lid import LanguageIdConfig
from accord.pipeline.steps import AsrSpec, AsrStep, LanguageIdStep, VadStep
clips = VadStep().process({"source_uri": sys.argv[1]})
clips = LanguageIdStep(LanguageIdConfig(threads=2)).process_batch(clips)
clips = AsrStep([AsrSpec("faster-whisper", "whisper:base")]).process_batch(clips)
print(json.dumps([
    {"start_s": c["start_s"], "language": c["language"], "language_prob": c["language_prob"],
     "text": c["transcripts"][0]["text"] if c["transcripts"] else ""}
    for c in clips
]))
"""


def _decode(path: str, env: dict[str, str]) -> list[dict]:
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, path], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_the_german_clip_reads_right_on_avx2_and_on_the_native_path() -> None:
    from accord.samples.signals import make_signals

    signals = make_signals()
    said = signals.truth["bilingual.wav"]["sentences"]
    base = dict(os.environ)
    runs = {
        "avx2": {**native_isa_env(base), **pinned_isa_env()},
        "native": native_isa_env(base),
    }
    texts = {}
    for name, env in runs.items():
        clips = _decode(str(signals.path / "bilingual.wav"), env)
        assert [c["language"] for c in clips] == ["en", "de", "en"], (name, clips)
        de = clips[1]
        assert de["language_prob"] > 0.7, (name, de)
        assert_reads(de["text"], said[1]["text"], "de")
        for c, s in ((clips[0], said[0]), (clips[2], said[2])):
            assert_reads(c["text"], s["text"], "en")
        texts[name] = de["text"]
    print("German clip:", texts)  # differ on AVX-512 machines: see tests/determinism.py
