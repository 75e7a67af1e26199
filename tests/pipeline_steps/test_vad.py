"""Clip shaping from VAD probabilities, stable ids, and windowed VAD on the generated bucket."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from accord.pipeline.vad import FRAME, FRAME_S, FrameLevels, VadConfig, clip_id, segment, speech_runs


def _probs(
    spans: list[tuple[float, float]], total_s: float, dip: tuple[float, float] | None = None
) -> np.ndarray:
    """Synthetic frame probabilities: 0.95 inside ``spans``, 0.02 elsewhere."""
    p = np.full(int(total_s / FRAME_S), 0.02, np.float32)
    for a, b in spans:
        p[int(a / FRAME_S) : int(b / FRAME_S)] = 0.95
    return p


def _levels(spans: list[tuple[float, float]], total_s: float) -> np.ndarray:
    """Frame levels: -60 dB of background, -20 dB inside ``spans`` (where the sound is)."""
    db = np.full(int(total_s / FRAME_S), -60.0, np.float32)
    for a, b in spans:
        db[int(a / FRAME_S) : int(b / FRAME_S)] = -20.0
    return db


def test_edges_snap_back_to_where_the_sound_starts_and_ends():
    """silero fires 0.6 s into a soft onset (narrowband speech): the padded start would be inside
    the sound, so it moves back to the first quiet frame; the end likewise moves past the tail."""
    cfg = VadConfig(pad_s=0.2)
    p = _probs([(2.0, 5.0)], 10.0)
    sound = [(1.4, 5.5)]
    (raw,) = segment(p, 10.0, cfg)
    assert raw.start_s == pytest.approx(1.8, abs=0.05) and raw.end_s == pytest.approx(5.2, abs=0.05)
    (snapped,) = segment(p, 10.0, cfg, _levels(sound, 10.0))
    assert snapped.start_s <= 1.4 and snapped.start_s >= 1.4 - 2 * FRAME_S
    assert snapped.end_s >= 5.5 and snapped.end_s <= 5.5 + 2 * FRAME_S


def test_snapping_is_bounded_and_never_reaches_into_the_previous_clip():
    cfg = VadConfig(pad_s=0.2, max_extend_s=0.5)
    # no quiet frame within reach: the edge moves at most max_extend_s, to the quietest frame
    (far,) = segment(_probs([(3.0, 5.0)], 10.0), 10.0, cfg, _levels([(0.0, 5.0)], 10.0))
    assert far.start_s >= 3.0 - 0.2 - 0.5 - 1e-6
    # two clips 0.6 s apart with sound in the gap: the second start stops at the first's end
    p = _probs([(1.0, 3.0), (3.6, 6.0)], 8.0)
    a, b = segment(p, 8.0, VadConfig(merge_gap_s=0.1, pad_s=0.2), _levels([(1.0, 6.0)], 8.0))
    assert a.end_s <= b.start_s


def test_frame_levels_stream_like_the_whole():
    x = np.random.default_rng(0).standard_normal(5 * FRAME + 100).astype(np.float32)
    lv = FrameLevels()
    parts = np.concatenate([lv(x[:700]), lv(x[700:]), lv(np.zeros(0, np.float32), last=True)])
    whole = FrameLevels()
    np.testing.assert_allclose(parts, np.concatenate([whole(x), whole(np.zeros(0, np.float32), last=True)]))
    assert len(parts) == 6 and np.all(np.isfinite(parts))


def test_short_gaps_merge_and_long_gaps_split():
    cfg = VadConfig(pad_s=0.0)
    p = _probs([(1.0, 3.0), (3.2, 5.0), (7.0, 9.0)], 12.0)
    segs = segment(p, 12.0, cfg)
    assert len(segs) == 2
    assert segs[0].start_s == pytest.approx(1.0, abs=0.05) and segs[0].end_s == pytest.approx(5.0, abs=0.05)
    assert segs[1].start_s == pytest.approx(7.0, abs=0.05)


def test_padding_is_clipped_to_the_neighbour_midpoint_and_the_file():
    cfg = VadConfig(pad_s=0.5)
    p = _probs([(0.1, 2.0), (2.6, 5.0)], 5.2)
    segs = segment(p, 5.2, cfg)
    assert segs[0].start_s == 0.0  # clipped at the file start
    assert segs[0].end_s == pytest.approx(segs[1].start_s, abs=0.01)  # meet in the middle of the gap
    assert segs[0].end_s == pytest.approx(2.3, abs=0.05)
    assert segs[1].end_s == pytest.approx(5.2, abs=0.01)  # clipped at the file end


def test_blips_are_dropped_and_short_clips_join_a_close_neighbour():
    cfg = VadConfig(pad_s=0.0, merge_gap_s=0.3, short_merge_gap_s=1.0)
    p = _probs([(1.0, 1.1), (3.0, 3.6), (4.2, 7.0), (12.0, 12.5)], 14.0)
    segs = segment(p, 14.0, cfg)
    # 0.1 s blip dropped; 0.6 s clip joins the one 0.6 s away; the isolated 0.5 s clip is too short
    assert [(round(s.start_s, 1), round(s.end_s, 1)) for s in segs] == [(3.0, 7.0)]


def test_over_long_speech_is_split_at_its_longest_pause():
    cfg = VadConfig(pad_s=0.0, max_clip_s=10.0)
    # 16 s of speech with short pauses (kept by merge) and one longer pause at 9.0-9.25 s
    p = _probs([(0.5, 4.0), (4.2, 9.0), (9.25, 13.0), (13.2, 16.5)], 17.0)
    segs = segment(p, 17.0, cfg)
    assert len(segs) == 2
    assert segs[0].end_s == pytest.approx(9.1, abs=0.2)
    assert all(s.duration_s <= 10.0 for s in segs)


def test_hysteresis_keeps_a_dip_above_the_negative_threshold():
    p = _probs([(1.0, 4.0)], 6.0)
    p[int(2.0 / FRAME_S) : int(2.5 / FRAME_S)] = 0.4  # between neg_threshold and threshold
    assert len(speech_runs(p, VadConfig())) == 1


def test_clip_id_is_stable_and_sensitive_to_every_part():
    a = clip_id("s3://b/x.wav", "abc", 1.0, 2.5)
    assert a == clip_id("s3://b/x.wav", "abc", 1.0004, 2.4996)  # rounded to ms
    assert (
        len(
            {
                a,
                clip_id("s3://b/y.wav", "abc", 1.0, 2.5),
                clip_id("s3://b/x.wav", "abd", 1.0, 2.5),
                clip_id("s3://b/x.wav", "abc", 1.001, 2.5),
            }
        )
        == 4
    )


def _covered(clips: list[dict], sentence: dict, tol: float = 0.4) -> bool:
    return any(
        abs(c["start_s"] - sentence["start_s"]) <= tol and abs(c["end_s"] - sentence["end_s"]) <= tol
        for c in clips
    )


@pytest.mark.integration
def test_clip_boundaries_match_the_truth(sample_bucket, bucket_clips):
    """Each TTS sentence is one clip whose edges lie within 0.4 s of the sentence's span: the
    0.2 s padding plus silero's soft tail (the defaults keep it since they were set on real
    speech, pipeline/vad.py), and the engine's own silence inside the truth span."""
    n = hit = 0
    for name, truth in sample_bucket.truth.items():
        clips = bucket_clips[name]
        if not truth["sentences"]:
            assert not isinstance(clips, list) or not clips, name  # noise/music-only: no clips
            continue
        assert isinstance(clips, list), f"{name}: {clips}"
        for s in truth["sentences"]:
            n += 1
            hit += _covered(clips, s)
        for c in clips:
            assert 1.0 <= c["duration_s"] <= 30.0
            assert len(c["audio_16k"]) == pytest.approx(c["duration_s"] * 16000, abs=2)
            assert c["audio_16k"].dtype == np.float32
    assert hit / n >= 0.9, f"{hit}/{n} sentences covered within 0.4 s"


@pytest.mark.integration
def test_windowed_two_pass_equals_in_memory(sample_bucket):
    from accord.pipeline.steps import DecodeStep, VadStep

    name = next(n for n, t in sorted(sample_bucket.truth.items()) if len(t["sentences"]) >= 4)
    item = DecodeStep().process({"uri": str(sample_bucket.path / name)})[0]
    whole = VadStep().process(item)
    windowed = VadStep(VadConfig(window_s=1.3, max_in_memory_s=2.0)).process(item)
    assert [c["clip_id"] for c in whole] == [c["clip_id"] for c in windowed]
    for a, b in zip(whole, windowed, strict=True):
        np.testing.assert_allclose(a["audio_16k"], b["audio_16k"], atol=1e-6)
        np.testing.assert_allclose(a["vad_probs"], b["vad_probs"], atol=1e-4)


@pytest.mark.integration
def test_streaming_silero_backend_agrees_with_the_batched_one(sample_bucket):
    from accord.core import audio_io
    from accord.pipeline.vad import load_vad

    name = next(n for n, t in sorted(sample_bucket.truth.items()) if t["background"] == "clean")
    x = audio_io.read_audio(sample_bucket.path / name)[: 16000 * 8]
    probs = {}
    for backend in ("batched", "silero"):
        vad = load_vad(VadConfig(backend=backend))
        probs[backend] = np.concatenate([vad(x[: len(x) // 2]), vad(x[len(x) // 2 :], last=True)])
    a, b = probs["batched"], probs["silero"]
    assert len(a) == len(b)
    assert np.mean((a > 0.5) == (b > 0.5)) > 0.95
    with pytest.raises(ValueError, match="unknown VAD backend"):
        load_vad(VadConfig(backend="nope"))


@pytest.mark.parametrize("backend", ["batched", "silero"])
def test_streaming_is_chunk_invariant_and_backends_agree(sample_bucket, backend) -> None:
    """Frame probabilities do not depend on how the stream is cut into windows, and the
    silero-vad package's own model agrees with the batched export on speech vs silence."""
    import soundfile as sf
    import soxr

    from accord.pipeline.vad import VadConfig, load_vad

    x, sr = sf.read(str(sample_bucket.path / "en_flite_slt.flac"), dtype="float32")
    x = soxr.resample(x if x.ndim == 1 else x.mean(1), sr, 16000)[: 16000 * 8]
    vad = load_vad(VadConfig(backend=backend))
    whole = vad(x, last=True)
    vad.reset()
    cuts = [0, 777, 5000, 50001, len(x)]
    parts = [vad(x[a:b], last=b == len(x)) for a, b in itertools.pairwise(cuts)]
    np.testing.assert_allclose(np.concatenate(parts), whole, atol=1e-5)
    assert len(whole) == -(-len(x) // 512)
    vad = load_vad(VadConfig(backend="batched" if backend == "silero" else "silero"))
    other = vad(x, last=True)
    assert ((whole > 0.5) == (other > 0.5)).mean() > 0.9


@pytest.mark.integration
def test_long_source_clips_stream_out_without_holding_the_source(sample_bucket, tmp_path):
    """Past ``max_in_memory_s`` clips are cut in a second pass and yielded one by one: the
    peak memory of iterating them stays well below the audio of all the clips."""
    import tracemalloc

    import soundfile as sf

    from accord.pipeline.steps import DecodeStep, VadStep
    from accord.samples.encode import load_mono

    english = [n for n in sorted(sample_bucket.truth) if sample_bucket.truth[n]["language"] == "en"]
    long_x = np.concatenate([load_mono(sample_bucket.path / n, 16000) for n in english] * 2)
    assert len(long_x) > 200 * 16000
    sf.write(tmp_path / "long.wav", long_x, 16000)
    item = DecodeStep().process({"uri": str(tmp_path / "long.wav")})[0]
    step = VadStep(VadConfig(window_s=5.0, max_in_memory_s=20.0))
    step.setup()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        n, clip_bytes = 0, 0
        for clip in step.iter_process(item):
            n, clip_bytes = n + 1, clip_bytes + clip["audio_16k"].nbytes
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert n >= 30
    assert peak < 0.4 * clip_bytes, (peak, clip_bytes)
