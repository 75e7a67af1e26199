"""The sample bucket: truth sanity, coverage of engines/formats, decodability, determinism, size."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from accord.samples import encode, make_bucket
from accord.samples.bucket import RECIPE, _plan, cut_sentences


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x.astype(np.float64) ** 2))) if len(x) else 0.0


def test_recipe_covers_engines_formats_rates_layouts(sample_bucket):
    t = sample_bucket.truth
    assert sorted(t) == sorted(p.name for p in sample_bucket.path.iterdir())
    assert {e["engine"] for e in t.values() if e["has_speech"]} == {"espeak-ng", "flite", "festival"}
    assert {e["format"] for e in t.values()} == set(encode.FORMATS)
    assert {e["sample_rate"] for e in t.values()} == {16000, 22050, 44100, 48000}
    assert {e["channels"] for e in t.values()} == {1, 2}
    assert {e["language"] for e in t.values() if e["has_speech"]} == {"en", "de", "es"}
    assert {e["background"] for e in t.values() if e["has_speech"]} == {"clean", "noise", "music"}
    no_speech = {e["background"] for e in t.values() if not e["has_speech"]}
    assert no_speech == {"noise", "music"}
    assert len({e["voice"] for e in t.values() if e["has_speech"]}) >= 8


def test_sentences_distinct_and_counted(sample_bucket):
    texts = []
    for e in sample_bucket.truth.values():
        sents = e["sentences"]
        assert (3 <= len(sents) <= 5) if e["has_speech"] else not sents
        assert all(s["voice"] == e["voice"] and s["language"] == e["language"] for s in sents)
        texts += [s["text"] for s in sents]
    assert len(texts) == len(set(texts)), "a sentence repeats within one copy of the recipe"


def test_every_file_decodes_with_declared_properties(sample_bucket):
    for name, e in sample_bucket.truth.items():
        x_TC, sr = encode.decode(sample_bucket.path / name)
        assert x_TC.shape[1] == e["channels"], name
        assert sr == (48000 if "opus" in e["format"] else e["sample_rate"]), name
        assert abs(len(x_TC) / sr - e["duration_s"]) < 1e-3, name
        assert np.isfinite(x_TC).all() and 0.05 < np.abs(x_TC).max() <= 1.0, name


def test_lossless_files_read_with_soundfile(sample_bucket):
    for name, e in sample_bucket.truth.items():
        if e["format"] in ("wav16", "wavf32", "flac"):
            info = sf.info(sample_bucket.path / name)
            assert (info.samplerate, info.channels) == (e["sample_rate"], e["channels"]), name
            assert info.subtype == ("FLOAT" if e["format"] == "wavf32" else "PCM_16"), name


def test_truth_spans_are_where_the_speech_is(sample_bucket):
    """Spans sorted, inside the file, and far louder than the gaps between them."""
    for name, e in sample_bucket.truth.items():
        if not e["has_speech"]:
            continue
        x_T, sr = encode.decode(sample_bucket.path / name)
        x_T = x_T.mean(axis=1)
        spans = [(s["start_s"], s["end_s"]) for s in e["sentences"]]
        assert spans[0][0] > 0 and spans[-1][1] < e["duration_s"], name
        inside = np.zeros(len(x_T), dtype=bool)
        prev_end = 0.0
        for a, b in spans:
            assert prev_end < a < b and b - a > 1.0, (name, a, b)
            prev_end = b
            inside[int(a * sr) : int(b * sr)] = True
        # the truth gaps, shrunk by 50 ms so codec smearing at the edges does not count
        edge = int(0.05 * sr)
        gaps = ~np.convolve(inside, np.ones(2 * edge + 1), mode="same").astype(bool)
        ratio_db = 20 * np.log10(_rms(x_T[inside]) / max(_rms(x_T[gaps]), 1e-9))
        min_db = 40 if e["background"] == "clean" else 10
        assert ratio_db > min_db, f"{name}: speech/gap {ratio_db:.1f} dB"
        if e["background"] != "clean":
            continue
        # spans are trimmed to speech: even their first and last 100 ms stand far above the silence
        for a, b in spans:
            head = x_T[int(a * sr) : int((a + 0.1) * sr)]
            tail = x_T[int((b - 0.1) * sr) : int(b * sr)]
            gap_rms = max(_rms(x_T[gaps]), 1e-9)
            assert _rms(head) > 10 * gap_rms and _rms(tail) > 10 * gap_rms, (name, a, b)


def test_noise_and_music_snr(sample_bucket):
    """Mixed backgrounds sit at the recipe's SNR (15–20 dB) within a few dB, measured on the decoded file."""
    for name, e in sample_bucket.truth.items():
        if e["has_speech"] and e["background"] != "clean":
            x_T, sr = encode.decode(sample_bucket.path / name)
            x_T = x_T[:, 0]  # channel 0 carries the speech at gain 1
            inside = np.zeros(len(x_T), dtype=bool)
            for s in e["sentences"]:
                inside[int(s["start_s"] * sr) : int(s["end_s"] * sr)] = True
            p_gap = _rms(x_T[~inside]) ** 2
            snr = 10 * np.log10((_rms(x_T[inside]) ** 2 - p_gap) / p_gap)
            assert 15 <= e["snr_db"] <= 20
            assert abs(snr - e["snr_db"]) < 4, f"{name}: measured {snr:.1f} dB vs {e['snr_db']}"


def test_size_is_small(sample_bucket):
    seconds = sum(e["duration_s"] for e in sample_bucket.truth.values())
    size = sum(p.stat().st_size for p in sample_bucket.path.iterdir())
    assert 8 <= len(sample_bucket.truth) <= 14
    assert 150 <= seconds <= 240, seconds
    assert size < 15e6, size


def test_english_sentences_fixture(english_sentences, sample_bucket):
    assert len(english_sentences) >= 6
    for wav, text in english_sentences:
        assert wav.dtype == np.float32 and wav.ndim == 1
        assert 1.5 < len(wav) / 16000 < 8 and _rms(wav) > 0.01
        assert text.endswith(".")


def test_same_seed_same_bytes(sample_bucket, tmp_path):
    """A fresh generation with the fixture's parameters reproduces it byte for byte."""
    again = make_bucket(tmp_path / "again", scale=1, seed=0)
    assert again.truth == sample_bucket.truth
    for name in sample_bucket.truth:
        assert _sha(again.path / name) == _sha(sample_bucket.path / name), name


def test_seed_and_scale_change_the_plan():
    """Other seeds pick other sentences; each scale copy repeats the recipe with fresh sentences."""
    base = _plan(1, 0)
    assert [p[2] for p in _plan(1, 0)] == [p[2] for p in base]
    assert [p[2] for p in _plan(1, 1)] != [p[2] for p in base]
    scaled = _plan(3, 0)
    assert len(scaled) == 3 * len(RECIPE)
    assert [p[1] for p in scaled[: len(RECIPE)]] == [p[1] for p in base]
    n = len(RECIPE)
    assert all(p[1].startswith(f"s{k:02d}_") for k in (1, 2) for p in scaled[k * n : (k + 1) * n])
    assert len({p[1] for p in scaled}) == len(scaled) and len({tuple(p[3]) for p in scaled}) == len(scaled)
    for k in range(3):
        texts = [t for p in scaled[k * len(RECIPE) : (k + 1) * len(RECIPE)] for t in p[2]]
        assert len(texts) == len(set(texts)), f"copy {k} repeats a sentence"
    assert scaled[len(RECIPE) + 1][2] != scaled[1][2]


def test_cache_reuse_and_refuses_foreign_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("ACCORD_CACHE", str(tmp_path / "cache"))
    from accord.samples.cache import build_once

    calls = []

    def build(d: Path) -> None:
        calls.append(d)
        (d / "x").write_text("1")

    a = build_once("t", {"k": 1}, build)
    b = build_once("t", {"k": 1}, build)
    assert a == b and len(calls) == 1 and a.parent == tmp_path / "cache" / "samples"
    assert build_once("t", {"k": 2}, build) != a
    assert not [p for p in a.parent.iterdir() if ".tmp-" in p.name], "temp dir left behind"
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        build_once("t", {"k": 1}, build, foreign)
    assert (foreign / "keep.txt").read_text() == "mine"


def test_failed_build_leaves_nothing(tmp_path):
    from accord.samples.cache import build_once

    def build(d: Path) -> None:
        (d / "half").write_text("x")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        build_once("t", {"k": 1}, build, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_cut_sentences_spans(sample_bucket):
    pairs = cut_sentences(sample_bucket, sr=16000, language="de", backgrounds=("clean",), margin_s=0.0)
    de = sample_bucket.truth["de_espeak.flac"]["sentences"]
    assert [t for _, t in pairs] == [s["text"] for s in de]
    for (wav, _), s in zip(pairs, de, strict=True):
        assert abs(len(wav) / 16000 - (s["end_s"] - s["start_s"])) < 0.01
